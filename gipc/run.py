"""Train, test and report one GIPC-GAN experiment: ``python gipc/run.py [overrides]`` in a checkout,
``python -m gipc.run [overrides]`` anywhere gipc is installed.

With no arguments this runs ``experiment=quick`` on the embedded data set. Everything a run
writes lands in its Hydra run dir; see the README for the config groups.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python gipc/run.py` puts gipc/ itself first on sys.path, where modules such as gipc/metrics or
# gipc/evaluate.py would shadow top-level packages of the same name. The checkout goes there
# instead: the script runs its own checkout's code and configs, whichever gipc is installed.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import gipc.sweep  # noqa: E402  # the config's resolvers, registered before Hydra composes; a stopped multirun's line
from gipc.configs import CONF_DIR  # noqa: E402
from gipc.overrides import override_error  # noqa: E402


# The package's own config tree, not a path beside this file: an installed wheel carries it as
# gipc/conf and nothing beside the package, so ``python -m gipc.run`` trains from a wheel too.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the validation metric an Optuna sweep optimises."""
    from gipc.experiment import run_experiment  # torch and Lightning once a run starts: --help and a bad option answer in a second

    return run_experiment(cfg)


if __name__ == "__main__":
    if (problem := override_error(sys.argv[1:], CONF_DIR, "config")) is not None:  # Hydra's report: 6-14 lines
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C while a launcher (joblib, submitit) waits for its jobs, or between jobs
        print(f"error: {gipc.sweep.stopped_multirun('interrupted')}", file=sys.stderr)
        sys.exit(130)
    except gipc.sweep.SweepTerminated:
        print(f"error: {gipc.sweep.stopped_multirun('stopped by SIGTERM')}", file=sys.stderr)
        sys.exit(143)
