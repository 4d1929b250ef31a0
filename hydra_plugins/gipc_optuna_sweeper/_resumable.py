"""An Optuna sweep that continues after a kill.

The plugin keeps its study in memory (optuna 2.10, the newest it accepts, cannot write an SQLite
storage under SQLAlchemy 2), so a killed sweep lost what it had learnt. Its sweep dir holds it all
the same: each trial's dir records the parameters it ran with (Hydra's ``.hydra/overrides.yaml``)
and, once the trial is done, the value it returned (its ``DONE``). ``resume=<sweep dir>`` asks the
sweep's own sampler for those trials again, in the batches of ``n_jobs`` the plugin's sweep asks
in, and tells it each finished trial's recorded value (a finished trial is not launched: on Slurm
each launch would wait in the queue to do nothing); the unfinished ones are launched again under
their own job numbers, as a resumed basic sweep launches its jobs (a partial or failed one continues
from its ``last.ckpt`` where it has one, else starts over), and so are the trials of their batch that
never started. A seeded sampler then draws every recorded trial's parameters again, and the trials
left of ``n_trials`` are those the sweep would have asked for had it not been killed. Where a draw
differs from a record (another seed or sampler, an unseeded one, another ``n_jobs`` past the random
start-up trials, a sweep an earlier gipc resumed) the recorded trials are told to a study as they are and
the sampler goes on from a fresh random state (from its seed it would ask for the first trials
again): the trials after the resume are then chosen from every trial before, but are not those of
an unkilled sweep.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf

from gipc.runstate import finished, recorded_objective, recorded_overrides
from gipc.sweep import resume_dir, started_jobs

if TYPE_CHECKING:  # optuna takes a second to import, and Hydra imports this plugin at every start
    import optuna
    from hydra.core.utils import JobReturn
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
    from optuna.distributions import BaseDistribution

log = logging.getLogger(__name__)
# Hydra builds the sweeper's sampler before the sweeper, and so imports optuna, which imports alembic, which
# logs "setup plugin alembic...." seven times at INFO: the first lines of every sweep. Hydra imports this
# module (its plugin scan) before either.
logging.getLogger("alembic").setLevel(logging.WARNING)


class ResumableOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper's sweeper; it records the sweep (``multirun.yaml``, as the basic sweeper
    does) and, given ``resume=<sweep dir>``, replays the trials recorded there first."""

    def sweep(self, arguments: list[str]) -> None:
        impl = self.sweeper
        sweep = Path(impl.config.hydra.sweep.dir)
        resume = impl.config.get("resume")
        started = started_jobs(sweep) if resume_dir(resume) else []
        sweep.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(impl.config, sweep / "multirun.yaml")  # what a resume checks its command against
        if started:
            _replay(impl, started, arguments)
        return impl.sweep(arguments)


