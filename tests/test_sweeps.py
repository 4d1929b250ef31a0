"""Multiruns as a user types them: presets, launchers (basic, joblib, submitit, Slurm), Optuna, gipc-compare.

Each sweep runs ``python gipc/run.py -m ...`` in a temp dir with tiny data (one batch per stage).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import gipc.experiment  # noqa: F401  (registers the gipc.* resolvers the configs use)
import gipc.runstate
import gipc.sweep
from gipc.cli.compare import main as compare_main
from gipc.compare import compare
from gipc.errors import RunDirError, UserError
from gipc.runstate import LOCK, done_record, finished, launch_override, recorded_objective, recorded_overrides, resume_action, running, training_lock, unfinished_runs
from gipc.sweep import LAUNCHER, ResumeSweep, SweepSummary, check_resume, job_log, keep_record, leaves_stop_line_to_launcher, requeued, RANK_VARIABLES, run_dir, stopped_multirun, sweep_status
from helpers import CONF, RUN, run_gipc

#: One batch per stage on 64 px photos: a job takes seconds, so the sweep machinery is what is timed.
TINY = (
    "trainer.fast_dev_run=true",
    "data.patch_size=16",
    "data.batch_size=2",
    "data.source.max_side=64",
    "callbacks.test_report.baselines=[]",
)
LAMBDAS = ("l1", "l2", "l3", "l4", "l5", "l6")


def sweep_dir(cwd: Path, task: str = "quick") -> Path:
    """The one multirun dir a test's sweep made: outputs/<task>/multiruns/<time>."""
    (found,) = (cwd / "outputs" / task / "multiruns").iterdir()
    return found


def job_dirs(sweep: Path) -> list[Path]:
    """Job dirs ``<num>_<overrides>`` by job number."""
    jobs = [p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()]
    return sorted(jobs, key=lambda p: int(p.name.split("_", 1)[0]))


def saved(job: Path) -> dict:
    return yaml.safe_load((job / "config.yaml").read_text())


def hydra_cfg(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


# ---------------------------------------------------------------- presets, composed only
@pytest.mark.parametrize(
    "preset, params",
    [
        ("ablation", {"ablation": "none,without_int,without_gra"}),
        ("ratio", {"loss.ratio": "0.05,0.1,0.2,0.5,1.0"}),
        ("betas", {"loss.beta1": "0.65,1.3,2.6", "loss.beta2": "2.25,4.5,9.0"}),
    ],
)
def test_grid_presets_set_the_basic_sweepers_params(preset, params):
    cfg = hydra_cfg(f"hparams_search={preset}")
    assert dict(cfg.hydra.sweeper.params) == params
    assert cfg.hydra.sweeper._target_.endswith("BasicSweeper")
    assert cfg.loss.lam == 9.3  # a preset only sweeps, it changes no default


def test_optuna_preset_searches_lam_and_betas_for_the_best_validation_qabf():
    cfg = hydra_cfg("hparams_search=optuna")
    assert cfg.optimized_metric == "val/QABF"
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"loss.lam", "loss.beta1", "loss.beta2"}
    assert "Optuna" in cfg.hydra.sweeper._target_


def test_hydra_finds_gipcs_optuna_sweeper_from_any_folder(tmp_path):
    """Hydra instantiates only the plugins it finds under ``hydra_plugins``; ``python gipc/run.py`` puts the
    checkout first on sys.path, ``python -m gipc.run`` elsewhere finds it only as installed (an editable
    install maps the namespace, a wheel copies it)."""
    target = hydra_cfg("hparams_search=optuna").hydra.sweeper._target_
    code = "from hydra.core.plugins import Plugins; print('\\n'.join(Plugins.instance().class_name_to_class))"
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert target in found.stdout.splitlines()


def test_launchers_follow_cores_and_the_trainer():
    local = hydra_cfg("hydra/launcher=local_parallel").hydra.launcher
    assert local._target_.endswith("JoblibLauncher") and local.n_jobs == 2
    slurm = hydra_cfg("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2").hydra.launcher
    assert (slurm.nodes, slurm.gpus_per_node, slurm.tasks_per_node) == (2, 4, 4)
    assert slurm._target_.endswith("SlurmLauncher")
    single = hydra_cfg("hydra/launcher=slurm", "trainer=gpu").hydra.launcher  # no num_nodes in trainer=gpu: one node
    assert (single.nodes, single.gpus_per_node, single.tasks_per_node) == (1, 1, 1)


def test_sweep_job_dirs_are_named_by_overrides_and_stay_short():
    from gipc.sweep import job_dirname

    assert job_dirname("ablation=without_int") == "ablation=without_int"
    assert job_dirname("data.test_root=/data/lytro") == "data.test_root=_data_lytro"  # never nests dirs
    long = ",".join(f"data.source.photos{i}=[astronaut,coffee,camera]" for i in range(20))
    short = job_dirname(long)
    assert len(short) == 150 and short != job_dirname(long + "x") and short.startswith(long[:100])


