"""One experiment from a composed config: instantiate, fit, test, report. Hydra only instantiates."""

from __future__ import annotations

import logging
import re
import signal
import sys
import traceback
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from gipc.callbacks import TestReport
from gipc.checkpointing import AtomicCheckpointIO
from gipc.configs import CONF_DIR
from gipc.errors import ConfigError, NonFiniteLossError, RunDirError, UserError, disk_full, one_line_warnings, out_of_memory
from gipc.files import write_text
from gipc.hardware import auto_precision, native_bf16
from gipc.loggers import continue_run
from gipc.pretrained import check_training_checkpoint, start_from
from gipc.runstate import DONE, FAILED, done_record, last_checkpoint, resume_action, training_lock
from gipc.sweep import continue_hint, leaves_stop_line_to_launcher, requeued, resume_dir
from gipc.typecheck import check_node, check_values

log = logging.getLogger(__name__)

LIBRARY_NOISE = (
    "Precision bf16-mixed is not supported by the model summary",  # the summary shows fp32 sizes, as it says
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # inside Lightning under this torch; nothing to act on
    # every resume: it continues from what is there (a run dir holding another run is refused, overwrite=)
    r"Checkpoint directory .* exists and is not empty",
)
"""Library warnings that every run printed and that say nothing about the run; left out of its output."""


def _advert(record: logging.LogRecord) -> bool:
    """False for Lightning's line that advertises its cloud logger in every run."""
    return not record.getMessage().startswith("💡 Tip")


def quiet_library_noise() -> None:
    """Leave :data:`LIBRARY_NOISE` and Lightning's advert out of a run's output, and print each of
    Lightning's lines once."""
    for message in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _advert not in rank_zero.filters:
        rank_zero.addFilter(_advert)
    if logging.getLogger().handlers:
        # Hydra's job logging prints every record and files it in run.log; the console handler that the
        # `lightning` package adds on import printed each of Lightning's lines a second time (`INFO: ...`).
        lightning = logging.getLogger("lightning")
        for handler in [h for h in lightning.handlers if type(h) is logging.StreamHandler]:
            lightning.removeHandler(handler)


RESUME_NOTES = {"skip": "finished before, skipped", "continue": "continues from its last.ckpt", "start": "starts"}


_LEADING_KEY = re.compile(r"^(\w+)(?:\.\w+)*\b")
"""A message's leading name (``loss.lam must be ...``, ``fusion has no setting ...``): a config key where it opens with a group."""


def _bad(what: str, message: str) -> ConfigError:
    """``bad <group> config: <message>``, the group the key that ``message`` opens with belongs to
    where that key lies outside ``what`` (the model checks ``loss.*`` and ``data.patch_size`` too)."""
    key = _LEADING_KEY.match(message)
    if key is not None and (CONF_DIR / key[1]).is_dir() and not (key[0] == what or key[0].startswith(f"{what}.")):
        what = key[1]
    return ConfigError(f"bad {what} config: {message}")


def _check(values: Any, what: str, key: str) -> None:
    """``values`` (a node resolved to plain values, its keys named ``key``) against what they build
    (:func:`gipc.typecheck.check_node`): a value of the wrong kind is one line, ``bad <what> config: ...``."""
    try:
        check_node(values, key)
    except ConfigError as exc:
        raise _bad(what, str(exc)) from None


def _build(node: DictConfig, what: str, **kwargs: Any) -> Any:
    """Instantiate ``node``, its values checked first (:func:`_check`), turning any constructor error
    (also of a nested target) into a one-line ConfigError."""
    _check(OmegaConf.to_container(node, resolve=True), what, what)
    try:
        return instantiate(node, **kwargs)
    except MissingMandatoryValue as exc:  # `???` left in conf/ (run.py names it before Hydra starts)
        raise _bad(what, f"{exc.full_key}: required, and not given") from None
    except InstantiationException as exc:
        cause: BaseException = exc
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        raise _bad(what, out_of_memory(cause) or " ".join(str(cause).split())) from cause


def _named(group: DictConfig | None, what: str) -> list[Any]:
    """Instantiate every entry of a dict-of-targets group (loggers, callbacks); null entries are switched off."""
    built = []
    for name, node in (group or {}).items():
        if node is not None and not isinstance(node, DictConfig):
            raise ConfigError(f"{what}.{name} must be a config with a _target_ (or null), got {node!r}")
        if node and "_target_" in node:
            built.append(_build(node, f"{what}.{name}"))
    return built


