"""Issue 12's study presets compose: experiment=cpu_study is experiment=cpu shortened, and the sweep
presets expand (through Hydra's own sweeper) into every arm at seeds 1 and 2, seed outermost."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import gipc.experiment  # noqa: F401  (registers the gipc.* resolvers the configs use)
from helpers import CONF

LAMBDAS = ("l1", "l2", "l3", "l4", "l5", "l6")


def composed(*overrides: str, hydra: bool = False):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def flat(cfg) -> dict[str, object]:
    """Every leaf as ``dotted.key -> value``, interpolations left unresolved."""
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


def test_cpu_study_is_the_cpu_recipe_with_fewer_batches_and_a_shorter_warmup():
    cpu, study = flat(composed("experiment=cpu")), flat(composed("experiment=cpu_study"))
    changed = {k for k in cpu.keys() | study.keys() if cpu.get(k) != study.get(k)}
    assert changed == {
        "task_name", "tags", "data.source.patches_per_epoch", "trainer.max_epochs", "callbacks.test_report.baselines",
        "model.content_warmup",
    }
    # docs/experiments.md: 600 loaded batches of 3 x 16 patches instead of experiment=cpu's 7200, the first
    # 180 content-only (then 420 of 2 D steps and 1 G step) instead of 60%; no patch drawn and dropped at an epoch's end.
    for experiment, batches, content_only in (("cpu_study", 600, 180), ("cpu", 7200, 4320)):
        cfg = composed(f"experiment={experiment}")
        loaded = cfg.data.batch_size * (cfg.model.d_steps_per_g_step + 1)
        assert loaded == 48 and cfg.data.source.patches_per_epoch % loaded == 0
        assert cfg.trainer.max_epochs * cfg.data.source.patches_per_epoch // loaded == batches
        assert round(cfg.model.content_warmup * batches) == content_only


def jobs(preset: str) -> list[dict[str, str]]:
    """The jobs Hydra's basic sweeper makes of a preset, in launch order, as ``key -> value``."""
    params = composed(f"hparams_search={preset}", hydra=True).hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return [dict(o.split("=", 1) for o in job) for job in batch]


@pytest.mark.parametrize(
    "preset, key, arms",
    [
        ("study_ablation", "ablation", ["none", "without_int", "without_gra", "content_only"]),
        ("study_ratio", "loss.ratio", ["0.05", "0.1", "0.2", "0.5", "1.0"]),
    ],
)
def test_study_presets_run_every_arm_at_seed_1_before_seed_2(preset, key, arms):
    expanded = jobs(preset)
    assert expanded == [{"seed": seed, key: arm} for seed in ("1", "2") for arm in arms]
    for job in expanded[: len(arms)]:  # each job composes with the study's scale
        cfg = composed("experiment=cpu_study", *(f"{k}={v}" for k, v in job.items()))
        lams = {k: cfg.loss[k] for k in LAMBDAS}
        if key == "loss.ratio":
            assert lams["l1"] == lams["l3"] == lams["l5"] == float(job[key]) and lams["l2"] == 1.0
        elif job[key] == "content_only":
            assert not any(lams.values())
        assert cfg.seed == 1 and cfg.task_name == "cpu_study"

