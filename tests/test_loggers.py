"""Loggers of a resumed run: the CSV file keeps the rows its earlier launch logged, W&B keeps the run's id."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from gipc.errors import LoggerError
from gipc.loggers import WANDB_RUN_ID, QuietWandbLogger, ResumableCSVLogger, continue_run


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