def test_slurm_jobs_ask_for_the_warning_signal_the_checkpoint_answers_and_requeue():
    slurm = hydra_cfg("hydra/launcher=slurm").hydra.launcher
    assert slurm.signal_delay_s >= 60 and slurm.max_num_timeout > 0
    assert hydra_cfg().callbacks.model_checkpoint.requeue_signal == "SIGUSR2"  # submitit's signal


def test_a_resumed_sweep_skips_finished_jobs_continues_partial_ones_and_starts_the_rest(tmp_path, monkeypatch):
    finished, partial, fresh, cut = (tmp_path / name for name in ("0_a=1", "1_a=2", "2_a=3", "3_a=4"))
    for job in (finished, partial):
        (job / "checkpoints").mkdir(parents=True)
        (job / "checkpoints" / "last.ckpt").write_bytes(b"")
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text("- a=1\n")
    (finished / "metrics.csv").write_text("")
    # Killed during its first save: the atomic write left its temp file, no whole checkpoint to continue from.
    (cut / "checkpoints").mkdir(parents=True)
    (cut / "checkpoints" / ".last.ckpt.k1l2.tmp.ckpt").write_bytes(b"half")
    assert [resume_action(j) for j in (finished, partial, fresh, cut)] == ["skip", "continue", "start", "start"]
    # Hydra rewrites no record and logs nowhere for a finished job; a fresh job gets both.
    sweep = str(tmp_path)
    assert keep_record(sweep, str(finished)) is None and keep_record(sweep, str(partial)) is None
    assert keep_record(sweep, str(fresh)) == ".hydra" and keep_record(False, str(finished)) == ".hydra"
    assert job_log(sweep, str(finished), "run") == os.devnull and job_log(sweep, str(partial), "run") == str(partial / "run.log")
    assert job_log(False, str(finished), "run") == str(finished / "run.log")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert not requeued()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued()
    # A requeued Slurm job continues too (its config says no resume): a finished one is left as it was.
    assert keep_record(False, str(finished)) is None and job_log(False, str(finished), "run") == os.devnull
    assert keep_record(False, str(fresh)) == ".hydra" and job_log(False, str(partial), "run") == str(partial / "run.log")


def test_a_requeued_run_killed_in_its_first_save_starts_over_and_clears_what_that_save_left(tmp_path):
    """Killed before a whole last.ckpt: the atomic write's hidden temp file, and a step checkpoint whose
    last.ckpt never came, are no run to continue; the requeued job trains from scratch in their place."""
    run_dir = tmp_path / "outputs" / "cut"
    (run_dir / "checkpoints").mkdir(parents=True)
    leftovers = [run_dir / "checkpoints" / name for name in (".last.ckpt.k1l2.tmp.ckpt", "epoch000-step0000003.ckpt")]
    for path in leftovers:
        path.write_bytes(b"half")
    result = run_gipc(tmp_path, *TINY, "logger=csv", "hydra.run.dir=outputs/cut", env={"SLURM_RESTART_COUNT": "1"})
    assert f"run: starts ({run_dir})" in result.stderr
    assert not any(path.exists() for path in leftovers)
    assert resume_action(run_dir) == "skip"  # trained and tested: its table is written


def test_a_record_cut_short_by_a_kill_is_written_again_by_the_resumed_sweep(tmp_path):
    # Hydra writes .hydra/config.yaml, hydra.yaml, then overrides.yaml: a kill between them left a job whose
    # record the resume kept as it was, without the overrides that name its arm in gipc-compare ("default").
    job = tmp_path / "0_ablation=none"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("seed: 42\n")
    assert keep_record(str(tmp_path), str(job)) == ".hydra"
    (job / ".hydra" / "overrides.yaml").write_text("- ablation=none\n")
    assert keep_record(str(tmp_path), str(job)) is None


def test_unfinished_runs_are_the_started_jobs_neither_done_nor_failed_never_their_hydra_records(tmp_path):
    done, failed, partial = (tmp_path / name for name in ("0_a=1", "1_a=2", "2_a=3"))
    for job in (done, failed, partial):
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text("seed: 1\n")  # Hydra's record of every job, beside the run's own
        (job / "config.yaml").write_text("seed: 1\n")
    (done / "metrics.csv").write_text("image,method\n")
    (failed / "FAILED").write_text("boom\n")
    (partial / "checkpoints").mkdir()
    for name in ("epoch000-step0000300.ckpt", "last.ckpt"):
        (partial / "checkpoints" / name).write_bytes(b"")
    assert unfinished_runs(tmp_path) == [(partial, 300)]


def test_how_far_a_run_got_is_the_step_its_last_ckpt_holds_and_never_a_half_written_save(tmp_path):
    """A Slurm hand-back can write last.ckpt between step-named checkpoints or before the first: its own global
    step says how far the run got (where a resume continues). An atomic save's hidden temp file is no
    checkpoint; a damaged last.ckpt says nothing, so the step-named ones speak."""
    import torch

    handed_back, cut, damaged = (tmp_path / name for name in ("0_a=1", "1_a=2", "2_a=3"))
    for job in (handed_back, cut, damaged):
        (job / "checkpoints").mkdir(parents=True)
        (job / "config.yaml").write_text("seed: 1\n")
    torch.save({"global_step": 120, "state_dict": {}}, handed_back / "checkpoints" / "last.ckpt")
    (handed_back / "checkpoints" / "epoch000-step0000100.ckpt").write_bytes(b"")
    (cut / "checkpoints" / ".epoch000-step0000300.ckpt.k1l2.tmp.ckpt").write_bytes(b"half")
    (damaged / "checkpoints" / "last.ckpt").write_bytes(b"half")
    (damaged / "checkpoints" / "epoch000-step0000200.ckpt").write_bytes(b"")
    assert unfinished_runs(tmp_path) == [(handed_back, 120), (cut, None), (damaged, 200)]