def _replay(impl: OptunaSweeperImpl, started: list[tuple[int, Path]], arguments: list[str]) -> None:
    """Bring the recorded trials into a study (launching the unfinished ones again); the plugin's sweep then continues it."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    impl._process_searchspace_config()
    distributions, fixed = create_params_from_overrides([*impl._parse_sweeper_params_config(), *arguments])
    distributions = {**(impl.search_space_distributions or {}), **distributions}
    for name in fixed:
        distributions.pop(name, None)
    space = distributions, fixed
    asked = _redraw(impl, started, space)
    if asked is None:
        sweep = Path(impl.config.hydra.sweep.dir)
        asked = _enqueue(impl, started_jobs(sweep), space)  # the jobs again: the redraw may have launched some
        if hasattr(impl.sampler, "reseed_rng"):  # a grid sampler is built in the plugin's sweep, and draws nothing
            impl.sampler.reseed_rng()
    impl.n_trials = max(impl.n_trials - asked, 0)
    log.info(f"Resumed {asked} trials; {impl.n_trials} more to ask for")


_Space = tuple[dict[str, "BaseDistribution"], dict[str, Any]]
"""The sweep's search space (each parameter's distribution) and its fixed parameters."""


def _study(impl: OptunaSweeperImpl, sampler: Any = None) -> optuna.Study:
    """A new in-memory study of the sweep's name and directions, which the plugin's sweep loads and continues."""
    import optuna

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name=impl.study_name, directions=impl._get_directions(), sampler=sampler)
    impl.storage, impl.study_name = storage, study.study_name
    return study


def _metric(impl: OptunaSweeperImpl) -> str | None:
    """The run's result a single-objective sweep optimises (``optimized_metric``), which a finished trial's
    ``DONE`` records; None for several objectives."""
    return impl.config.get("optimized_metric") if len(impl._get_directions()) == 1 else None


def _redraw(impl: OptunaSweeperImpl, started: list[tuple[int, Path]], space: _Space) -> int | None:
    """The recorded trials asked of the sweep's own sampler again, batch by batch as the plugin's sweep
    asks (``n_jobs`` at a time from job 0), each finished one told its recorded value and the others of
    a batch launched and told their results before the next batch is asked; the number of trials asked,
    or None as soon as a draw differs from a trial's recorded parameters (nothing of that batch launched)."""
    import optuna

    if not isinstance(impl.sampler, optuna.samplers.BaseSampler):  # a grid sampler: built in the plugin's sweep
        return None
    jobs, metric = dict(started), _metric(impl)
    size, last = impl.n_jobs, max(jobs)
    end = max(min((last // size + 1) * size, impl.n_trials), last + 1)  # the last batch whole, as far as n_trials reaches
    study, told = _study(impl, impl.sampler), []
    for first in range(0, end, size):
        numbers = range(first, min(first + size, end))
        trials = [study.ask() for _ in numbers]
        overrides = impl._configure_trials(trials, *space)
        recorded = {num: recorded_overrides(jobs[num]) if num in jobs else [] for num in numbers}
        differ = [num for num, trial in zip(numbers, trials) if recorded[num] and _params(recorded[num], *space) != trial.params]
        if differ:
            log.info(f"job {differ[0]} was asked with other parameters than the sampler draws again: the trials left are asked from a fresh random state")
            return None
        values = {num: recorded_objective(jobs[num], metric) if recorded[num] and finished(jobs[num]) else None for num in numbers}
        for batch in _batches([(num, list(o)) for num, o in zip(numbers, overrides) if values[num] is None], size):
            returns = impl.launcher.launch([o for _, o in batch], initial_job_idx=batch[0][0])
            for (num, _), ret in zip(batch, returns):
                _tell(study, trials[num - first], ret, len(impl._get_directions()))
        for num, trial in zip(numbers, trials):
            if values[num] is not None:
                study.tell(trial, values=[values[num]])
                told.append(f"job {num}: finished before, {metric} {values[num]:.4f}")
    for line in told:
        log.info(line)
    log.info("the sampler drew every recorded trial's parameters again: the trials left are those the sweep would ask for unkilled")
    impl.job_idx = end
    return end


def _enqueue(impl: OptunaSweeperImpl, started: list[tuple[int, Path]], space: _Space) -> int:
    """Each recorded trial told to a study with its parameters as recorded (launching the unfinished
    ones again), whatever the sampler would draw: the number of trials told."""
    import optuna

    study = _study(impl)
    directions = impl._get_directions()

    def ask(overrides: list[str]) -> optuna.Trial:
        with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2.10, and stable since 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.enqueue_trial(_params(overrides, *space))
        return study.ask()

    metric = _metric(impl)
    replayed, unfinished = 0, []
    for num, path in started:
        overrides = recorded_overrides(path)
        if not overrides:  # killed before Hydra recorded them: nothing to replay
            continue
        replayed += 1
        value = recorded_objective(path, metric) if finished(path) else None
        if value is None:
            unfinished.append((num, overrides))
            continue
        trial = ask(overrides)
        impl._configure_trials([trial], *space)  # suggests its (enqueued) parameters: the study holds them
        study.tell(trial, values=[value])
        log.info(f"job {num}: finished before, {metric} {value:.4f}")
    for batch in _batches(unfinished, impl.n_jobs):
        asked = [ask(overrides) for _, overrides in batch]
        returns = impl.launcher.launch(impl._configure_trials(asked, *space), initial_job_idx=batch[0][0])
        for trial, ret in zip(asked, returns):
            _tell(study, trial, ret, len(directions))
    impl.job_idx = max(num for num, _ in started) + 1
    return replayed


def _batches(trials: list[tuple[int, list[str]]], size: int) -> list[list[tuple[int, list[str]]]]:
    """The trials in launches of at most ``size`` (the sweep's ``n_jobs``), each of consecutive job numbers."""
    batches: list[list[tuple[int, list[str]]]] = []
    for trial in trials:
        if batches and len(batches[-1]) < size and batches[-1][-1][0] + 1 == trial[0]:
            batches[-1].append(trial)
        else:
            batches.append([trial])
    return batches


def _params(overrides: Sequence[str], distributions: dict[str, BaseDistribution], fixed: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters from its recorded overrides, as Optuna holds them (a choice as one of its choices)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from optuna.distributions import CategoricalDistribution

    params = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        name = override.get_key_element()
        if name in fixed:
            continue
        distribution = distributions.get(name)
        if isinstance(distribution, CategoricalDistribution):
            text = override.get_value_element_as_str()
            params[name] = next((c for c in distribution.choices if str(c) == text), text)
        else:
            params[name] = override.value()
    return params


def _tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn, n_objectives: int) -> None:
    """The study learns a replayed trial's result as the plugin's sweep learns a new one's."""
    import optuna

    try:
        value = ret.return_value  # the job's own error, where it failed
        values = [float(value)] if n_objectives == 1 else [float(v) for v in value]
    except Exception as err:  # noqa: BLE001 - a failed trial is part of a search, as in the plugin's sweep
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning(f"Failed experiment: {err}")
    else:
        study.tell(trial, values=values)