def _resumes(cfg: DictConfig) -> bool:
    """The command continues its run dir's own ``last.ckpt``: ``resume=true``, ``resume=<run dir>`` or ``ckpt_path=last``."""
    return bool(cfg.resume) or cfg.get("ckpt_path") == "last"


def resolve_ckpt(cfg: DictConfig, output_dir: Path) -> str | None:
    """``ckpt_path=PATH``, or ``ckpt_path=last`` / ``resume=true`` / ``resume=<run dir>`` (which Hydra
    made this run's dir): this run dir's ``checkpoints/last.ckpt``."""
    if cfg.ckpt_path not in (None, "last") and not cfg.resume:
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise ConfigError(f"ckpt_path {path} does not exist")
        check_training_checkpoint(path)
        return str(path)
    if _resumes(cfg):
        last = last_checkpoint(output_dir)
        if not last.is_file():
            raise ConfigError(
                f"nothing to resume: {last} does not exist; pass resume=<the run dir to resume>"
            )
        return str(last)
    return None


RESUMED_SETTINGS = ("seed", "model", "loss", "data")
"""What a resumed run must share with the run it continues (what is trained, how, on what): the
trainer, the loggers and the callbacks may change (more epochs, another logger)."""
NOT_COMPARED = ("data.num_workers", "model.loss.")
"""Keys under those that may differ or are compared elsewhere: loader processes; the model's copy of ``loss``."""


def check_resumed_settings(cfg: DictConfig, output_dir: Path) -> None:
    """A run continued under other settings than its ``config.yaml`` records would train on as another
    run from the checkpoint's state, unannounced: refused, naming the first differences. Keys that
    file lacks (written by an older gipc) are not compared."""
    saved = output_dir / "config.yaml"
    if not saved.is_file():
        return
    old, new = _flat(OmegaConf.to_container(OmegaConf.load(saved))), _flat(OmegaConf.to_container(cfg, resolve=True))
    changed = [
        f"{key} {old[key]!r} -> {new.get(key)!r}"
        for key in old
        if key.split(".")[0] in RESUMED_SETTINGS and not key.startswith(NOT_COMPARED) and new.get(key) != old[key]
    ]
    if changed:
        shown = "; ".join(changed[:3]) + ("; ..." if len(changed) > 3 else "")
        raise RunDirError(  # no FAILED marker: the run it would continue is sound
            f"resume: {output_dir} was trained with other settings ({shown}); continue it with its own overrides "
            "(its config.yaml), or train a new run without resume"
        )


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (``data.source.sigma``); lists and empty mappings stay values."""
    if isinstance(node, dict) and node:
        return {key: value for name, child in node.items() for key, value in _flat(child, f"{prefix}.{name}" if prefix else str(name)).items()}
    return {prefix: node}


def _old_checkpoints(cfg: DictConfig, output_dir: Path) -> list[Path]:
    """An earlier run's checkpoints that a fresh training run here would mix with its own: refused unless
    ``overwrite=true`` (they are then deleted once the config has been checked)."""
    if not cfg.train or _resumes(cfg):
        return []
    old = sorted((output_dir / "checkpoints").glob("*.ckpt"))
    if old and not cfg.overwrite:
        raise RunDirError(
            f"{output_dir} already holds checkpoints ({', '.join(p.name for p in old[:2])}{', ...' if len(old) > 2 else ''}); "
            "continue that run with resume=true, or start it over with overwrite=true (deletes them)"
        )
    return old


def run_experiment(cfg: DictConfig) -> float | None:
    """Run one experiment; on failure leave a ``FAILED`` marker in the run dir and exit with one line.
    A library's warning is one ``warning:`` line too."""
    with one_line_warnings():
        return _run_experiment(cfg)