@pytest.mark.parametrize(
    "item, launch",
    [("resume=outputs/quick/multiruns/x", True), ("+resume=x", True), ("++resume=x", True), ("~resume", True),
     ("resumed=1", False), ("resume_from=x", False), ("callbacks.resume=x", False)],
)
def test_only_resume_itself_is_an_override_of_how_a_job_was_launched(item, launch):
    assert launch_override(item) is launch


def test_a_job_that_failed_after_writing_its_table_is_continued_not_skipped(tmp_path):
    # The test stage writes metrics.csv, then logs its W&B table; a crash there leaves FAILED beside it.
    job = tmp_path / "0_a=1"
    (job / "checkpoints").mkdir(parents=True)
    (job / "checkpoints" / "last.ckpt").write_bytes(b"")
    (job / "metrics.csv").write_text("image,method\n")
    (job / "FAILED").write_text("wandb: network error\n")
    assert resume_action(job) == "continue"
    assert job_log(str(tmp_path), str(job), "run") == str(job / "run.log")


def test_resume_refuses_another_sweep_in_one_line(tmp_path):
    hydra = {"sweeper": {"_target_": "BasicSweeper", "params": {"seed": "1,2"}}, "overrides": {"task": ["loss.ratio=0.1,0.5", "logger=csv"]}}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    check_resume(tmp_path, {**hydra, "overrides": {"task": ["logger=csv", "loss.ratio=0.1,0.5", f"resume={tmp_path}"]}})  # same sweep
    with pytest.raises(UserError, match=r"its overrides were \['logger=csv', 'loss.ratio=0.1,0.5'\], this command's are"):
        check_resume(tmp_path, {**hydra, "overrides": {"task": ["loss.ratio=0.1,0.2", "logger=csv"]}})
    with pytest.raises(UserError, match="its sweep parameters were"):
        check_resume(tmp_path, {**hydra, "sweeper": {"_target_": "BasicSweeper", "params": {"seed": "1,2,3"}}})
    with pytest.raises(UserError, match="no such sweep dir"):
        check_resume(tmp_path / "gone", hydra)
    optuna = tmp_path / "optuna"  # the same parameters, once chosen by Optuna: not this basic sweep
    optuna.mkdir()
    (optuna / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {**hydra, "sweeper": {**hydra["sweeper"], "_target_": "OptunaSweeper"}}}))
    with pytest.raises(UserError, match="its sweeper were OptunaSweeper, this command's are BasicSweeper"):
        check_resume(optuna, hydra)
    # The Optuna plugin's own sweeper keeps its study in memory: refused; gipc's (hparams_search=optuna) resumes.
    plain = {**hydra, "sweeper": {**hydra["sweeper"], "_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"}}
    with pytest.raises(UserError, match="swept by OptunaSweeper, whose trials are chosen as they run and cannot resume here"):
        check_resume(optuna, plain)
    ours = {**hydra, "sweeper": {**hydra["sweeper"], "_target_": hydra_cfg("hparams_search=optuna").hydra.sweeper._target_}}
    (optuna / "multirun.yaml").unlink()
    (optuna / "0_loss.lam=2.5").mkdir()  # a trial of a sweeper that recorded no sweep
    with pytest.raises(UserError, match="its sweeper recorded no multirun.yaml .*; start a new sweep"):
        check_resume(optuna, ours)
    (optuna / "multirun.yaml").write_text(yaml.safe_dump({"hydra": ours}))
    check_resume(optuna, ours)


def test_a_run_records_what_it_returned_to_a_sweeper_in_its_done_marker(tmp_path):
    (tmp_path / "DONE").write_text(done_record("val/QABF", 0.625))
    assert recorded_objective(tmp_path, "val/QABF") == 0.625 and finished(tmp_path)
    assert recorded_objective(tmp_path, "val/PSNR") is None  # another metric than the sweep's
    (tmp_path / "DONE").write_text(done_record(None, None))  # no sweeper asked: when, and nothing else
    assert set(yaml.safe_load((tmp_path / "DONE").read_text())) == {"finished"} and recorded_objective(tmp_path, "val/QABF") is None
    (tmp_path / "DONE").write_text("2026-12-07T02:40:00+00:00\n")  # an earlier gipc's marker: a timestamp alone
    assert recorded_objective(tmp_path, "val/QABF") is None and finished(tmp_path)
    assert recorded_objective(tmp_path / "never-ran", "val/QABF") is None


