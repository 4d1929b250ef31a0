"""Whole runs of ``python gipc/run.py`` in subprocesses: SIGKILL and resume, determinism, divergence stop.

The runs are tiny (4 embedded photos at 64 px, 32 px patches, 4 batches of 2 x 3 patches per epoch,
2 epochs = 24 optimizer steps) and single-threaded. They start together, once per module, because
each process spends most of its time importing torch and Lightning.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import RUN, run_gipc

TINY = [
    "logger=none",
    "test=false",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "data.patch_size=32",
    "data.batch_size=2",
    "data.source.max_side=64",
    "data.source.val_count=1",
    "data.source.patches_per_epoch=24",
    "data.source.photos=[astronaut,camera,coffee,chelsea]",
    "callbacks.model_checkpoint.every_n_train_steps=3",  # t = 2: one checkpoint per batch
]
STEPS_PER_BATCH, BATCHES = 3, 8
KILL_AT = 18  # optimizer step after which the killed run hangs: epoch 1, two of its four batches done
NAN_AT = 6  # the 7th discriminator loss is NaN: batch 3 (0-based), after checkpoints at steps 3, 6, 9

# Runs gipc/run.py after patching one thing: "hang STEP FLAG JOB" stops (for the test to SIGKILL it) once
# last.ckpt of optimizer step >= STEP is on disk in a run dir named JOB* ("" = any); "nan CALL" makes the
# CALL-th (0-based) D loss NaN.
WRAPPER = """
import runpy, sys, time
from pathlib import Path

import gipc.module
from gipc.checkpointing import AtomicCheckpointIO

mode, arg = sys.argv[1], int(sys.argv[2])
if mode == "hang":
    flag, save = Path(sys.argv[3]), AtomicCheckpointIO.save_checkpoint

    def hang_after(self, checkpoint, path, storage_options=None):
        save(self, checkpoint, path, storage_options)
        if Path(path).name == "last.ckpt" and checkpoint["global_step"] >= arg and Path(path).parents[1].name.startswith(job):
            flag.write_text(str(checkpoint["global_step"]))
            time.sleep(600)

    AtomicCheckpointIO.save_checkpoint = hang_after
    job, args = sys.argv[4], sys.argv[5:]
else:
    calls, loss = [0], gipc.module.discriminator_loss

    def nan_once(*a, **k):
        terms = loss(*a, **k)
        if calls[0] == arg:
            terms["real_gra"] = terms["real_gra"] * float("nan")
        calls[0] += 1
        return terms

    gipc.module.discriminator_loss = nan_once
    args = sys.argv[3:]
