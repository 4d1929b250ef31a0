"""Overrides that do not compose are one line before Hydra runs (Hydra's own report: 6-14 lines, exit 1)."""

from __future__ import annotations

import pytest

import gipc.overrides
import gipc.sweep  # noqa: F401  # the config's resolvers, as run.py registers them
from gipc.overrides import override_error
from helpers import CONF, run_gipc

ABLATIONS = "content_only, none, paper_without_gra, paper_without_int, without_gra, without_int"


@pytest.mark.parametrize(("argv", "message"), [
    # a key the config lacks: Hydra suggested +key= (a key no code reads); the key meant instead
    (["data.batchsize=2"], "data.batchsize: no such key; did you mean data.batch_size?"),
    (["lr=0.1"], "lr: no such key; did you mean model.lr?"),  # the same last part elsewhere
    (["fusion.clen=3"], "fusion.clen: no such key; did you mean fusion.head_map.clean or fusion.map.clean?"),
    (["loss.lambda=3"], "loss.lambda: no such key; loss has beta1, beta2, fake_label, l1, l2, l3, l4, l5, l6, lam, laplacian, "
     "ratio, real_label (+loss.lambda=<value> adds it)"),  # nothing close enough: what is there
    (["experimnt=full"], "experimnt: no such key; did you mean experiment?"),  # a config group
    (["hydra.job.chdirr=true"], "Could not override 'hydra.job.chdirr'; To append to your config use +hydra.job.chdirr=true; "
     "Key 'chdirr' not in 'JobConf'"),  # Hydra's own keys: its message
    (["ablation=without_everything"], f"ablation=without_everything: no such option; ablation is one of {ABLATIONS}"),
    (["experiment=nope"], "experiment=nope: no such option; experiment is one of cpu, cpu_finetune, cpu_study, full, quick"),
    (["seed=[1"], "cannot parse the override: no viable alternative at input '[1'"),
    (["ablation=none,without_int"], "Ambiguous value for argument 'ablation=none,without_int'; 1. To use it as a list, use key=[value1,value2]; "
     "2. To use it as string, quote the value: key='value1,value2'; 3. To sweep over it, add --multirun to your command line"),
    # under -m each value of a sweep is composed, so the one misspelt value is named
    (["-m", "ablation=none,without_intt", "trainer.max_epochs=1"], f"ablation=without_intt: no such option; ablation is one of {ABLATIONS}"),
    (["--multirun", "loss.ratio=0.1,0.5", "trainer.max_epoch=1"], "trainer.max_epoch: no such key; did you mean trainer.max_epochs?"),
    (["-m", "hparams_search=optuna", "--cfg", "hydra"], "--cfg and -m cannot be given together: a command does one of -m (a sweep), --cfg, "
     "--info, --run and --shell-completion"),  # Hydra's ValueError traceback
    (["data=folder"], "data.source.root: required, and not given; add data.source.root=<value> to the command"),  # `???`: a traceback before
    # a top-level key added with +: nothing reads it, the run went on as if it were not given
    (["+lr=0.1"], "+lr: nothing reads a top-level lr; did you mean model.lr?"),
    (["-m", "+lr=0.1,0.2"], "+lr: nothing reads a top-level lr; did you mean model.lr?"),
], ids=["misspelt-key", "key-elsewhere", "misspelt-deeper", "nothing-close", "misspelt-group", "hydra-key", "unknown-ablation", "unknown-experiment", "unparsable", "sweep-without-m", "sweep-value", "fixed-key-of-a-sweep", "two-modes", "required", "added-top-level", "added-top-level-sweep"])
def test_overrides_that_do_not_compose_are_one_line(argv: list[str], message: str) -> None:
    assert override_error(argv, CONF, "config") == message


@pytest.mark.parametrize("argv", [
    [],
    ["experiment=cpu", "trainer.max_epochs=3", "+data.batchsize=2"],  # a new key: the data module names it when built
    ["-m", "ablation=none,without_int,without_gra", "loss.ratio=range(0.1,0.3,0.1)"],
    ["-m", "hparams_search=optuna", "loss.lam=interval(0.1,1)"],  # an interval cannot be listed: Hydra's
    ["hydra.mode=MULTIRUN", "ablation=none,without_int"],  # -m as an override
    ["--cfg", "job", "data.batchsize=2"],  # Hydra's own flags: Hydra answers
    ["+trainer.max_time=00:00:10:00", "++seed=3"],  # keys added below the top, or set with ++: the code reads them
], ids=["none", "fixed", "sweeps", "interval", "mode-multirun", "hydra-flag", "added-below"])
def test_overrides_that_compose_or_are_hydras_to_read_pass(argv: list[str]) -> None:
    assert override_error(argv, CONF, "config") is None


def test_hydra_full_error_leaves_the_report_to_hydra(monkeypatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    assert override_error(["data.batchsize=2"], CONF, "config") is None


def test_the_command_prints_the_one_line_exits_2_and_writes_nothing(tmp_path) -> None:
    done = run_gipc(tmp_path, "-m", "ablation=none,nope", check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: ablation=nope: no such option; ablation is one of {ABLATIONS}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_missing_plugin_names_the_extra_that_installs_it(monkeypatch) -> None:
    """Without ``gipc[sweeps]`` Hydra knows no joblib or submitit launcher: the line says where they come from."""
    launchers = "basic, joblib, local_parallel, slurm, submitit_local, submitit_slurm"
    assert override_error(["hydra/launcher=nope"], CONF, "config") == f"hydra/launcher=nope: no such option; hydra/launcher is one of {launchers}"
    monkeypatch.setitem(gipc.overrides.PLUGIN_GROUPS, "hydra/launcher", ("a_plugin_not_installed",))  # as if the extra were missing
    assert override_error(["hydra/launcher=nope"], CONF, "config") == (
        f"hydra/launcher=nope: no such option; hydra/launcher is one of {launchers}; "
        "Hydra's launcher and sweeper plugins come with pip install 'gipc[sweeps]'"
    )