def test_a_resumed_optuna_sweep_relaunches_its_trials_in_batches_of_consecutive_jobs():
    from hydra_plugins.gipc_optuna_sweeper._resumable import _batches, _params
    from optuna.distributions import CategoricalDistribution, UniformDistribution

    # n_jobs = 2; job 3 never got a dir (a queue that started 4 first): 4 and 5 launch together, 2 alone
    trials = [(n, [f"a={n}"]) for n in (0, 1, 2, 4, 5)]
    assert [[n for n, _ in batch] for batch in _batches(trials, 2)] == [[0, 1], [2], [4, 5]]
    assert [[n for n, _ in batch] for batch in _batches(trials, 1)] == [[0], [1], [2], [4], [5]]
    # a trial's parameters as Optuna holds them, read back from the overrides Hydra recorded
    distributions = {"loss.lam": UniformDistribution(1.0, 30.0), "model.head": CategoricalDistribution(["image", "weights"]), "seed": CategoricalDistribution([1, 2])}
    recorded = ["loss.lam=18.361096041714063", "model.head=weights", "seed=2", "logger=csv", "trainer.max_epochs=3"]
    fixed = {"logger": "csv", "trainer.max_epochs": "3"}
    assert _params(recorded, distributions, fixed) == {"loss.lam": 18.361096041714063, "model.head": "weights", "seed": 2}


class _TrialLauncher:
    """A launcher whose trials return ``-(lam - 10)^2`` at once, recording what Hydra records (the
    overrides, ``DONE`` with the objective); ``launched`` lists each launch's job numbers."""

    def __init__(self, sweep: Path) -> None:
        self.sweep, self.launched = sweep, []

    def launch(self, overrides, initial_job_idx):
        returns = []
        for num, trial in enumerate(overrides, initial_job_idx):
            params = dict(item.split("=", 1) for item in trial)
            job = self.sweep / f"{num}_trial"
            (job / ".hydra").mkdir(parents=True, exist_ok=True)
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(trial)))
            value = -((float(params["loss.lam"]) - 10.0) ** 2)
            (job / "DONE").write_text(done_record("obj", value))
            returns.append(type("Return", (), {"return_value": value})())
        self.launched.append(list(range(initial_job_idx, initial_job_idx + len(overrides))))
        return returns


def _optuna_sweep(sweep: Path, seed: int, n_trials: int):
    """gipc's Optuna sweeper's implementation as Hydra sets it up, on :class:`_TrialLauncher`: 2 trials at a
    time, 2 random start-up trials, then TPE over lam and beta1."""
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
    from optuna.samplers import TPESampler

    impl = OptunaSweeperImpl(
        sampler=TPESampler(seed=seed, n_startup_trials=2), direction="maximize", storage=None, study_name="test",
        n_trials=n_trials, n_jobs=2, max_failure_rate=0.0, search_space=None, custom_search_space=None,
        params=OmegaConf.create({"loss.lam": "interval(1.0, 30.0)", "loss.beta1": "interval(0.3, 5.0)"}),
    )
    impl.config = OmegaConf.create({"optimized_metric": "obj", "hydra": {"sweep": {"dir": str(sweep)}}})
    impl.hydra_context, impl.launcher = object(), _TrialLauncher(sweep)
    return impl


def test_a_resumed_optuna_sweep_asks_its_seeded_sampler_for_the_trials_of_an_unkilled_sweep(tmp_path, caplog):
    from hydra_plugins.gipc_optuna_sweeper._resumable import _replay

    unkilled = tmp_path / "unkilled"
    _optuna_sweep(unkilled, seed=3, n_trials=6).sweep([])
    trials = {job.name: recorded_overrides(job) for job in unkilled.iterdir() if job.is_dir()}
    assert len(trials) == 6 and len({tuple(t) for t in trials.values()}) == 6
    # Killed in the second batch (2, 3) under a launcher that runs a batch's jobs one by one: job 2
    # started and did not finish, job 3 never started.
    killed = tmp_path / "killed"
    shutil.copytree(unkilled, killed)
    for num in (3, 4, 5):
        shutil.rmtree(killed / f"{num}_trial")
    (killed / "2_trial" / "DONE").unlink()
    resumed = _optuna_sweep(killed, seed=3, n_trials=6)
    with caplog.at_level("INFO"):
        _replay(resumed, gipc.sweep.started_jobs(killed), [])
        resumed.sweep([])
    assert resumed.launcher.launched == [[2, 3], [4, 5]]  # 0 and 1 told their recorded values, not launched
    assert {job.name: recorded_overrides(job) for job in killed.iterdir() if job.is_dir()} == trials
    assert "job 0: finished before, obj " in caplog.text and "those the sweep would ask for unkilled" in caplog.text
    # Another seed draws other trials than those recorded: they are told as recorded (job 2 launched
    # again with its own), and the trials left come from a fresh random state.
    (killed / "2_trial" / "DONE").unlink()
    shutil.rmtree(killed / "3_trial")
    caplog.clear()
    other = _optuna_sweep(killed, seed=4, n_trials=6)
    with caplog.at_level("INFO"):
        _replay(other, gipc.sweep.started_jobs(killed), [])
    assert other.launcher.launched == [[2]] and other.job_idx == 6 and other.n_trials == 1
    assert recorded_overrides(killed / "2_trial") == trials["2_trial"]
    assert "job 0 was asked with other parameters than the sampler draws again" in caplog.text
    assert "Resumed 5 trials; 1 more to ask for" in caplog.text


