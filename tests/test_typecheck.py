"""Config values against the annotations of what they build (gipc.typecheck): the kinds a command line
can type, the words a refusal uses, and the shipped configs, which must all pass."""

from collections.abc import Sequence
from typing import Any, Literal

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import ListConfig, OmegaConf

import gipc.experiment  # noqa: F401  (registers the resolvers conf/ uses)
from gipc.decision import MapSettings
from gipc.errors import ConfigError
from gipc.typecheck import check_node, check_values, describe, fits, hints
from helpers import CONF

FITS = [
    (1, float, True), (0.5, float, True), (True, float, False), ("1", float, False),
    (3, int, True), (3.0, int, False), (False, int, False), (True, bool, True), (1, bool, False), ("true", bool, False),
    ("x", str, True), (1, str, False), (None, int | None, True), (None, int, False), (2, int | None, True),
    ([0.5, 1], tuple[float, float], True), ([0.5], tuple[float, float], False), ([0.5, "a"], tuple[float, float], False),
    ((1, 2, 3), tuple[int, ...], True), ([], tuple[int, ...], True), ([1, 2.5], tuple[int, ...], False), (3, tuple[int, ...], False),
    (["a", "b"], Sequence[str], True), ("ab", Sequence[str], False), (["a", 1], list[str], False),
    (ListConfig([1, 2]), tuple[int, int], True), (OmegaConf.create({"k": 1}), dict[str, Any], True), ([1], dict[str, Any], False),
    ("stop", Literal["stop", "skip"], True), ("halt", Literal["stop", "skip"], False), (True, Literal["stop"] | bool, True),
    (object(), ConfigError, True),  # a class: its constructor's business
]


@pytest.mark.parametrize(("value", "hint", "expected"), FITS)
def test_fits_takes_the_kinds_a_command_line_types(value, hint, expected):
    assert fits(value, hint) is expected


@pytest.mark.parametrize(("hint", "words"), [
    (float, "a number"), (int | None, "an integer or null"), (bool | None, "true, false or null"),
    (tuple[float, float], "a list of 2 numbers"), (tuple[int, ...], "a list of integers"), (Sequence[str], "a list of strings"),
    (Literal["stop", "skip", "reduce_lr"], "stop, skip or reduce_lr"), (bool | Literal["link"] | None, "true, false, link or null"),
])
def test_describe_says_the_kind_in_words(hint, words):
    assert describe(hint) == words


class _Base:
    def __init__(self, rate: float = 1.0, name: str = "x") -> None:
        pass


class _Child(_Base):
    def __init__(self, *args: Any, name: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


def test_hints_of_a_class_include_what_it_passes_on_to_the_class_it_extends_nearest_first():
    found = hints(_Child)
    assert found["rate"] is float and found["name"] is int  # _Child's own name wins over _Base's


def test_check_values_names_the_key_and_leaves_unannotated_names_alone():
    annotated = {"lam": float, "label": tuple[float, float]}
    check_values(annotated, {"lam": 2, "label": [0.0, 0.3], "_target_": "anything", "misspelt": "abc"}, "loss.")
    with pytest.raises(ConfigError, match=r"^loss\.lam must be a number, got 'abc'$"):
        check_values(annotated, {"lam": "abc"}, "loss.")


def test_check_node_checks_nested_gipc_targets_and_leaves_other_packages_alone():
    node = {
        "_target_": "gipc.data.datamodule.FusionDataModule", "batch_size": 4, "patch_size": 64,
        "source": {"_target_": "gipc.data.pair_sets.EmbeddedPairs", "sigma": "abc", "test_fraction": 0.25, "max_side": 256},
    }
    with pytest.raises(ConfigError, match=r"^data\.source\.sigma must be a number, got 'abc'$"):
        check_node(node, "data")
    check_node({"_target_": "lightning.Trainer", "max_epochs": "abc"}, "trainer")  # Lightning's own: gipc checks it elsewhere
    check_node({"_target_": "gipc.models.Nope", "width": "abc"}, "model.generator")  # misspelt: instantiating it says so


def test_map_settings_refuse_a_value_of_the_wrong_kind_in_their_own_words():
    settings = OmegaConf.to_container(OmegaConf.load(CONF / "fusion" / "default.yaml"))["map"]
    MapSettings(**settings)
    with pytest.raises(ConfigError, match=r"^map eps must be a number, got 'abc'$"):
        MapSettings(**{**settings, "eps": "abc"})
    with pytest.raises(ConfigError, match=r"^map match_exposure must be true or false, got 'yes'$"):
        MapSettings(**{**settings, "match_exposure": "yes"})


GROUPS = ("model", "loss", "data", "callbacks", "logger")


@pytest.mark.parametrize("overrides", [
    [], ["experiment=cpu"], ["experiment=cpu_finetune"], ["experiment=cpu_study"], ["experiment=full"],
    ["data=photos"], ["data=folder"], ["logger=csv"], ["model.generator.head=weights"],
])
def test_every_shipped_config_passes_its_own_check(overrides):
    """What conf/ ships must fit the annotations it is checked against: a mismatch here would refuse
    the README's own commands."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "paths.output_dir=out"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # the run names its W&B run from Hydra's choices
    for group in GROUPS:
        node = OmegaConf.to_container(cfg[group], resolve=True)
        entries = node.items() if "_target_" not in node else [(group, node)]
        for name, entry in entries:
            if isinstance(entry, dict) and "_target_" in entry:
                check_node(entry, name if name == group else f"{group}.{name}")
    MapSettings(**OmegaConf.to_container(cfg.fusion.map, resolve=True))