sys.argv = [sys.argv[0], *args]
runpy.run_path(RUN, run_name="__main__")
"""


def _start(
    tmp: Path, name: str, *args: str, wrap: tuple[str, ...] = (), multirun: bool = False, test: bool = False
) -> tuple[subprocess.Popen, Path]:
    run_dir = tmp / name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    script = [str(tmp / "wrapper.py"), *wrap] if wrap else [str(RUN)]
    where = [f"hydra.sweep.dir={run_dir}"] if multirun else [f"hydra.run.dir={run_dir}"]
    tiny = [o if o != "test=false" or not test else "test=true" for o in TINY]
    command = [sys.executable, *script, *(["-m"] if multirun else []), *tiny, *args, *where]
    log = open(tmp / f"{name}.log", "w")
    return subprocess.Popen(command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, text=True), run_dir


def _finish(proc: subprocess.Popen, tmp: Path, name: str, timeout: float = 400) -> str:
    proc.wait(timeout=timeout)
    return (tmp / f"{name}.log").read_text()


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Six runs at once: a reference (every checkpoint kept), one killed at step 18, another seed, a NaN,
    a bad config, and a two-job sweep whose first job has the bad config."""
    tmp = tmp_path_factory.mktemp("runs")
    (tmp / "wrapper.py").write_text(f"RUN = {str(RUN)!r}\n{WRAPPER}")
    flag = tmp / "killed-at"
    started = {
        "reference": _start(tmp, "reference", "callbacks.model_checkpoint.save_top_k=-1"),
        "killed": _start(tmp, "killed", wrap=("hang", str(KILL_AT), str(flag), "")),
        "seed7": _start(tmp, "seed7", "seed=7", "trainer.max_steps=3"),
        "nan": _start(tmp, "nan", wrap=("nan", str(NAN_AT))),
        "bad": _start(tmp, "bad", "loss.lam=-1"),
        "sweep": _start(tmp, "sweep", "loss.lam=-1,9.3", "trainer.max_steps=3", multirun=True),
    }
    killed, _ = started["killed"]
    deadline = time.monotonic() + 400
    while not flag.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(killed.pid, signal.SIGKILL)
    out = {name: (_finish(proc, tmp, name), proc.returncode, run_dir) for name, (proc, run_dir) in started.items()}
    assert flag.exists(), out["killed"][0][-3000:]
    # What the kill left, before the resume test writes over it.
    shutil.copy(out["killed"][2] / "checkpoints" / "last.ckpt", tmp / "at-kill.ckpt")
    return {"tmp": tmp, **out}


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_runs_weights(runs):
    tmp = runs["tmp"]
    log, code, run_dir = runs["killed"]
    assert code == -signal.SIGKILL
    at_kill = _ckpt(tmp / "at-kill.ckpt")  # last.ckpt as the kill left it: whole, loadable, mid-epoch
    assert (at_kill["global_step"], at_kill["epoch"]) == (KILL_AT, 1)
    last = run_dir / "checkpoints" / "last.ckpt"

    proc, _ = _start(tmp, "killed", "resume=true")  # same command, same run dir, plus resume=true
    log = _finish(proc, tmp, "killed")
    assert proc.returncode == 0, log[-3000:]
    resumed, reference = _ckpt(last), _ckpt(runs["reference"][2] / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == reference["global_step"] == STEPS_PER_BATCH * BATCHES
    assert resumed["gipc"]["d_steps"] == reference["gipc"]["d_steps"] == 2 * BATCHES
    assert resumed["gipc"]["g_steps"] == reference["gipc"]["g_steps"] == BATCHES
    assert torch.equal(resumed["gipc"]["label_rng"], reference["gipc"]["label_rng"])
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for name, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, atol=1e-6, rtol=0, msg=name)
    for got, want in zip(resumed["optimizer_states"], reference["optimizer_states"]):
        for slot, state in want["state"].items():
            torch.testing.assert_close(got["state"][slot]["exp_avg"], state["exp_avg"], atol=1e-6, rtol=0)
    assert [s["last_epoch"] for s in resumed["lr_schedulers"]] == [s["last_epoch"] for s in reference["lr_schedulers"]]
    assert not list(last.parent.glob("*.tmp*"))  # no temp file of the atomic saves is left behind


@pytest.mark.slow
def test_same_seed_gives_identical_weights_and_another_seed_does_not(runs):
    reference = runs["reference"][2] / "checkpoints"
    # The killed run is an independent process running the same command up to its kill.
    same, ours = _ckpt(runs["tmp"] / "at-kill.ckpt"), _ckpt(reference / f"epoch001-step{KILL_AT:07d}.ckpt")
    assert same["global_step"] == ours["global_step"] == KILL_AT
    for name, value in ours["state_dict"].items():
        assert torch.equal(same["state_dict"][name], value), name
    assert torch.equal(same["gipc"]["label_rng"], ours["gipc"]["label_rng"])
    other, first = _ckpt(runs["seed7"][2] / "checkpoints" / "last.ckpt"), _ckpt(reference / "epoch000-step0000003.ckpt")
    assert other["global_step"] == first["global_step"] == 3
    differ = [name for name, value in first["state_dict"].items() if not torch.equal(other["state_dict"][name], value)]
    assert any(name.startswith("generator.") for name in differ) and any(name.startswith("discriminator.") for name in differ)


@pytest.mark.slow
def test_nan_stops_naming_term_and_step_and_keeps_the_last_good_checkpoint(runs):
    log, code, run_dir = runs["nan"]
    assert code == 1, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in log
    assert "D loss term(s) real_gra became non-finite at G step 3 (D step 6)" in errors[0]
    assert f"the last good checkpoint, kept: {run_dir / 'checkpoints' / 'last.ckpt'}" in errors[0]
    assert "real_gra" in (run_dir / "FAILED").read_text()
    kept = _ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert kept["global_step"] == 3 * STEPS_PER_BATCH  # three good batches, nothing after the NaN
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch000-step0000009.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_a_bad_config_through_the_command_is_one_line_and_exit_code_2(runs):
    log, code, run_dir = runs["bad"]
    assert code == 2 and "Traceback" not in log
    assert [line for line in log.splitlines() if line.startswith("error:")] == [
        "error: bad loss config: loss.lam must be >= 0, got -1"
    ]
    assert (run_dir / "FAILED").exists() and not (run_dir / "checkpoints").exists() and not (run_dir / "config.yaml").exists()