def test_a_resume_may_spell_the_sweep_dir_relative_where_hydra_spells_it_absolute(tmp_path, monkeypatch, capsys):
    hydra = {"sweeper": {"_target_": "BasicSweeper", "params": {}}, "overrides": {"task": ["loss.ratio=0.1,0.5", "resume=sweep"]}}
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    monkeypatch.chdir(tmp_path)
    ResumeSweep().on_multirun_start(OmegaConf.create({"resume": "sweep", "hydra": {**hydra, "sweep": {"dir": str(tmp_path / "sweep")}}}))
    assert capsys.readouterr().err.startswith("resuming the sweep in sweep: finished jobs are skipped")


def test_resuming_a_run_dir_with_nothing_to_continue_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    for given, message in (("outputs/typo", "error: resume=outputs/typo: no such run dir"),
                           ("empty", "error: nothing to resume: empty/checkpoints/last.ckpt does not exist; pass resume=<the run dir to resume>")):
        result = run_gipc(tmp_path, "logger=none", f"resume={given}", check=False)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [message], result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty"]  # no typo'd run dir, no .hydra or FAILED in the other


def test_resuming_a_sweep_into_another_sweep_dir_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "sweep").mkdir()
    result = run_gipc(tmp_path, "-m", "loss.ratio=0.1,0.5", "logger=none", "resume=sweep", "hydra.sweep.dir=elsewhere", check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "error: resume=sweep but hydra.sweep.dir=elsewhere: the jobs would run elsewhere; drop hydra.sweep.dir"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sweep"]


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """A process that takes the run dir's training lock and then trains forever (sleeps)."""
    code = "import sys, time; from pathlib import Path; from gipc.runstate import training_lock\n" \
           "with training_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_job_a_live_process_trains_is_running_refused_and_free_once_that_process_is_killed(tmp_path, capsys):
    # The orphan a killed launcher can leave: a job still training while the sweep is resumed.
    sweep = tmp_path / "sweep"
    job = sweep / "0_ablation=none"
    (job / "checkpoints").mkdir(parents=True)
    (job / "config.yaml").write_text("seed: 1\n")
    (job / "checkpoints" / "epoch000-step0000300.ckpt").write_bytes(b"")
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['ablation=none', 'logger=csv']\n")
    assert not running(job)
    holder = _hold_lock(job)
    try:
        assert running(job)
        with pytest.raises(RunDirError, match=rf"{job} is being trained by pid {holder.pid} on .* now; wait for it"):
            with training_lock(job):
                pass
        assert compare_main([str(sweep), "--status"]) == 0
        assert capsys.readouterr().out.splitlines()[2] == "| 0 | ablation=none logger=csv | running now, last checkpoint at step 300 |"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not running(job)  # the OS released the lock with the process, though no code ran to release it
    with training_lock(job):  # free again: this process takes it, and a probe sees it held
        assert running(job)
    assert not running(job)


def test_a_launch_waits_out_a_status_probe_holding_the_lock(tmp_path):
    # gipc-compare --status (gipc.runstate.running) holds the lock for an instant; here for 0.3 s.
    code = "import fcntl, sys, time\nwith open(sys.argv[1]) as f:\n" \
           "    fcntl.flock(f, fcntl.LOCK_SH); print('probing', flush=True); time.sleep(0.3)\n"
    (tmp_path / LOCK).write_text("")
    probe = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / LOCK)], stdout=subprocess.PIPE, text=True)
    assert probe.stdout.readline().strip() == "probing"
    with training_lock(tmp_path):  # not "being trained by another process now"
        assert running(tmp_path)
    probe.wait()


