"""An Optuna sweep that continues after a kill.

The plugin keeps its study in memory (optuna 2.10, the newest it accepts, cannot write an SQLite
storage under SQLAlchemy 2), so a killed sweep lost what it had learnt. Its sweep dir holds it all
the same: each trial's dir records the parameters it ran with (Hydra's ``.hydra/overrides.yaml``)
and, once the trial is done, the value it returned (its ``DONE``). ``resume=<sweep dir>`` launches
the unfinished trials again under their own job numbers, as a resumed basic sweep launches its jobs
(a partial or failed one continues from its ``last.ckpt`` where it has one, else starts over), tells
a new study each result and each finished trial's recorded value (a finished trial is not launched:
on Slurm each launch would wait in the queue to do nothing), and then lets the plugin ask for the
trials left of ``n_trials``. The sampler draws from a fresh random state (from its seed it would ask
for the first trials again), so the new trials are not the ones an unkilled sweep would have asked
for; they are chosen from every trial before.
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
    """Tell a study of their own the recorded trials (launching the unfinished ones again); the plugin's sweep then continues it."""
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    impl._process_searchspace_config()
    distributions, fixed = create_params_from_overrides([*impl._parse_sweeper_params_config(), *arguments])
    distributions = {**(impl.search_space_distributions or {}), **distributions}
    for name in fixed:
        distributions.pop(name, None)
    directions = impl._get_directions()
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name=impl.study_name, directions=directions)

    def ask(overrides: list[str]) -> optuna.Trial:
        with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2.10, and stable since 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.enqueue_trial(_params(overrides, distributions, fixed))
        return study.ask()

    metric = impl.config.get("optimized_metric") if len(directions) == 1 else None
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
        impl._configure_trials([trial], distributions, fixed)  # suggests its (enqueued) parameters: the study holds them
        study.tell(trial, values=[value])
        log.info(f"job {num}: finished before, {metric} {value:.4f}")
    for batch in _batches(unfinished, impl.n_jobs):
        asked = [ask(overrides) for _, overrides in batch]
        returns = impl.launcher.launch(impl._configure_trials(asked, distributions, fixed), initial_job_idx=batch[0][0])
        for trial, ret in zip(asked, returns):
            _tell(study, trial, ret, len(directions))
    impl.storage, impl.study_name = storage, study.study_name  # the plugin's sweep loads this study
    impl.job_idx = max(num for num, _ in started) + 1
    impl.n_trials = max(impl.n_trials - replayed, 0)
    if hasattr(impl.sampler, "reseed_rng"):  # a grid sampler is built in the plugin's sweep, and draws nothing
        impl.sampler.reseed_rng()
    log.info(f"Resumed {replayed} trials; {impl.n_trials} more to ask for")


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
