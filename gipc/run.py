"""Train, test and report one GIPC-GAN experiment: ``python gipc/run.py [overrides]``.

With no arguments this runs ``experiment=quick`` on the embedded data set. Everything a run
writes lands in its Hydra run dir; see the README for the config groups.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python gipc/run.py` puts gipc/ itself first on sys.path: drop it so that modules such as
# gipc/metrics or gipc/evaluate.py cannot shadow top-level packages of the same name.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from gipc.experiment import run_experiment  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the validation metric an Optuna sweep optimises."""
    return run_experiment(cfg)


if __name__ == "__main__":
    main()