def _run_experiment(cfg: DictConfig) -> float | None:
    quiet_library_noise()
    output_dir = Path(cfg.paths.output_dir)
    resuming = _resumes(cfg)  # as launched: a resumed sweep's jobs set their own below
    if (_multirun() and resume_dir(cfg.resume)) or requeued():  # gipc/sweep.py, gipc/runstate.py
        action = resume_action(output_dir)
        job = f"job {HydraConfig.get().job.num}" if _multirun() else "run"
        print(f"{job}: {RESUME_NOTES[action]} ({output_dir})", file=sys.stderr)
        if action == "skip":
            return None
        cfg.resume = action == "continue"
        cfg.overwrite = cfg.overwrite or action == "start"  # stopped before a whole last.ckpt: what its first save left goes
    try:
        # Rank zero only: the other ranks of a DDP run (Lightning's per-device processes, torchrun,
        # Slurm tasks) train in the same run dir as its parts.
        with training_lock(output_dir) if rank_zero_only.rank == 0 else nullcontext():
            result = _run(cfg, output_dir)
    except RunDirError as exc:
        _exit(2, exc, str(exc))
    except UserError as exc:  # the message is the whole story: one line, exit 2, no traceback
        _mark_failed(output_dir, str(exc))
        _exit(2, exc, str(exc))
    except NonFiniteLossError as exc:
        message = f"training diverged: {exc}; {_kept(output_dir)}"
        _mark_failed(output_dir, message)
        _exit(1, exc, message)
    except SIGTERMException as exc:  # Lightning's SystemExit with no code: the shell would read exit code 0, success
        _exit_stopped(exc, "stopped by SIGTERM", signal.SIGTERM, output_dir, resuming)
    except KeyboardInterrupt as exc:  # Ctrl-C outside Lightning's loops (building the data, fusing the test images)
        _exit_stopped(exc, "interrupted", signal.SIGINT, output_dir, resuming)
    except SystemExit as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) after Ctrl-C in its loops: nothing said
            _exit_stopped(exc, "interrupted", signal.SIGINT, output_dir, resuming)
        raise  # a requeue hand-back (submitit exits after it), or an exit already reported
    except BaseException as exc:
        memory = out_of_memory(exc)
        if memory is not None:  # a resource, not a bug: one line naming the knobs, no traceback
            message = f"{memory}; a smaller data.batch_size or data.patch_size needs less; {_kept(output_dir)}"
            _mark_failed(output_dir, message)
            _exit(1, exc, message)
        full = disk_full(exc)
        if full is not None:  # a resource too: free space, then continue from the last whole checkpoint
            then = f"continue with the same command plus resume={output_dir}" if last_checkpoint(output_dir).is_file() else "run it again"
            message = f"{full}; {_kept(output_dir)}; free some space, then {then}"
            _mark_failed(output_dir, message)
            _exit(1, exc, message)
        _mark_failed(output_dir, "".join(traceback.format_exception(exc)))
        raise
    finally:
        _finish_wandb()
    (output_dir / FAILED).unlink(missing_ok=True)
    return result


def _kept(output_dir: Path) -> str:
    """What a failed run leaves to continue from, in words."""
    last = last_checkpoint(output_dir)
    return f"the last good checkpoint, kept: {last}" if last.is_file() else "no checkpoint was written yet"


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class JobFailed(CompactHydraException):
    """A sweep job's one-line error, raised for Hydra to record: Hydra repeats its message, not a
    traceback, when the sweep ends."""


def _exit(code: int, exc: BaseException, message: str) -> NoReturn:
    """Print the one-line error and exit with ``code``. A multirun job raises instead: Hydra then
    records it (an Optuna trial) as failed and the sweep goes on, where an exit would end the sweep."""
    _finish_wandb()  # its footer first: the error is the run's last line
    print(f"error: {message}", file=sys.stderr)
    if _multirun():
        raise JobFailed(message) from exc
    sys.exit(code)


def _exit_stopped(exc: BaseException, what: str, signum: int, output_dir: Path, resuming: bool) -> NoReturn:
    """A SIGTERM (``kill``, ``timeout``, a scheduler) or Ctrl-C stops the run, or the whole multirun,
    like a kill: one line naming how to continue, no ``FAILED`` (nothing is wrong with the run), exit
    code 128 + the signal's number (143, 130). ``resuming``: the command already resumes, so running it
    again continues. A job in a launcher's worker on the sweep's terminal leaves the line to the sweep's
    own process (gipc/run.py), which a Ctrl-C stops too."""
    if _multirun():
        how = f"continue the sweep {continue_hint(HydraConfig.get().sweep.dir, resuming)}"
    elif last_checkpoint(output_dir).is_file():
        how = f"continue {continue_hint(output_dir, resuming)}"
    else:
        how = "no checkpoint was written yet; run it again"
    _finish_wandb()  # its footer first: how to continue is the run's last line
    if not (_multirun() and leaves_stop_line_to_launcher()):
        print(f"error: {what}; {how}", file=sys.stderr)
    raise SystemExit(128 + signum) from exc


