"""Resuming a sweep in place, and the state of each of its jobs (Hydra's side; a run dir's own state
on disk is :mod:`gipc.runstate`).

``python gipc/run.py -m <the same overrides> resume=<sweep dir>`` makes Hydra expand the same jobs
into the same dir (``conf/hydra/default.yaml`` takes the sweep dir from ``resume``, and ``resume``
is no part of a job's dir name), :class:`ResumeSweep` refuses a sweep that is not the recorded one
before any job starts, and each job then decides with :func:`gipc.runstate.resume_action`: a finished job is
skipped and left byte for byte as it was, a job with a checkpoint continues from ``last.ckpt``,
a job never started starts. An Optuna sweep's trials are chosen as it runs: gipc's sweeper
(``hydra_plugins/gipc_optuna_sweeper``) tells a new study the values its finished trials recorded and
launches the others again, which decide the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gipc.errors import UserError
from gipc.runstate import FAILED, UNTESTED, finished, job_order, last_checkpoint, launch_override, progress, recorded_objective, recorded_overrides, running, unfinished_runs, untested

RECORD = ".hydra"
"""Hydra's record of a job (config, overrides), written when the job first starts."""


def resume_dir(resume: Any) -> bool:
    """Whether ``resume`` names a dir to continue in (``resume=<run or sweep dir>``), not a flag."""
    return isinstance(resume, str) and bool(resume)


def requeued() -> bool:
    """A Slurm job started again after a requeue (time limit, preemption): it continues, never starts over."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def _continuing(resume: Any) -> bool:
    """This launch continues jobs that ran before: a resumed run or sweep, or a Slurm requeue."""
    return resume_dir(resume) or requeued()


def continue_hint(target: object, resuming: bool) -> str:
    """How a stopped run or sweep goes on: the command again, plus ``resume=<target>`` unless it already resumes."""
    return "with the same command" + ("" if resuming else f" plus resume={target}")


LAUNCHER = "GIPC_MULTIRUN_LAUNCHER"
"""Set by a multirun's own process for the processes its launcher starts (joblib's workers, submitit's
jobs): that process's id and the file its stderr writes to."""
_launched: dict[str, Any] = {}  # the multirun this process launched (StoppedSweep)


def _stderr_file() -> str:
    try:
        info = os.fstat(2)
    except OSError:  # started with stderr closed (2>&-): nothing to share
        return "none"
    return f"{info.st_dev}:{info.st_ino}"


def leaves_stop_line_to_launcher() -> bool:
    """This job runs in a process a multirun's launcher started (not the multirun's own, as the basic
    launcher's jobs do) that writes to the same stderr, the user's terminal: when a Ctrl-C stops them
    all, the multirun's own process says how to go on, once (:func:`stopped_multirun`). A submitit job
    writes to a log of its own, and says it there."""
    pid, _, stderr = os.environ.get(LAUNCHER, "").partition(" ")
    return bool(pid) and pid != str(os.getpid()) and stderr == _stderr_file()


class SweepTerminated(BaseException):
    """A SIGTERM to a sweep whose launcher runs its jobs in processes of their own (joblib, submitit):
    raised in the sweep's process, it ends the launcher's wait, and joblib then kills its workers, which
    were otherwise left training on with no sweep to report to (their last checkpoints stay for a resume).
    A BaseException, as KeyboardInterrupt: Hydra reports an Exception as a failed job."""


def _terminate_sweep(signum: int, frame: Any) -> None:
    raise SweepTerminated


def stopped_multirun(what: str) -> str:
    """The line of a multirun stopped while its launcher waited for its jobs: ``what`` and how to go on."""
    config = _launched.get("config")
    if config is None:
        return what
    sweep = config.hydra.sweep.dir
    how = f"continue the sweep {continue_hint(sweep, resume_dir(config.get('resume')))}"
    if "submitit" in str(config.hydra.launcher.get("_target_", "")):  # its jobs are processes (Slurm jobs) of their own
        how = f"jobs already submitted through submitit may still run (gipc-compare {sweep} --status lists them); {how}"
    return f"{what}; {how}"


