"""One experiment from a composed config: instantiate, fit, test, report. Hydra only instantiates."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gipc.files import write_text

log = logging.getLogger(__name__)

FAILED_MARKER = "FAILED"


class ConfigError(ValueError):
    """A bad config value, reported in one line before any work starts."""


def _build(node: DictConfig, what: str, **kwargs: Any) -> Any:
    """Instantiate ``node``, turning a constructor's ValueError into a one-line ConfigError."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"bad {what} config: {cause}") from cause


def _named(group: DictConfig | None, what: str) -> list[Any]:
    """Instantiate every entry of a dict-of-targets group (loggers, callbacks)."""
    return [_build(node, f"{what}.{name}") for name, node in (group or {}).items() if node and "_target_" in node]


def resolve_ckpt(cfg: DictConfig, output_dir: Path) -> str | None:
    """``ckpt_path=PATH``, or ``ckpt_path=last`` / ``resume=true``: this run dir's ``checkpoints/last.ckpt``."""
    if cfg.ckpt_path not in (None, "last") and not cfg.resume:
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise ConfigError(f"ckpt_path {path} does not exist")
        return str(path)
    if cfg.ckpt_path == "last" or cfg.resume:
        last = output_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise ConfigError(
                f"nothing to resume: {last} does not exist; rerun with hydra.run.dir=<the run dir to resume>"
            )
        return str(last)
    return None


def run_experiment(cfg: DictConfig) -> float | None:
    """Run one experiment; on failure leave a ``FAILED`` marker in the run dir and exit with one line."""
    output_dir = Path(cfg.paths.output_dir)
    try:
        result = _run(cfg, output_dir)
    except ConfigError as exc:
        _mark_failed(output_dir, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BaseException as exc:
        _mark_failed(output_dir, "".join(traceback.format_exception(exc)))
        raise
    (output_dir / FAILED_MARKER).unlink(missing_ok=True)
    return result


@rank_zero_only
def _mark_failed(output_dir: Path, message: str) -> None:
    write_text(output_dir / FAILED_MARKER, message + "\n")


def _run(cfg: DictConfig, output_dir: Path) -> float | None:
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_ckpt(cfg, output_dir)
    d_steps = cfg.model.d_steps_per_g_step
    datamodule = _build(cfg.data, "data", batches_per_step=(d_steps + 1) if isinstance(d_steps, int) else 1)
    model = _build(cfg.model, "model")
    loggers = _named(cfg.get("logger"), "logger")
    callbacks = _named(cfg.get("callbacks"), "callbacks")
    trainer: L.Trainer = _build(cfg.trainer, "trainer", logger=loggers or False, callbacks=callbacks)

    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    if cfg.test:
        trainer.test(model, datamodule=datamodule, ckpt_path=None if cfg.train else ckpt_path)
    _print_summary(trainer, output_dir)
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "", None)
    return float(metric) if metric is not None else None


@rank_zero_only
def _print_summary(trainer: L.Trainer, output_dir: Path) -> None:
    lines = [f"run dir: {output_dir}"]
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and getattr(ckpt, "last_model_path", ""):
        lines.append(f"checkpoint: {ckpt.last_model_path}")
    for name in ("fused", "metrics.csv", "metrics.md", "config.yaml"):
        if (output_dir / name).exists():
            lines.append(f"{name}: {output_dir / name}")
    if (output_dir / "metrics.md").exists():
        lines.append((output_dir / "metrics.md").read_text())
    print("\n".join(lines))