@pytest.mark.slow
def test_a_bad_job_of_a_sweep_fails_alone_and_the_sweep_goes_on(runs):
    log, code, sweep = runs["sweep"]
    assert code != 0  # Hydra reports the failed job once the sweep is done: its error again, not a traceback
    assert "Traceback" not in log
    lines = log.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("Error executing job with overrides: ["))
    assert "'loss.lam=-1'" in lines[failed] and lines[failed + 1] == "bad loss config: loss.lam must be >= 0, got -1"
    (bad,), (good,) = sweep.glob("0_*"), sweep.glob("1_*")
    assert (bad / "FAILED").read_text().strip() == "bad loss config: loss.lam must be >= 0, got -1"
    assert (good / "checkpoints" / "last.ckpt").is_file() and not (good / "FAILED").exists()


@pytest.mark.slow
def test_resume_given_the_run_dir_continues_in_that_dir(tmp_path):
    tiny = [o for o in TINY if not o.startswith("trainer.max_epochs")]
    run_gipc(tmp_path, *tiny, "trainer.max_epochs=1", "hydra.run.dir=outputs/first")
    first = _ckpt(tmp_path / "outputs" / "first" / "checkpoints" / "last.ckpt")
    resumed = run_gipc(tmp_path, *tiny, "trainer.max_epochs=2", "resume=outputs/first")
    assert "exists and is not empty" not in resumed.stderr  # Lightning's warning of every resume: what is there is the point
    # once, in Hydra's log (the console and run.log), not a second time through Lightning's own console handler
    assert (resumed.stdout + resumed.stderr).count("Restoring states from the checkpoint path") == 1
    second = _ckpt(tmp_path / "outputs" / "first" / "checkpoints" / "last.ckpt")
    assert (first["epoch"], second["epoch"]) == (0, 1)
    assert second["gipc"]["g_steps"] == 2 * first["gipc"]["g_steps"] > 0
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["first"]  # no new run dir


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_killed_sweep_resumes_in_its_dir(tmp_path):
    """Three jobs; the process is killed in job 1 after its step-18 checkpoint, so job 2 never starts.
    Resumed with the same command plus resume=<sweep dir>: job 0 stays byte for byte, job 1 reaches the
    weights of an uninterrupted run of its config, job 2 runs; other sweep values are refused first."""
    (tmp_path / "wrapper.py").write_text(f"RUN = {str(RUN)!r}\n{WRAPPER}")
    sweep, flag = tmp_path / "sweep", tmp_path / "killed-at"
    scored = ["callbacks.test_report.baselines=[]", "callbacks.test_report.shipped=false"]
    values = "loss.ratio=0.1,0.2,0.5"
    killed, _ = _start(tmp_path, "sweep", values, *scored, wrap=("hang", str(KILL_AT), str(flag), "1_"), multirun=True, test=True)
    reference, reference_dir = _start(tmp_path, "reference", "loss.ratio=0.2", "callbacks.model_checkpoint.save_top_k=-1", *scored, test=True)
    deadline = time.monotonic() + 400
    while not flag.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(killed.pid, signal.SIGKILL)
    _finish(killed, tmp_path, "sweep")
    assert flag.exists(), (tmp_path / "sweep.log").read_text()[-3000:]
    (done,), (partial,) = sweep.glob("0_*"), sweep.glob("1_*")
    assert (done / "metrics.csv").is_file() and not (partial / "metrics.csv").exists() and not list(sweep.glob("2_*"))
    before, record = _files(done), (sweep / "multirun.yaml").read_bytes()
    at_kill = _ckpt(partial / "checkpoints" / "last.ckpt")

    tiny = [o if o != "test=false" else "test=true" for o in TINY]
    other = run_gipc(tmp_path, "-m", *tiny, "loss.ratio=0.1,0.3,0.5", *scored, f"hydra.sweep.dir={sweep}", f"resume={sweep}", check=False)
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert other.returncode == 2 and len(errors) == 1 and "overrides were" in errors[0], other.stderr[-2000:]
    assert not list(sweep.glob("2_*")) and (sweep / "multirun.yaml").read_bytes() == record  # nothing started

    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as the killed sweep and the reference ran
    resumed = run_gipc(tmp_path, "-m", *tiny, values, *scored, f"resume={sweep}", env=one_thread)
    assert "job 0: finished before, skipped" in resumed.stderr and "job 1: continues from its last.ckpt" in resumed.stderr
    assert _files(done) == before
    (started,) = sweep.glob("2_*")
    assert (partial / "metrics.csv").is_file() and (started / "metrics.csv").is_file()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted([done.name, partial.name, started.name])
    _finish(reference, tmp_path, "reference")
    assert reference.returncode == 0, (tmp_path / "reference.log").read_text()[-3000:]
    same = _ckpt(reference_dir / "checkpoints" / f"epoch001-step{KILL_AT:07d}.ckpt")
    assert at_kill["global_step"] == same["global_step"] == KILL_AT
    for name, value in same["state_dict"].items():  # the sweep's job 1 is the single run, up to the kill
        assert torch.equal(at_kill["state_dict"][name], value), name
    got, want = _ckpt(partial / "checkpoints" / "last.ckpt"), _ckpt(reference_dir / "checkpoints" / "last.ckpt")
    assert got["global_step"] == want["global_step"] == STEPS_PER_BATCH * BATCHES
    for name, value in want["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], value, atol=1e-6, rtol=0, msg=name)


def _stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop, resume: bool | str = False) -> int:
    """The exit code of ``run_experiment`` on a run dir ``tmp_path`` whose training, once it has a
    ``last.ckpt``, is stopped by ``stop()``."""
    from omegaconf import OmegaConf

    import gipc.experiment

    def stopped(cfg, output_dir):
        (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (output_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
        stop()

    monkeypatch.setattr(gipc.experiment, "_run", stopped)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    with pytest.raises(SystemExit) as exit_:
        gipc.experiment.run_experiment(OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": resume}))
    return exit_.value.code


def _sigterm() -> None:
    """What Lightning does on SIGTERM: a SystemExit with no code, which the shell reads as 0, success."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    raise SIGTERMException


def test_a_sigterm_ends_the_run_with_exit_code_143_and_how_to_continue(tmp_path, monkeypatch, capsys):
    assert _stopped_run(tmp_path, monkeypatch, _sigterm) == 143 and not (tmp_path / "FAILED").exists()
    assert capsys.readouterr().err.splitlines() == [f"error: stopped by SIGTERM; continue with the same command plus resume={tmp_path}"]
    # stopped again after that resume: the command already says resume=, so it is simply run again
    assert _stopped_run(tmp_path, monkeypatch, _sigterm, resume=str(tmp_path)) == 143
    assert capsys.readouterr().err.splitlines() == ["error: stopped by SIGTERM; continue with the same command"]


def _lightning_ctrl_c() -> None:
    """What Lightning does on Ctrl-C in fit or test: a graceful shutdown, then sys.exit(1) inside its handler."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        sys.exit(1)


def _data_ctrl_c() -> None:
    """Ctrl-C outside Lightning's loops (building the data, fusing the test images): the KeyboardInterrupt itself."""
    raise KeyboardInterrupt


@pytest.mark.parametrize("ctrl_c", [_lightning_ctrl_c, _data_ctrl_c], ids=["in-lightning", "outside-lightning"])
def test_ctrl_c_ends_the_run_with_exit_code_130_and_how_to_continue_not_as_a_failure(ctrl_c, tmp_path, monkeypatch, capsys):
    # Lightning said nothing after its shutdown and exited 1; outside its loops a traceback marked the run FAILED.
    assert _stopped_run(tmp_path, monkeypatch, ctrl_c) == 130 and not (tmp_path / "FAILED").exists()
    assert capsys.readouterr().err.splitlines() == [f"error: interrupted; continue with the same command plus resume={tmp_path}"]


def test_an_exit_that_no_ctrl_c_caused_passes_through_unchanged(tmp_path, monkeypatch, capsys):
    """A requeue hand-back or an exit already reported keeps its own code, and nothing more is said."""
    assert _stopped_run(tmp_path, monkeypatch, lambda: sys.exit(3)) == 3 and capsys.readouterr().err == ""
