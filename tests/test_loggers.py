"""Loggers of a resumed run: the CSV file keeps the rows its earlier launch logged, W&B keeps the run's id;
and what each launch of gipc.experiment fits from, tests and tells its loggers."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from gipc.errors import LoggerError
from gipc.experiment import run_experiment
from gipc.loggers import WANDB_RUN_ID, QuietWandbLogger, ResumableCSVLogger, continue_run
from gipc.runstate import FAILED
from helpers import CONF


def launch(logger_class: type[CSVLogger], root: Path, rows: dict[int, dict[str, float]], continues: bool = False) -> None:
    """One launch of a run: a new logger on the run dir logs ``rows`` (step -> values) and saves;
    ``continues``: the launch resumes from a checkpoint, as gipc.experiment tells the logger."""
    logger = logger_class(str(root), name="csv", version="")
    if continues:
        logger.keep_earlier_rows = True
    for step, values in rows.items():
        logger.log_metrics(values, step=step)
    logger.save()


def read(root: Path) -> list[dict[str, str]]:
    with open(root / "csv" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_resumed_launch_keeps_rows_before_its_first_step_and_replaces_the_replayed_ones(tmp_path):
    # Killed after logging steps 0-5 with its last checkpoint at step 3: the resume replays 3-5 and goes on.
    launch(ResumableCSVLogger, tmp_path, {step: {"g_loss": float(step)} for step in range(6)})
    launch(ResumableCSVLogger, tmp_path, {step: {"g_loss": 10.0 + step, "lr": 0.5} for step in range(3, 8)}, continues=True)
    rows = read(tmp_path)
    assert [(r["step"], r["g_loss"], r["lr"]) for r in rows] == [
        ("0", "0.0", ""),
        ("1", "1.0", ""),
        ("2", "2.0", ""),
        *((str(s), f"{10.0 + s}", "0.5") for s in range(3, 8)),
    ]


def test_a_run_that_starts_over_replaces_the_earlier_rows(tmp_path):
    # overwrite=true after a run that logged every 5 steps; the new one logs every 10 from step 0
    launch(ResumableCSVLogger, tmp_path, {step: {"g_loss": 100.0 + step} for step in (4, 9, 14, 19)})
    with pytest.warns(UserWarning, match="will be deleted"):
        launch(ResumableCSVLogger, tmp_path, {step: {"g_loss": float(step)} for step in (9, 19)})
    assert [(r["step"], r["g_loss"]) for r in read(tmp_path)] == [("9", "9.0"), ("19", "19.0")]


def test_lightnings_own_logger_loses_the_earlier_launch_which_is_why_gipc_has_its_own(tmp_path):
    launch(CSVLogger, tmp_path, {step: {"g_loss": float(step)} for step in range(6)})
    with pytest.warns(UserWarning, match="will be deleted"):
        launch(CSVLogger, tmp_path, {step: {"g_loss": 1.0} for step in range(3, 8)})
    assert [r["step"] for r in read(tmp_path)] == ["3", "4", "5", "6", "7"]


def test_a_first_launch_writes_what_lightnings_logger_writes(tmp_path):
    rows = {0: {"a": 1.0}, 5: {"a": 2.0, "b": 3.0}}
    launch(ResumableCSVLogger, tmp_path / "ours", rows)
    launch(CSVLogger, tmp_path / "lightning", rows)
    assert (tmp_path / "ours" / "csv" / "metrics.csv").read_bytes() == (tmp_path / "lightning" / "csv" / "metrics.csv").read_bytes()


def test_a_run_keeps_one_wandb_id_across_launches_that_continue_it_and_gets_a_new_one_when_it_starts_over(tmp_path):
    def launch(continues: bool, **kwargs) -> str:
        logger = WandbLogger(save_dir=str(tmp_path), offline=True, **kwargs)
        continue_run([logger], tmp_path, continues)
        return logger.version  # the id wandb.init will be given

    first = launch(continues=False)
    assert len(first) == 8 and (tmp_path / WANDB_RUN_ID).read_text() == first + "\n"
    assert launch(continues=True) == launch(continues=True) == first  # resumed, resumed again
    restarted = launch(continues=False)  # overwrite=true
    assert restarted != first and launch(continues=True) == restarted
    assert launch(continues=True, id="mine") == "mine"  # a user's own id= is kept


@pytest.mark.parametrize("continues", [True, False])
def test_continue_run_tells_the_csv_logger_whether_to_keep_earlier_rows(tmp_path: Path, continues: bool) -> None:
    logger = ResumableCSVLogger(str(tmp_path))
    logger.keep_earlier_rows = not continues  # whatever it held before, the launch decides
    continue_run([logger], tmp_path, continues)
    assert logger.keep_earlier_rows is continues


def test_quiet_wandb_logger_leaves_anonymous_out_and_keeps_the_users_settings(tmp_path: Path) -> None:
    # anonymous=None is what Lightning passes whatever the user set; wandb warns about it.
    logger = QuietWandbLogger(save_dir=str(tmp_path), offline=True, project="p")
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["project"] == "p"


def test_a_misspelt_wandb_setting_is_refused_when_the_logger_is_built(tmp_path: Path) -> None:
    # wandb.init refused it with a traceback once training had started; a real setting of wandb.init passes
    QuietWandbLogger(save_dir=str(tmp_path), offline=True, entity="me")
    with pytest.raises(TypeError, match=r"^the W&B logger has no setting projct; did you mean project\?$"):
        QuietWandbLogger(save_dir=str(tmp_path), offline=True, projct="x")


@pytest.mark.parametrize(("offline", "hinted"), [(True, False), (False, True)])
def test_a_wandb_start_error_is_one_line_with_a_hint_only_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: bool, hinted: bool) -> None:
    import wandb.errors

    def refuse(self: WandbLogger) -> None:
        raise wandb.errors.Error("api key not configured\n  (no-tty).")

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(WandbLogger, "experiment", property(refuse))
    with pytest.raises(LoggerError) as refused:
        QuietWandbLogger(save_dir=str(tmp_path), offline=offline).experiment
    message = str(refused.value)  # wandb's text with its whitespace collapsed and final full stop dropped
    assert message.startswith("W&B cannot start the run: api key not configured (no-tty)")
    assert ("logger.wandb.offline=true" in message) is hinted


def run(run_dir: Path, *overrides: str, logger: str = "csv") -> None:
    """One launch of ``python gipc/run.py`` into ``run_dir``, in process (W&B's run named here: no Hydra job names it)."""
    named = ["logger.wandb.name=launch", "logger.wandb.group=tests", "logger.wandb.tags=[]"] if logger == "wandb" else []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"logger={logger}", *named, "test=false", "seed=7", f"paths.output_dir={run_dir}", *overrides])
    run_experiment(cfg)