def keep_record(resume: Any, output_dir: str) -> str | None:
    """``hydra.output_subdir`` of a job: None (Hydra writes nothing) when continuing a job whose record
    is already there, so a finished job's files keep their bytes and times and a continued job keeps
    the overrides that made it; ``.hydra`` otherwise, also for a record cut short by a kill (Hydra
    writes ``overrides.yaml``, which names the job's arm for ``gipc-compare``, last)."""
    return None if _continuing(resume) and (Path(output_dir) / RECORD / "overrides.yaml").is_file() else RECORD


def job_log(resume: Any, output_dir: str, name: str) -> str:
    """The job's log file: the null device for a finished job that a resumed sweep or a requeue skips (Hydra's
    launcher logs the next job's start into the current job's log), else ``<run dir>/<name>.log``."""
    return os.devnull if _continuing(resume) and finished(Path(output_dir)) else str(Path(output_dir) / f"{name}.log")


def job_dirname(overrides: str, limit: int = 150) -> str:
    """A sweep job's dir name from its overrides: no '/' (a path value must not nest dirs), and a
    long list cut to ``limit`` characters plus a hash, well under the file system's 255."""
    name = overrides.replace("/", "_")
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"


RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID")
"""Where a launcher (torchrun, srun) tells a process its rank: a rank past 0 takes the dir rank 0 made."""


def run_dir(resume: Any, new: str) -> str:
    """``hydra.run.dir`` and ``hydra.sweep.dir``: ``resume`` where it names a run or sweep to continue,
    else the timestamped dir ``new``, or ``new-2``, ``new-3``, ... where another run started in the same
    second has it (they shared one dir and the second was refused as if it resumed the first). The
    dir is claimed by making it; Hydra's resolver cache keeps the answer for the rest of the launch
    and carries it to a sweep's jobs."""
    if resume_dir(resume):
        return str(resume)
    if any(os.environ.get(name, "0") != "0" for name in RANK_VARIABLES):
        return new
    candidate, n = new, 1
    while True:
        try:
            Path(candidate).mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{new}-{n}"
        except OSError as err:  # a read-only or full place: one line, not Hydra's traceback of this resolver
            print(f"error: cannot make the run dir {candidate}: {err.strerror}; run from a folder you can write to, "
                  "or give hydra.run.dir=<dir> (a sweep: hydra.sweep.dir=<dir>)", file=sys.stderr)
            raise SystemExit(2) from None


# Resolvers of conf/hydra (sweep dir names) and conf/logger/wandb.yaml (run names, tags), registered on
# import: run.py imports this module before Hydra composes, and so do launcher and DDP worker processes.
OmegaConf.register_new_resolver("gipc.dirname", job_dirname, replace=True)
OmegaConf.register_new_resolver("gipc.or", lambda value, default: value or default, replace=True)
OmegaConf.register_new_resolver("gipc.run_dir", run_dir, replace=True, use_cache=True)
OmegaConf.register_new_resolver("gipc.concat", lambda *lists: [x for part in lists for x in part], replace=True)
OmegaConf.register_new_resolver("gipc.keep_record", keep_record, replace=True)
OmegaConf.register_new_resolver("gipc.job_log", job_log, replace=True)


def _recorded_sweep(sweep: Path) -> dict[str, Any]:
    """The sweep's config as its sweeper recorded it (``multirun.yaml``)."""
    record = sweep / "multirun.yaml"
    if not record.is_file():
        raise UserError(f"{sweep}: no multirun.yaml; give a sweep dir that Hydra made (outputs/<task>/multiruns/<time>)")
    return yaml.safe_load(record.read_text()) or {}


def _record(sweep: Path) -> dict[str, Any]:
    """The ``hydra`` part of :func:`_recorded_sweep`: its sweeper, launcher and overrides."""
    return _recorded_sweep(sweep).get("hydra") or {}


def _is_basic(hydra: Mapping[str, Any]) -> bool:
    return "BasicSweeper" in str((hydra.get("sweeper") or {}).get("_target_", "BasicSweeper"))


RESUMABLE_OPTUNA = "ResumableOptunaSweeper"
"""gipc's Optuna sweeper (``hydra_plugins/gipc_optuna_sweeper``, ``hparams_search=optuna``): the plugin's,
plus a resume that replays the trials its sweep dir records."""


def _resumable(hydra: Mapping[str, Any]) -> bool:
    """The sweeper can continue its sweep dir: the basic one (its jobs are the sweep's cross product) or gipc's Optuna."""
    return _is_basic(hydra) or str((hydra.get("sweeper") or {}).get("_target_", "")).endswith(RESUMABLE_OPTUNA)