def _finish_wandb() -> None:
    """End this job's W&B run (failed if an error is on its way out): the next job of an in-process
    multirun would otherwise log into it instead of starting its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if sys.exc_info()[0] is not None else 0)


@rank_zero_only
def _mark_failed(output_dir: Path, message: str) -> None:
    try:
        write_text(output_dir / FAILED, message + "\n")
    except OSError:  # a full disk takes no marker either: the error line still says what happened
        pass


def _trains_nothing(cfg: DictConfig) -> str | None:
    """The setting that keeps a run from training at all (``train=false``, ``trainer.max_epochs=0``, ...), or None."""
    if not cfg.train:
        return "train=false"
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        value = cfg.trainer.get(key)
        if value == 0 and not isinstance(value, bool):
            return f"trainer.{key}={value}"
    return None


RUN_KEYS: dict[str, Any] = {"seed": int, "train": bool, "test": bool, "overwrite": bool, "resume": bool | str, "ckpt_path": str | None}
"""The run's own keys of ``conf/config.yaml`` and what each takes (``overwrite=yes`` must not delete checkpoints;
the seed splits and draws the data too, so it cannot be null)."""


def _run(cfg: DictConfig, output_dir: Path) -> float | None:
    check_values(RUN_KEYS, {key: cfg.get(key) for key in RUN_KEYS}, "")
    old_checkpoints = _old_checkpoints(cfg, output_dir)
    try:
        seed = L.seed_everything(cfg.seed, workers=True)
    except ValueError as exc:  # outside numpy's seeds
        raise ConfigError(f"seed must be in [0, 4294967295] (numpy's seeds), got {cfg.seed!r}") from exc
    ckpt_path = resolve_ckpt(cfg, output_dir)
    untrained = _trains_nothing(cfg)
    if cfg.test and untrained and ckpt_path is None and not cfg.model.get("init_generator"):
        raise ConfigError(
            f"{untrained} trains nothing, and no trained generator is named (the test would score random weights): give "
            "ckpt_path=<run dir>/checkpoints/last.ckpt, or model.init_generator=<weights file, or shipped>"
        )
    if ckpt_path is not None and _resumes(cfg):
        check_resumed_settings(cfg, output_dir)
    d_steps = cfg.model.d_steps_per_g_step  # a bad value is left for the model to name
    datamodule = _build(cfg.data, "data", batches_per_step=d_steps + 1 if isinstance(d_steps, int) and d_steps >= 1 else 1)
    model = build_model(cfg.model, seed)
    loggers = _named(cfg.get("logger"), "logger")
    callbacks = _named(cfg.get("callbacks"), "callbacks")
    check_trainer(cfg.trainer)
    if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda") and not torch.cuda.is_available():  # Lightning: "No supported gpu backend found!"
        raise ConfigError(f"trainer.accelerator={cfg.trainer.accelerator}: no CUDA GPU is visible here; train on the CPU with trainer=cpu (or the default trainer)")
    trainer: L.Trainer = _build(
        cfg.trainer,
        "trainer",
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
    )
    _check_launch(trainer)
    # The data's own checks (held-out photos too few to split, too few patches for a batch) before
    # anything is written: in fit they came after config.yaml and the W&B run. Fit reuses the split.
    datamodule.setup("fit" if cfg.train else "test")
    continue_run(loggers, output_dir, continues=ckpt_path is not None)  # the config is sound: nothing written before

    if trainer.is_global_zero:
        for path in old_checkpoints:  # overwrite=true, and the config is sound
            path.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.train:
        if trainer.is_global_zero:
            (output_dir / DONE).unlink(missing_ok=True)  # it trains again: not done until it ends
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        if any(getattr(c, "handed_back", False) for c in trainer.callbacks):  # requeued: the next start tests
            return None
    wanted = cfg.get("optimized_metric")  # what a sweeper (Optuna) optimises
    if wanted and cfg.train and wanted not in trainer.callback_metrics:
        # training stopped before a validation (trainer.max_steps inside the first epoch): the trial
        # had nothing to report, and a sweep of such trials ended in Optuna's traceback
        trainer.validate(model, datamodule=datamodule, verbose=False)
        if wanted not in trainer.callback_metrics:
            raise ConfigError(f"optimized_metric={wanted}: the run logs no such metric; it logs {', '.join(sorted(trainer.callback_metrics))}")
    fit_metrics = dict(trainer.callback_metrics)  # trainer.test replaces them: keep val/* for optimized_metric
    if cfg.test:
        trainer.test(model, datamodule=datamodule, ckpt_path=None if cfg.train else ckpt_path)
    _finish_wandb()  # its own summary and sync hint first: the run's files and table are the last lines a run prints
    _print_summary(trainer, output_dir)
    metric = {**fit_metrics, **trainer.callback_metrics}.get(wanted or "")
    result = float(metric) if metric is not None else None
    if trainer.is_global_zero:
        write_text(output_dir / DONE, done_record(wanted, result))
    return result


def build_model(node: DictConfig, seed: int) -> Any:
    """The LightningModule of ``conf/model``: its networks built first, the generator starting from
    ``init_generator``'s weights when one is named (a fine-tune), then handed to the module."""
    settings = OmegaConf.to_container(node, resolve=True)
    init = settings.pop("init_generator", None)
    generator = _build(OmegaConf.create(settings.pop("generator")), "model.generator")
    if init:
        start_from(generator, init)
    _check(settings["loss"], "model", "loss")  # conf/loss, which the model interpolates: its keys named as they are set
    return _build(OmegaConf.create(settings), "model", generator=generator, seed=seed, _convert_="all")


