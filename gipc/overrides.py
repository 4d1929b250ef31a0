"""The command line's overrides checked before Hydra composes a run, so that a misspelt key, an option
a group does not have, an override Hydra cannot parse or a required value left out is one line
(Hydra reports each in 6 to 14 lines, the config search path among them, and exits 1).

The check composes the config as the run will, through Hydra's compose API; a sweep's values (``-m
ablation=none,without_gra``) are composed one at a time beside the fixed overrides. What it cannot
check it leaves to Hydra: an interval or glob sweep, the presets' own sweeps (``hparams_search=``),
and any command line with a Hydra flag other than ``-m`` (``--cfg``, ``--info``, ``-cn``, ...) or
under ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf

MULTIRUN = ("-m", "--multirun")
MODES = {"-m": "-m", "--multirun": "-m", "-c": "--cfg", "--cfg": "--cfg", "-i": "--info", "--info": "--info",
         "-r": "--run", "--run": "--run", "-sc": "--shell-completion", "--shell-completion": "--shell-completion"}
"""Hydra's flags that each say what the command does: it takes one (two ended in Hydra's ValueError traceback)."""
PLUGIN_GROUPS = {"hydra/launcher": ("joblib", "submitit_local", "submitit_slurm"), "hydra/sweeper": ("optuna",)}
"""The options gipc's ``sweeps`` extra installs, by group (``local_parallel`` and ``slurm`` build on them)."""
LISTED = (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP)
"""The sweeps whose values can be listed without the config (an interval cannot be; a glob needs the config's options)."""


def override_error(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """Why ``argv``'s overrides do not compose with ``config_dir``'s ``config_name``, in one line; None
    where they do, or where the command line is Hydra's to read (a flag other than ``-m``)."""
    modes = sorted({MODES[arg.split("=")[0]] for arg in argv if arg.split("=")[0] in MODES})
    if len(modes) > 1:
        return f"{' and '.join(modes)} cannot be given together: a command does one of -m (a sweep), --cfg, --info, --run and --shell-completion"
    if any(arg.startswith("-") and arg not in MULTIRUN for arg in argv) or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return None  # Hydra's flags, or a user who asked Hydra for its full traceback
    given = [arg for arg in argv if arg not in MULTIRUN]
    try:
        parsed = OverridesParser.create().parse_overrides(given)
    except OverrideParseException as err:
        return f"cannot parse the override: {_one_line(err)}"
    if not any(arg in MULTIRUN or arg == "hydra.mode=MULTIRUN" for arg in argv):
        trials = [given]  # a sweep value without -m is an error composition names
    else:
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        trials = [fixed, *_each_sweep_value(parsed, fixed)]
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        try:
            for overrides in trials:
                config = compose(config_name, overrides=overrides, return_hydra_config=True)
                missing = sorted(key for key in _missing(OmegaConf.to_container(config)) if not key.startswith("hydra."))
                if missing:  # `???` in conf/: instantiating it would end in a traceback
                    return f"{', '.join(missing)}: required, and not given; add {missing[0]}=<value> to the command"
            for key in (o.key_or_group for o in parsed if o.is_add() and not set(".@/") & set(o.key_or_group)):
                others = [o.input_line for o in parsed if o.key_or_group != key and not o.is_sweep_override()]
                if key not in compose(config_name, overrides=others, return_hydra_config=True):
                    # a new top-level key: no code reads it, so the run would go on as if it were not given
                    return f"+{key}: nothing reads a top-level {key}; {_meant(key, others, config_name)[1]}"
        except MissingConfigException as err:
            if err.missing_cfg_file and err.options:
                group, _, name = err.missing_cfg_file.rpartition("/")
                missing_extra = group in PLUGIN_GROUPS and not set(PLUGIN_GROUPS[group]) & set(err.options)
                plugins = "; Hydra's launcher and sweeper plugins come with pip install 'gipc[sweeps]'" if missing_extra else ""
                return f"{group}={name}: no such option; {group} is one of {', '.join(err.options)}{plugins}"
            return _one_line(err)
        except ConfigCompositionException as err:
            absent = ABSENT.match(str(err))
            if absent is None or absent["key"].startswith("hydra.") or "not in struct" not in str(err.__cause__):
                return _one_line(err)
            key = absent["key"]
            guessed, meant = _meant(key, [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")], config_name)
            return f"{key}: no such key; {meant}{'' if guessed else f' (+{key}=<value> adds it)'}"
    return None


ABSENT = re.compile(r"Could not override '(?P<key>[^']+)'")
"""Hydra's report of an override whose key the config lacks (it suggests ``+key=``, which adds a key no code may read)."""


def _meant(key: str, others: list[str], config_name: str) -> tuple[bool, str]:
    """What ``key``, which the config lacks (composed from the ``others`` overrides), most likely meant
    (True, ``did you mean ...?``): its last part elsewhere, else a near spelling beside it, else
    anywhere; else (False) the keys its parent holds."""
    try:
        config = compose(config_name, overrides=others, return_hydra_config=True)
    except Exception:  # another override is wrong too: suggest from the defaults
        config = compose(config_name, return_hydra_config=True)
    groups = [group for group in config.hydra.runtime.choices if not group.startswith("hydra/")]
    keys = sorted({*_keys(OmegaConf.to_container(config)), *groups} - {"hydra"})
    keys = [k for k in keys if not k.startswith("hydra.")]
    parent, _, leaf = key.rpartition(".")
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    likely = [k for k in keys if k.rpartition(".")[2] == leaf] or _nearest(leaf, siblings) or _nearest(leaf, keys)[:3]
    if likely:
        return True, f"did you mean {' or '.join(likely)}?"
    names = [k.rpartition(".")[2] for k in siblings if "/" not in k and not k.rpartition(".")[2].startswith("_")]
    return False, f"{parent} has {', '.join(names)}" if parent else f"the top-level keys are {', '.join(names)}"


def _nearest(leaf: str, keys: list[str]) -> list[str]:
    """The keys in ``keys`` whose last part is spelt closest to ``leaf``: the best and any within 0.05 of
    it, if difflib's ratio reaches 0.75."""
    ratios = {k: difflib.SequenceMatcher(None, leaf, k.rpartition(".")[2]).ratio() for k in keys}
    best = max(ratios.values(), default=0.0)
    return sorted((k for k, r in ratios.items() if r >= max(0.75, best - 0.05)), key=lambda k: (-ratios[k], k))


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config container, inner nodes included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{prefix}{key}"
            yield from _keys(value, f"{prefix}{key}.")


def _each_sweep_value(parsed: Sequence, fixed: list[str]) -> Iterator[list[str]]:
    """``fixed`` plus one value of one sweep override, for every value of every sweep that can be listed."""
    for override in parsed:
        if override.value_type in LISTED:
            for value in override.sweep_string_iterator():
                yield [*fixed, f"{override.get_key_element()}={value}"]


def _missing(node: Any, prefix: str = "") -> Iterator[str]:
    """The keys of a config container (interpolations unresolved) whose value is ``???``."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if value == "???":
            yield f"{prefix}{key}"
        yield from _missing(value, f"{prefix}{key}.")


def _one_line(err: Exception) -> str:
    """Hydra's message and its OmegaConf cause, each line a clause; ``full_key`` and ``object_type`` repeat the key."""
    parts = [line.strip().rstrip(".") for line in str(err).splitlines()]
    if err.__cause__ is not None:
        parts.append(str(err.__cause__).splitlines()[0].strip().rstrip("."))
    return "; ".join(part for part in parts if part and not part.startswith(("full_key:", "object_type=", "See https://")))