def sweep_jobs(sweep: Path) -> list[list[str]]:
    """Every job of the sweep recorded in ``<sweep>/multirun.yaml``, in Hydra's job order, as its override list.

    Hydra's basic sweeper takes the cross product of the sweep overrides (``hydra.sweeper.params``
    and the command line's ``a=x,y``), so the list is the sweep's, whether its jobs ran or not (other
    sweepers, Optuna's, choose their trials as they go: :func:`sweep_status` lists those started)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = _record(sweep)
    if not _is_basic(hydra):
        return []
    params = [f"{key}={value}" for key, value in ((hydra.get("sweeper") or {}).get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides([*params, *_task_overrides(hydra)])
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def sweep_status(sweep: Path) -> list[dict[str, str]]:
    """One row per job of the sweep: its number, overrides and state (done, failed, running now,
    partial at step N, started, not started). A basic sweep lists every job it will run; a sweeper
    that chooses its trials as they run (Optuna) lists the trials started so far, each with the value a
    finished one returned, under the name of the sweep's ``optimized_metric``."""
    steps = dict(unfinished_runs(sweep))
    started = started_jobs(sweep)
    recorded = _recorded_sweep(sweep) if (sweep / "multirun.yaml").is_file() else {}
    if not started or recorded and _is_basic(recorded.get("hydra") or {}):  # Hydra's basic sweeper records its jobs there
        rows, metric = [(num, job, _job_dir(sweep, num)) for num, job in enumerate(sweep_jobs(sweep))], None
    else:  # Optuna's trials: their dirs hold what each is, and a finished one what it returned (gipc's records the metric)
        rows, metric = [(num, recorded_overrides(path), path) for num, path in started], recorded.get("optimized_metric")
    return [{"job": str(num), "overrides": " ".join(job), "state": _job_state(job_dir, steps), **({metric: _objective(job_dir, metric)} if metric else {})}
            for num, job, job_dir in rows]


def _objective(job_dir: Path, metric: str) -> str:
    value = recorded_objective(job_dir, metric) if finished(job_dir) else None
    return "" if value is None else f"{value:.4f}"


def started_jobs(sweep: Path) -> list[tuple[int, Path]]:
    """The jobs of ``sweep`` that have a dir (``<num>_<overrides>``), by number: those started so far."""
    if not sweep.is_dir():
        return []
    found = sorted((p for p in sweep.iterdir() if p.is_dir() and re.match(r"\d+_", p.name)), key=job_order)
    return [(int(p.name.split("_", 1)[0]), p) for p in found]


def _job_dir(sweep: Path, num: int) -> Path | None:
    """Job ``num``'s dir (``<num>_<overrides>``), None until Hydra makes it."""
    return min((p for p in sweep.glob(f"{num}_*") if p.is_dir()), default=None)


def _job_state(job_dir: Path | None, steps: Mapping[Path, int | None]) -> str:
    """:func:`sweep_status`'s state of one job dir (None: not made yet)."""
    if job_dir is None:
        return "not started"
    if running(job_dir):
        return "running now" if steps.get(job_dir) is None else f"running now, {progress(steps[job_dir])}"
    if (job_dir / FAILED).is_file():
        return "failed (see its FAILED file)"
    if finished(job_dir):
        return f"done, {UNTESTED}" if untested(job_dir) else "done"
    if job_dir not in steps:
        return "started, no config yet"
    return progress(None) if steps[job_dir] is None else f"partial: {progress(steps[job_dir])}"


def _task_overrides(hydra: dict[str, Any]) -> list[str]:
    """The command line's overrides that define the sweep (all but ``resume``)."""
    task = (hydra.get("overrides") or {}).get("task") or []
    return [o for o in task if not launch_override(o)]