LAST = "checkpoints/last.ckpt"
NOT_CALLED = "not called"
LAUNCHES = {
    # overrides: (the checkpoint fit starts from, the one test scores, whether the loggers continue the run)
    "a new run, test=false": ([], None, NOT_CALLED, False),
    "a new run and its test": (["test=true"], None, None, False),  # the test scores the weights fit ends with
    "resume=true": (["resume=true"], LAST, NOT_CALLED, True),
    "ckpt_path=last": (["ckpt_path=last"], LAST, NOT_CALLED, True),  # = resume=true (conf/config.yaml)
    "overwrite=true": (["overwrite=true"], None, NOT_CALLED, False),
    # a run dir with checkpoints takes a test-only launch (it trains nothing to mix with them)
    "a test of the run's checkpoint": (["train=false", "test=true", "ckpt_path={run}/" + LAST], NOT_CALLED, LAST, True),
}


@pytest.mark.parametrize("launch", LAUNCHES)
def test_what_a_launch_fits_from_tests_and_tells_its_loggers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launch: str) -> None:
    overrides, fit_from, test_from, continues = LAUNCHES[launch]
    if not launch.startswith("a new run"):  # an earlier launch left its checkpoint
        (tmp_path / LAST).parent.mkdir()
        torch.save({"pytorch-lightning_version": L.__version__}, tmp_path / LAST)  # ckpt_path= reads it (fit and test are stubs)
    calls = {}

    def stage(name: str):
        def called(trainer: L.Trainer, model, datamodule=None, ckpt_path=None) -> None:
            (logger,) = trainer.loggers
            calls[name] = (ckpt_path, logger.keep_earlier_rows, model.progress.label_rng.initial_seed())

        return called

    monkeypatch.setattr(L.Trainer, "fit", stage("fit"))
    monkeypatch.setattr(L.Trainer, "test", stage("test"))
    run(tmp_path, *(override.format(run=tmp_path) for override in overrides))
    where = {None: None, LAST: str(tmp_path / LAST)}
    expected = {name: (where[given], continues, 7) for name, given in (("fit", fit_from), ("test", test_from)) if given != NOT_CALLED}
    assert calls == expected  # seed=7 seeds the model's soft labels too
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["data"]["seed"] == 7  # the config as it ran, resolved


def test_a_launch_that_fails_leaves_its_traceback_in_failed_and_a_refused_one_no_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def crash(*args, **kwargs) -> None:
        raise RuntimeError("CUDNN_STATUS_INTERNAL_ERROR")  # a crash, a bug somewhere: its traceback is the story (out of memory is one line)

    monkeypatch.setattr(L.Trainer, "fit", crash)
    with pytest.raises(RuntimeError):
        run(tmp_path / "crashed")
    failed = (tmp_path / "crashed" / FAILED).read_text()
    assert failed.startswith("Traceback") and failed.rstrip().endswith("\nRuntimeError: CUDNN_STATUS_INTERNAL_ERROR")
    # A config refused once its loggers are made (the trainer's): one line, and no W&B run id for a run that never ran.
    with pytest.raises(SystemExit):
        run(tmp_path / "refused", "trainer.devices=0", logger="wandb")
    assert capsys.readouterr().err.startswith("error: bad trainer config: `Trainer(devices=0)` value is not a valid input")
    assert sorted(p.name for p in (tmp_path / "refused").iterdir()) == [FAILED]