def test_a_second_run_in_a_run_dir_in_training_is_refused_in_one_line_without_failed(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    holder = _hold_lock(run_dir)
    try:
        result = run_gipc(tmp_path, "logger=none", f"resume={run_dir}", check=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"error: {run_dir} is being trained by pid {holder.pid} on {socket.gethostname()} now; wait for it to end or stop it, then resume"
    assert not (run_dir / "FAILED").exists()


def test_the_lock_file_a_killed_trainer_left_is_taken_over_and_removed_when_training_ends(tmp_path):
    (tmp_path / LOCK).write_text("pid 1 on gone-host\n")  # SIGKILL leaves the file; the OS dropped its lock
    with training_lock(tmp_path):
        assert (tmp_path / LOCK).read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
    assert not (tmp_path / LOCK).exists()


def test_on_a_file_system_without_locks_a_run_trains_unlocked_and_its_error_stays_its_own(tmp_path, monkeypatch):
    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(gipc.runstate.fcntl, "flock", no_locks)
    with pytest.raises(ValueError) as failed:
        with training_lock(tmp_path):
            raise ValueError("diverged")
    # Not "During handling of the above exception (No locks available), another exception occurred" in FAILED.
    assert failed.value.__context__ is None


def test_a_sweep_done_without_a_test_stage_ends_saying_it_has_no_tables_to_compare(tmp_path, capsys):
    """Its last line offered ``gipc-compare``, which then found no table in any job (test=false)."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['a=0,1', 'test=false']\n")
    for n in (0, 1):
        (sweep / f"{n}_a={n}").mkdir()
        (sweep / f"{n}_a={n}" / "config.yaml").write_text("seed: 42\n")
        (sweep / f"{n}_a={n}" / "DONE").write_text("2026-12-07T02:40:00+00:00\n")
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert capsys.readouterr().out == f"sweep dir: {sweep}: 2 of 2 jobs done, without a test stage (test=false): no tables to compare\n"


# ---------------------------------------------------------------- real sweeps
@pytest.mark.slow
def test_ablation_multirun_saves_each_jobs_lambdas_and_compares(tmp_path):
    done = run_gipc(tmp_path, "-m", "hparams_search=ablation", "logger=wandb", *TINY)
    sweep = sweep_dir(tmp_path)
    assert done.stdout.splitlines()[-1] == f"sweep dir: {sweep.relative_to(tmp_path)}: 3 of 3 jobs done; compare them: gipc-compare {sweep.relative_to(tmp_path)}"
    jobs = job_dirs(sweep)
    assert [j.name.split(",")[0] for j in jobs] == ["0_ablation=none", "1_ablation=without_int", "2_ablation=without_gra"]
    zeroed = [{k for k in LAMBDAS if saved(j)["loss"][k] == 0} for j in jobs]
    assert zeroed == [set(), {"l1", "l3", "l5"}, {"l2", "l4", "l6"}]
    for job in jobs:
        assert (job / "metrics.csv").is_file() and not (job / "FAILED").exists()
    # Each job logs to a W&B run of its own, not into the first job's (runs in one process).
    runs = [list((job / "wandb").glob("offline-run-*")) for job in jobs]
    assert [len(r) for r in runs] == [1, 1, 1] and len({r[0].name.rsplit("-", 1)[1] for r in runs}) == 3
    out = compare([sweep])
    md = (out / "comparison.md").read_text()
    assert [line.split(" | ")[0] for line in md.splitlines() if line.startswith("| ablation")] == [
        "| ablation=none",
        "| ablation=without_int",
        "| ablation=without_gra",
    ]
    with open(out / "comparison.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["ablation"] for r in rows] == ["none", "without_int", "without_gra"]  # one test image per fast_dev_run job
    assert {(out / f"{m}.png").is_file() for m in ("QABF", "EN", "PSNR")} == {True}


@pytest.mark.slow
def test_ratio_multirun_on_submitit_local(tmp_path):
    run_gipc(tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "loss.ratio=0.05,0.5", "logger=csv", *TINY)
    sweep = sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert len(jobs) == 2 and (sweep / ".submitit").is_dir()
    for job, ratio in zip(jobs, (0.05, 0.5)):
        loss = saved(job)["loss"]
        assert (loss["l1"], loss["l3"], loss["l5"], loss["l2"]) == (ratio, ratio, ratio, 1.0)
    md = (compare([sweep]) / "comparison.md").read_text()
    assert "| loss.ratio=0.05 | 1 |" in md and "| loss.ratio=0.5 | 1 |" in md


def test_a_job_in_a_launchers_worker_on_the_same_terminal_leaves_the_stop_line_to_the_multirun(monkeypatch):
    monkeypatch.delenv(LAUNCHER, raising=False)
    assert not leaves_stop_line_to_launcher()  # no multirun
    here = os.fstat(2)
    monkeypatch.setenv(LAUNCHER, f"{os.getpid()} {here.st_dev}:{here.st_ino}")
    assert not leaves_stop_line_to_launcher()  # the basic launcher: the job runs in the multirun's own process
    monkeypatch.setenv(LAUNCHER, f"{os.getpid() + 1} {here.st_dev}:{here.st_ino}")
    assert leaves_stop_line_to_launcher()  # a joblib worker writing to the multirun's terminal
    monkeypatch.setenv(LAUNCHER, f"{os.getpid() + 1} {here.st_dev}:{here.st_ino + 1}")
    assert not leaves_stop_line_to_launcher()  # a submitit job writing to a log of its own


def test_a_stopped_multirun_says_how_to_go_on_and_that_submitits_jobs_may_run_on(monkeypatch):
    monkeypatch.delitem(gipc.sweep._launched, "config", raising=False)
    assert stopped_multirun("interrupted") == "interrupted"  # stopped before a multirun started
    joblib = OmegaConf.create({"resume": None, "hydra": {"sweep": {"dir": "outputs/s"}, "launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}}})
    monkeypatch.setitem(gipc.sweep._launched, "config", joblib)
    assert stopped_multirun("interrupted") == "interrupted; continue the sweep with the same command plus resume=outputs/s"
    joblib.resume = "outputs/s"  # the command already resumes it
    assert stopped_multirun("stopped by SIGTERM") == "stopped by SIGTERM; continue the sweep with the same command"
    slurm = OmegaConf.create({"resume": None, "hydra": {"sweep": {"dir": "outputs/s"}, "launcher": {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}}})
    monkeypatch.setitem(gipc.sweep._launched, "config", slurm)
    assert stopped_multirun("stopped by SIGTERM") == (
        "stopped by SIGTERM; jobs already submitted through submitit may still run (gipc-compare outputs/s --status lists them); "
        "continue the sweep with the same command plus resume=outputs/s"
    )


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_parallel_sweep_stopped_is_one_line_saying_how_to_go_on_and_leaves_no_worker(tmp_path, stop):
    """Ctrl-C reaches the sweep's process, waiting in joblib, and its workers: a traceback came from the
    first, and each worker could say how to go on. A SIGTERM (kill, timeout, a scheduler) reaches the
    sweep's process alone: it died without a word and left its workers training, with no sweep to report
    to. Either way the sweep's process now says how to go on, once, and no worker is left."""
    import psutil

    args = ("-m", "hydra/launcher=local_parallel", "loss.ratio=0.1,0.5", "logger=csv", "trainer.max_epochs=1000",
            "data.patch_size=16", "data.batch_size=2", "data.source.max_side=64", "callbacks.test_report.baselines=[]")
    sweep = tmp_path / "outputs" / "quick" / "multiruns"
    env = {**os.environ, "WANDB_MODE": "offline"}
    # A process group of its own, as a terminal's job is, and Ctrl-C's default action, as at a terminal
    # (a process started with SIGINT ignored keeps ignoring it: this suite's process may ignore it by now).
    started = subprocess.Popen([sys.executable, str(RUN), *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(sweep.glob("*/*/config.yaml"))) < 2 and started.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = psutil.Process(started.pid).children(recursive=True)
        if stop == "ctrl-c":
            os.killpg(started.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
        else:
            started.send_signal(signal.SIGTERM)
        _, err = started.communicate(timeout=60)
        _, alive = psutil.wait_procs(workers, timeout=10)
    finally:
        for process in [started, *workers]:
            with contextlib.suppress(Exception):
                process.kill()
    (where,) = sweep.iterdir()
    code, what = (130, "interrupted") if stop == "ctrl-c" else (143, "stopped by SIGTERM")
    assert started.returncode == code and "Traceback" not in err, err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {what}; continue the sweep with the same command plus resume={where.relative_to(tmp_path)}"
    ]
    assert len(workers) >= 2 and alive == []


@pytest.mark.slow
def test_a_parallel_sweep_resumes_on_joblib_running_only_the_missing_job(tmp_path):
    run_gipc(tmp_path, "-m", "hydra/launcher=local_parallel", "loss.ratio=0.1,0.5", "logger=none", *TINY)
    sweep = sweep_dir(tmp_path)
    done, removed = job_dirs(sweep)
    shutil.rmtree(removed)
    before = {p: p.stat().st_mtime_ns for p in done.rglob("*") if p.is_file()}
    result = run_gipc(tmp_path, "-m", "hydra/launcher=local_parallel", "loss.ratio=0.1,0.5", "logger=none", *TINY, f"resume={sweep}")
    assert "job 0: finished before, skipped" in result.stderr and "job 1: starts" in result.stderr
    assert [j.name for j in job_dirs(sweep)] == [done.name, removed.name] and (removed / "metrics.csv").is_file()
    assert {p: p.stat().st_mtime_ns for p in done.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_optuna_trials_in_parallel_on_joblib_and_a_killed_sweep_resumed_asks_for_the_trials_of_an_unkilled_one(tmp_path, capsys):
    # two random start-up trials, then TPE: trial 2 is chosen from the values of trials 0 and 1
    optuna = ("-m", "hparams_search=optuna", "hydra/launcher=local_parallel", "hydra.sweeper.n_jobs=2",
              "hydra.sweeper.sampler.n_startup_trials=2", "logger=csv", *TINY)
    done = run_gipc(tmp_path, *optuna, "hydra.sweeper.n_trials=3")
    sweep = sweep_dir(tmp_path)
    where = sweep.relative_to(tmp_path)
    assert "alembic" not in done.stdout  # optuna's import logged alembic's plugins, seven lines at the top
    assert done.stdout.splitlines()[-1] == (
        f"sweep dir: {where}: 3 of 3 trials done; compare them: gipc-compare {where}; "
        f"the best trial's parameters: {where / 'optimization_results.yaml'}"
    )
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"loss.lam", "loss.beta1", "loss.beta2"}
    assert 0.0 < result["best_value"] <= 1.0  # a Q^AB/F
    jobs = job_dirs(sweep)
    unkilled = [{key: saved(j)["loss"][key] for key in ("lam", "beta1", "beta2")} for j in jobs]
    assert len({trial["lam"] for trial in unkilled}) == 3 and all(1.0 <= trial["lam"] <= 30.0 for trial in unkilled)
    values = [recorded_objective(j, "val/QABF") for j in jobs]
    # --status lists the trials started so far, each with the parameters Optuna chose for it and what it returned
    rows = sweep_status(sweep)
    assert [(r["job"], r["state"]) for r in rows] == [("0", "done"), ("1", "done"), ("2", "done")]
    assert [float(r["val/QABF"]) for r in rows] == [round(v, 4) for v in values]
    assert max(float(r["val/QABF"]) for r in rows) == round(result["best_value"], 4)
    assert all(f"loss.lam={saved(j)['loss']['lam']}" in r["overrides"].split() for j, r in zip(jobs, rows))
    # What a kill while trial 1 trained leaves: trial 0 done, trial 1 started and not done, trial 2 not
    # asked yet. Resumed with one trial more: trial 0's recorded value is told to the study, trial 1
    # trains again in its own dir, and the seeded sampler, asked for trials 0 and 1 again, asks for
    # the same trial 2 as the sweep that was not killed, then trial 3 beside it.
    (jobs[1] / "DONE").unlink()
    (jobs[1] / "metrics.csv").unlink()
    shutil.rmtree(jobs[2])
    before = {p: p.stat().st_mtime_ns for p in jobs[0].rglob("*") if p.is_file()}
    resumed = run_gipc(tmp_path, *optuna, "hydra.sweeper.n_trials=4", f"resume={sweep}")
    # trial 0 is not launched again (on Slurm it would queue to do nothing): its recorded value is told
    assert f"job 0: finished before, val/QABF {values[0]:.4f}" in resumed.stdout
    assert "the trials left are those the sweep would ask for unkilled" in resumed.stdout
    assert "job 0:" not in resumed.stderr and "job 1: starts" in resumed.stderr
    assert "job 2: starts" in resumed.stderr and "job 3: starts" in resumed.stderr and "ExperimentalWarning" not in resumed.stderr
    again = job_dirs(sweep)
    assert [j.name for j in again[:3]] == [j.name for j in jobs] and len(again) == 4
    assert {p: p.stat().st_mtime_ns for p in jobs[0].rglob("*") if p.is_file()} == before
    assert recorded_objective(again[1], "val/QABF") == values[1]  # trained again from the same seed
    assert {key: saved(again[2])["loss"][key] for key in ("lam", "beta1", "beta2")} == unkilled[2]
    assert saved(again[3])["loss"]["lam"] not in {trial["lam"] for trial in unkilled}
    values = [recorded_objective(j, "val/QABF") for j in again]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = again[values.index(max(values))]
    assert result["best_value"] == max(values) and result["best_params"]["loss.lam"] == saved(best)["loss"]["lam"]
    assert resumed.stdout.splitlines()[-1].startswith(f"sweep dir: {sweep}: 4 of 4 trials done")
    assert compare_main([str(sweep), "--status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[:2] == ["| job | overrides | state | val/QABF |", "|---|---|---|---|"] and len(table) == 6
    assert [line.rsplit("|", 2)[1].strip() for line in table[2:]] == [f"{v:.4f}" for v in values]


@pytest.mark.slow
def test_slurm_launcher_asks_for_the_trainers_nodes_and_devices(tmp_path):
    """A fake ``sbatch`` keeps the script submitit writes and refuses the job: no cluster needed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "job.sbatch"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "sbatch: error: test cluster" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    result = run_gipc(
        tmp_path, "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp",
        "trainer.devices=4", "trainer.num_nodes=2", "ablation=none,without_int",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, check=False,
    )
    assert result.returncode != 0 and "test cluster" in result.stderr
    text = script.read_text()
    for line in ("--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4", "--partition=gpu", "--array=0-1", "--time=240"):
        assert f"#SBATCH {line}" in text
    assert "srun" in text and "submitit.core._submit" in text


@pytest.mark.slow
def test_ddp_in_a_multirun_without_spawn_stops_with_the_fix(tmp_path):
    """Re-running the command line per rank would start a sweep in every rank: refused before training."""
    result = run_gipc(tmp_path, "-m", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "loss.ratio=0.1", "logger=none", *TINY, check=False)
    assert result.returncode != 0
    assert "error: trainer=ddp in a multirun: add trainer.strategy.start_method=spawn" in result.stderr and "Traceback" not in result.stderr
    (job,) = job_dirs(sweep_dir(tmp_path))
    assert "start_method=spawn" in (job / "FAILED").read_text() and not (job / "checkpoints").exists()


def test_runs_started_in_the_same_second_get_dirs_of_their_own(tmp_path, monkeypatch):
    """Two launches resolved one timestamped dir and the second was refused as if it resumed the
    first (`for r in 0.1 0.5; do python gipc/run.py loss.ratio=$r & done`): each claims its own."""
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    new = str(tmp_path / "runs" / "2026-12-07_05-50-32")
    assert [run_dir(False, new) for _ in range(3)] == [new, f"{new}-2", f"{new}-3"]
    assert all(Path(d).is_dir() for d in (new, f"{new}-2", f"{new}-3"))
    assert run_dir(str(tmp_path / "old"), new) == str(tmp_path / "old")  # resume=<dir>: that dir, nothing made
    assert not (tmp_path / "old").exists()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a rank past 0 (torchrun, srun) takes the dir rank 0 made
    assert run_dir(False, new) == new


def test_a_run_dir_that_cannot_be_made_is_one_line(tmp_path, monkeypatch, capsys):
    """From a read-only folder Hydra's traceback of the resolver (OSError) was all a user saw."""
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        run_dir(False, str(tmp_path / "file" / "runs" / "t"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: cannot make the run dir {tmp_path / 'file' / 'runs' / 't'}: Not a directory; run from a folder you can write to, "
        "or give hydra.run.dir=<dir> (a sweep: hydra.sweep.dir=<dir>)\n"
    )