def check_resume(sweep: Path, hydra: dict[str, Any]) -> None:
    """Refuse, before any job starts, to resume into ``sweep`` a sweep other than the one it records."""
    if not sweep.is_dir():
        raise UserError(f"resume={sweep}: no such sweep dir")
    if not _resumable(hydra):  # a sweeper that keeps what it knows in memory (the Optuna plugin's own)
        sweeper = str(hydra["sweeper"]["_target_"]).rsplit(".", 1)[-1]
        raise UserError(f"resume={sweep}: swept by {sweeper}, whose trials are chosen as they run and cannot resume here; "
                        "start a new sweep (hparams_search=optuna sweeps resume)")
    if not (sweep / "multirun.yaml").is_file() and started_jobs(sweep):  # the Optuna plugin's own records none
        raise UserError(f"resume={sweep}: its sweeper recorded no multirun.yaml (an Optuna sweep of the plugin's own sweeper, "
                        "or of a gipc before hparams_search=optuna resumed), so it cannot resume here; start a new sweep")
    recorded = _record(sweep)
    now_sweeper, then_sweeper = hydra.get("sweeper") or {}, recorded.get("sweeper") or {}
    for what, now, then in (
        ("sweeper", now_sweeper.get("_target_"), then_sweeper.get("_target_")),
        ("sweep parameters", now_sweeper.get("params") or {}, then_sweeper.get("params") or {}),
        ("overrides", sorted(_task_overrides(hydra)), sorted(_task_overrides(recorded))),
    ):
        if now != then:
            raise UserError(f"resume={sweep}: its {what} were {then}, this command's are {now}; resume with the sweep's own command")


def check_resume_run(run: Path) -> None:
    """Refuse ``resume=<run dir>`` of a single run when there is nothing to continue, before Hydra makes
    that dir its run dir (a mistyped path would otherwise become a new dir holding only a FAILED)."""
    last = last_checkpoint(run)
    if not run.is_dir():
        raise UserError(f"resume={run}: no such run dir")
    if not last.is_file():
        raise UserError(f"nothing to resume: {last} does not exist; pass resume=<the run dir to resume>")


class ResumeSweep(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): a ``-m ... resume=<sweep dir>`` whose sweep differs from
    the recorded one ends in one line and exit code 2 before the sweeper rewrites ``multirun.yaml``; a single
    run's ``resume=<run dir>`` with nothing to continue ends the same way before anything is written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        resume = config.get("resume")
        if not resume_dir(resume) or requeued():
            return
        try:
            check_resume_run(Path(resume))
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        resume = config.get("resume")
        if not resume_dir(resume):
            return
        try:
            if Path(config.hydra.sweep.dir).resolve() != Path(resume).resolve():
                raise UserError(f"resume={resume} but hydra.sweep.dir={config.hydra.sweep.dir}: the jobs would run elsewhere; drop hydra.sweep.dir")
            check_resume(Path(resume), OmegaConf.to_container(config.hydra, resolve=False))
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        print(f"resuming the sweep in {resume}: finished jobs are skipped, partial ones continue from last.ckpt", file=sys.stderr)


class StoppedSweep(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): a sweep stopped by Ctrl-C or SIGTERM while its
    launcher waits for jobs in processes of their own says how to go on once, from its own process
    (gipc/run.py, :func:`stopped_multirun`), and a SIGTERM ends joblib's workers with it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _launched["config"] = config
        os.environ[LAUNCHER] = f"{os.getpid()} {_stderr_file()}"  # for :func:`leaves_stop_line_to_launcher`
        if "BasicLauncher" not in str(config.hydra.launcher.get("_target_", "")):  # the basic launcher's jobs run here: Lightning's own
            signal.signal(signal.SIGTERM, _terminate_sweep)


class SweepSummary(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): a sweep's last line says where its jobs are, how
    many ended well and the command that compares them (and, where some did not, how to go on)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        if not sweep.is_dir():  # no job was launched
            return
        states = [row["state"] for row in sweep_status(sweep)]
        done = sum(state.startswith("done") for state in states)
        basic = _is_basic(config.hydra)  # else Optuna: trials chosen as they ran, each a job
        line = f"sweep dir: {sweep}: {done} of {len(states)} {'jobs' if basic else 'trials'} done"
        line += f"; compare them: gipc-compare {sweep}" if "done" in states or not done else f", {UNTESTED}: no tables to compare"
        if _resumable(config.hydra) and done < len(states):
            line += f"; the others: gipc-compare {sweep} --status, and the same command plus resume={sweep} goes on with them"
        if (sweep / "optimization_results.yaml").is_file():
            line += f"; the best trial's parameters: {sweep / 'optimization_results.yaml'}"
        print(line)