def resolve_precision(precision: str | int, accelerator: str) -> str | int:
    """``trainer.precision=auto``: bf16 mixed where the device computes bf16 natively, fp32 elsewhere
    (said in the log); any other value is Lightning's own."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    chosen = auto_precision(device)
    log.info("trainer.precision=auto: %s on %s (%s)", chosen, device, native_bf16(device) or "no native bf16")
    return chosen


TRAINER_COUNTS = {
    "max_epochs": -1, "min_epochs": 0, "max_steps": -1, "min_steps": 0, "log_every_n_steps": 1,
    "check_val_every_n_epoch": 1, "num_sanity_val_steps": -1, "num_nodes": 1,
}
"""The trainer's integer settings and their least values (-1: no limit, every batch)."""


TRAINER_PRECISIONS = ("auto", "32", "32-true", "16", "16-mixed", "bf16", "bf16-mixed")
"""The trainer precisions gipc trains in: fp32 or mixed. Lightning's -true ones and 64 convert the
networks but not the float32 images the module makes, and failed in their first convolution."""


def check_trainer(node: DictConfig) -> None:
    """Counts, batch limits and precision of a trainer config, which Lightning's Trainer takes
    unchecked and then fails on deep inside fit (a string, validation every 0 epochs, 64-bit):
    refused in one line first."""
    precision = node.get("precision", "auto")
    if str(precision) not in TRAINER_PRECISIONS:
        raise ConfigError(f"bad trainer config: trainer.precision must be one of {', '.join(TRAINER_PRECISIONS)} (fp32 or mixed), got {precision!r}")
    for key, least in TRAINER_COUNTS.items():
        value = node.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"bad trainer config: trainer.{key} must be an integer >= {least}, got {value!r}")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = node.get(key)
        count_or_share = isinstance(value, int) and value >= 0 or isinstance(value, float) and 0.0 <= value <= 1.0
        if value is not None and (isinstance(value, bool) or not count_or_share):
            raise ConfigError(f"bad trainer config: trainer.{key} must be a number of batches (an integer >= 0) or a share in [0.0, 1.0], got {value!r}")


def _check_launch(trainer: L.Trainer) -> None:
    """DDP must be told that each of Algorithm 1's alternating steps leaves the other network's weights
    unused (``trainer=ddp`` does); its default launch re-runs the command line once per device, which
    a local multirun (-m) cannot do."""
    if isinstance(trainer.strategy, DDPStrategy) and not trainer.strategy._ddp_kwargs.get("find_unused_parameters"):
        raise ConfigError(
            "training under DDP needs trainer=ddp: each of the alternating D and G steps "
            f"leaves the other network's weights unused, which DDP must be told (trainer=ddp trainer.devices={trainer.num_devices})"
        )
    if _multirun() and isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher):
        raise ConfigError(
            "trainer=ddp in a multirun: add trainer.strategy.start_method=spawn for local sweeps, "
            "or launch on Slurm with hydra/launcher=slurm (one task per device)"
        )


@rank_zero_only
def _print_summary(trainer: L.Trainer, output_dir: Path) -> None:
    lines = [f"run dir: {output_dir}"]
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and getattr(ckpt, "last_model_path", ""):
        lines.append(f"checkpoint: {ckpt.last_model_path}")
    images = [folder for callback in trainer.callbacks if isinstance(callback, TestReport) for folder in callback.image_dirs]
    for name in (*images, "metrics.csv", "metrics.md", "metrics.tex", "config.yaml"):
        if (output_dir / name).exists():
            lines.append(f"{name}: {output_dir / name}")
    if (output_dir / "metrics.md").exists():
        lines.append((output_dir / "metrics.md").read_text())
    print("\n".join(lines))
