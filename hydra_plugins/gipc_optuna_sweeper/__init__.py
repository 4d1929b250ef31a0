"""gipc's Optuna sweeper, a Hydra plugin (Hydra instantiates sweepers only from this namespace).

``hparams_search=optuna`` uses it: hydra-optuna-sweeper's sweeper, whose sweeps also resume
(``resume=<sweep dir>``). Installed without gipc's ``sweeps`` extra there is no Optuna sweeper to
extend, and this package registers nothing (Hydra imports every plugin package at start).
"""

from importlib.util import find_spec

if find_spec("hydra_plugins.hydra_optuna_sweeper") is not None:
    from hydra_plugins.gipc_optuna_sweeper._resumable import ResumableOptunaSweeper

    __all__ = ["ResumableOptunaSweeper"]
