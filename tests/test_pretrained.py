"""Generator weight files: export from a real Lightning checkpoint, weights-only loading, the shipped model."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import logging
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import gipc.experiment
import gipc.pretrained
import gipc.runtime
from gipc import callbacks
from gipc.decision import MapSettings
from gipc.baselines import BASELINES
from gipc.color import fuse_color
from gipc.errors import CheckpointError, ConfigError, UserError
from gipc.cli.fuse import main as fuse_main
from gipc.imaging import read_image
from gipc.fusion import map_settings
from gipc.inference import InferenceGenerator, choose_path, prepare
from gipc.metrics import fusion_metrics, map_boundary_f, qmi, qy
from gipc.module import GIPCGAN
from gipc.pretrained import FORMAT, export_generator, load_generator, pretrained, start_from
from gipc.cli.export import main as export_main
from gipc.rundir import run_datamodule, training_inputs

from helpers import CONF, Patches, conf_group, paper_generator, paper_model, random_eval_generator, run_dir_with_checkpoints


def _lightning_checkpoint(path: Path) -> tuple[Path, GIPCGAN]:
    """A checkpoint as Lightning's Trainer writes one for the project's module (D, optimiser slots, loops and all)."""
    model = paper_model()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path, model


@pytest.fixture
def run_ckpt(tmp_path: Path) -> tuple[Path, GIPCGAN]:
    return _lightning_checkpoint(tmp_path / "last.ckpt")


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A randomly initialised generator exported and installed as the shipped weights."""
    generator = random_eval_generator(seed=5)
    ckpt = tmp_path / "random.ckpt"
    torch.save({"state_dict": {f"generator.{k}": v for k, v in generator.state_dict().items()}}, ckpt)
    weights = export_generator(ckpt, tmp_path / "weights" / "gipc-cpu.pt")
    monkeypatch.setattr(gipc.pretrained, "SHIPPED_WEIGHTS", weights)
    return weights


# --- export -----------------------------------------------------------------------------------------


def test_export_keeps_the_generator_alone_weights_only_under_1_mib(tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN]) -> None:
    ckpt, model = run_ckpt
    assert any(k.startswith("discriminator.") for k in torch.load(ckpt, weights_only=True)["state_dict"])
    out = export_generator(ckpt, tmp_path / "g.pt")
    raw = torch.load(out, weights_only=True)
    assert set(raw) == {"format", "generator", "state_dict"}
    assert raw["format"] == FORMAT == "gipc-generator/1" and raw["generator"] == conf_group("model")["generator"]
    expected = model.generator.state_dict()
    assert raw["state_dict"].keys() == expected.keys()
    assert all(torch.equal(raw["state_dict"][k], v) for k, v in expected.items())
    assert out.stat().st_size <= 1024 * 1024


def test_an_exported_file_fuses_like_the_run_checkpoint(tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN]) -> None:
    ckpt, model = run_ckpt
    exported = load_generator(export_generator(ckpt, tmp_path / "g.pt"))
    a, b = torch.rand(2, 1, 1, 40, 36) * 2 - 1
    with torch.no_grad():  # the run's generator is channels_last (conf/model): other kernels, other rounding
        assert (exported(a, b) - model.generator.eval()(a, b)).abs().max() < 1e-6
        assert torch.equal(load_generator(ckpt)(a, b), exported(a, b))


def test_export_command(tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN], capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = run_ckpt
    out = tmp_path / "g.pt"
    assert export_main([str(ckpt), str(out)]) == 0
    assert capsys.readouterr().err.startswith(f"gipc-export: wrote {out} (")
    assert export_main([str(ckpt), str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gipc-export: error: {out} already exists; choose another name or pass --overwrite (overwrite=True from Python)"
    )
    assert export_main([str(ckpt), str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert export_main([str(ckpt), str(ckpt), "--overwrite"]) == 2  # --overwrite never reaches the run's own checkpoint
    assert capsys.readouterr().err.strip() == f"gipc-export: error: refusing to write {ckpt}: it is one of the inputs"
    with pytest.raises(UserError, match=rf"^refusing to write {re.escape(str(ckpt))}: it is one of the inputs$"):
        export_generator(ckpt, ckpt, overwrite=True)  # the library's own guard, for Python callers
    assert any(k.startswith("discriminator.") for k in torch.load(ckpt, weights_only=True)["state_dict"])
    assert export_main([str(tmp_path / "none.ckpt"), str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"gipc-export: error: {tmp_path / 'none.ckpt'}: no such checkpoint file")
    assert not (tmp_path / "x.pt").exists()


def test_export_takes_its_output_as_o_too(tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN], capsys: pytest.CaptureFixture[str]) -> None:
    """``-o OUT`` as every other gipc command takes it, the same file as the positional form; neither or both: one line."""
    ckpt, _ = run_ckpt
    positional, flagged = tmp_path / "positional.pt", tmp_path / "flagged.pt"
    assert export_main([str(ckpt), str(positional)]) == 0 and export_main([str(ckpt), "-o", str(flagged)]) == 0
    one, other = (torch.load(path, weights_only=True) for path in (positional, flagged))  # the zip names its folder after the file
    assert one.keys() == other.keys() and all(torch.equal(one["state_dict"][k], v) for k, v in other["state_dict"].items())
    capsys.readouterr()
    for argv in ([str(ckpt)], [str(ckpt), str(tmp_path / "x.pt"), "--out", str(tmp_path / "y.pt")]):
        with pytest.raises(SystemExit) as stop:
            export_main(argv)
        assert stop.value.code == 2
        assert capsys.readouterr().err == (
            "gipc-export: error: name the output file once: gipc-export CKPT OUT, or gipc-export CKPT -o OUT (see --help)\n"
        )
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_an_onnx_export_fuses_luminance_as_gipc_does_at_any_size(tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN], capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ckpt, _ = run_ckpt
    out = tmp_path / "generator.onnx"
    assert export_main([str(ckpt), str(out)]) == 0
    assert re.fullmatch(rf"gipc-export: wrote {re.escape(str(out))} \(\d+ KiB, gipc-onnx/1\)\n", capsys.readouterr().err)
    model = onnx.load(str(out))  # one file, weights inside
    assert [i.name for i in model.graph.input] == ["y_a", "y_b"] and [o.name for o in model.graph.output] == ["y_fused"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["format"] == "gipc-onnx/1" and yaml.safe_load(props["generator"]) == conf_group("model")["generator"]
    assert out.stat().st_size <= 1024 * 1024 and not list(tmp_path.glob("generator.onnx.*"))
    # another runtime reads it (OpenVINO's ONNX reader, in fp32) and fuses as gipc's fp32 torch path, at any batch and size
    core = gipc.runtime.core()
    compiled = core.compile_model(core.read_model(str(out)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    reference = prepare(load_generator(ckpt), choose_path("cpu", "fp32", "torch")).fuse_y
    for shape in ((1, 1, 40, 36), (2, 1, 23, 57)):
        ya, yb = torch.rand(2, *shape, generator=torch.Generator().manual_seed(sum(shape)))
        fused = torch.from_numpy(compiled([ya.numpy(), yb.numpy()])[0])
        assert fused.shape == shape and (fused - reference(ya, yb)).abs().max() < 1e-5


def test_an_onnx_export_without_its_packages_is_one_line_before_any_work(tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = run_ckpt
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "onnxscript" else find_spec(name, *args))
    out = tmp_path / "generator.onnx"
    assert export_main([str(ckpt), str(out), "--recalibrate-bn", "5"]) == 2  # refused before the run's data is looked for
    assert capsys.readouterr().err == f"gipc-export: error: {out}: an ONNX export needs onnxscript, not installed here: pip install 'gipc[onnx]'\n"
    assert list(tmp_path.iterdir()) == [ckpt]


def test_export_with_recalibrated_batchnorm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The first BatchNorm's running mean becomes the mean of its conv's output over the run's training patches."""
    run = run_dir_with_checkpoints(tmp_path)
    ckpt, out = run / "checkpoints" / "epoch000-step0000100.ckpt", tmp_path / "g.pt"
    assert export_main([str(ckpt), str(out), "--recalibrate-bn", "2"]) == 0
    assert "BatchNorm re-estimated on 2 training batches" in capsys.readouterr().err
    conv = load_generator(ckpt).enc_a[0][0]
    with torch.no_grad():
        by_hand = torch.stack([conv(a).mean((0, 2, 3)) for a, _ in training_inputs(run_datamodule(run), 2)]).mean(0)
    exported = load_generator(out, allow_pickle=False).enc_a[0][1]
    assert torch.allclose(exported.running_mean, by_hand, atol=1e-5)
    assert not torch.allclose(load_generator(ckpt).enc_a[0][1].running_mean, by_hand, atol=1e-3)
    assert export_main([str(ckpt), str(tmp_path / "x.pt"), "--recalibrate-bn", "2", "--run-dir", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    # An exported generator lies in no run dir: the error says to name the run, not that an unnamed dir lacks a config.
    assert export_main([str(out), str(tmp_path / "x.pt"), "--recalibrate-bn", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gipc-export: error: {out} is not in a run's checkpoints/ folder; name the run whose training data --recalibrate-bn draws with --run-dir"
    )
    # A negative count would have exported without re-estimating anything.
    with pytest.raises(SystemExit) as refused:
        export_main([str(ckpt), str(tmp_path / "x.pt"), "--recalibrate-bn", "-2"])
    assert refused.value.code == 2 and not (tmp_path / "x.pt").exists()
    assert capsys.readouterr().err.strip() == "gipc-export: error: argument --recalibrate-bn: expected a whole number >= 0, got -2 (see --help)"
    # An existing output is refused first: the bad --run-dir is never read.
    assert export_main([str(ckpt), str(out), "--recalibrate-bn", "2", "--run-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{out} already exists; choose another name or pass --overwrite (overwrite=True from Python)")


# --- loading ----------------------------------------------------------------------------------------


def _needs_unpickling(path: Path) -> Path:
    """A generator checkpoint that also pickles an object, as older gipc versions saved them."""
    state = {f"generator.{k}": v for k, v in random_eval_generator(seed=4).state_dict().items()}
    torch.save({"state_dict": state, "datamodule_hyper_parameters": argparse.Namespace(root="data")}, path)
    return path


def test_a_checkpoint_that_needs_unpickling_loads_with_a_warning_unless_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _needs_unpickling(tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match=r"old\.ckpt: needs argparse\.Namespace to load, which torch\.load\(weights_only=True\) refuses"):
        load_generator(path, allow_pickle=False)
    with caplog.at_level(logging.WARNING, logger="gipc.pretrained"):
        loaded = load_generator(path)
    assert "old.ckpt: holds argparse.Namespace, so it cannot load with torch.load(weights_only=True)" in caplog.text
    assert all(torch.equal(v, random_eval_generator(seed=4).state_dict()[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("load", [
    lambda path, monkeypatch: monkeypatch.setattr(gipc.pretrained, "SHIPPED_WEIGHTS", path) or pretrained(device="cpu"),
    lambda path, monkeypatch: start_from(paper_generator(), path),  # model.init_generator=<file>
], ids=["shipped", "init-generator"])
def test_weights_that_need_unpickling_are_refused_where_gipc_picks_the_file_itself(
    load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an explicit --ckpt / load_generator may run a file's code (with a warning); the shipped weights
    and a fine-tune's starting weights load weights-only or not at all."""
    path = _needs_unpickling(tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError) as info:
        load(path, monkeypatch)
    assert str(info.value) == f"{path}: needs argparse.Namespace to load, which torch.load(weights_only=True) refuses"


@pytest.mark.parametrize("change, counts, example", [
    (lambda state: state.pop("decoder.3.bias"), "1 missing, 0 unexpected, 0 of another shape", "decoder.3.bias"),
    (lambda state: state.update({"decoder.4.weight": torch.zeros(1)}), "0 missing, 1 unexpected, 0 of another shape", "decoder.4.weight"),
], ids=["missing", "unexpected"])
def test_weights_that_lack_or_add_a_layer_are_refused_in_one_line(tmp_path: Path, change, counts: str, example: str) -> None:
    state = paper_generator().state_dict()
    change(state)
    path = tmp_path / "g.ckpt"
    torch.save({"state_dict": {f"generator.{k}": v for k, v in state.items()}, "hyper_parameters": {"generator": {}}}, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert str(info.value) == f"{path}: generator weights do not fit Generator({{}}): {counts} (e.g. {example})"


def test_a_generator_file_of_another_format_version(tmp_path: Path) -> None:
    path = tmp_path / "next.pt"
    torch.save({"format": "gipc-generator/2", "generator": {}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"next\.pt: generator file format 'gipc-generator/2'; this version of gipc reads 'gipc-generator/1'"):
        load_generator(path)


# --- the shipped model ------------------------------------------------------------------------------


def test_without_shipped_weights_pretrained_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gipc.pretrained, "SHIPPED_WEIGHTS", tmp_path / "gipc-cpu.pt")
    with pytest.raises(CheckpointError) as info:
        pretrained()
    assert str(info.value) == (
        f"no shipped weights in this install of gipc ({tmp_path / 'gipc-cpu.pt'} is missing); "
        "give a checkpoint (--ckpt, or load_generator) or a classic --method"
    )


def test_pretrained_is_the_shipped_generator_ready_to_fuse(shipped: Path) -> None:
    ready = pretrained(device="cpu", precision="fp32")
    assert isinstance(ready, InferenceGenerator) and ready.path.precision == "fp32"
    assert pretrained(device="cpu", precision="bf16").path.precision == "bf16"
    with pytest.raises(UserError, match=r"^backend must be one of auto, torch, openvino, got 'tpu'$"):
        pretrained(device="cpu", backend="tpu")
    a, b = torch.rand(2, 1, 1, 48, 40) * 2 - 1
    with torch.no_grad():
        expected = random_eval_generator(seed=5)(a, b)
    assert (ready(a, b) - expected).abs().max() < 1e-5


def test_gipc_fuse_uses_the_shipped_weights_by_default(
    tmp_path: Path, shipped: Path, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = [str(grayscale_pairs / "g05-A.png"), str(grayscale_pairs / "g05-B.png")]
    assert fuse_main([*sources, "--out", str(tmp_path / "default.png"), "--precision", "fp32"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("gipc-fuse: rule map (") and first.endswith("; network shipped with gipc; cpu, fp32 (asked for), torch, channels_last, BatchNorm folded")
    assert fuse_main(["--ckpt", str(shipped), *sources, "--out", str(tmp_path / "ckpt.png"), "--precision", "fp32"]) == 0
    default, explicit = read_image(tmp_path / "default.png").pixels, read_image(tmp_path / "ckpt.png").pixels
    assert default.std() > 0.02 and torch.equal(default, explicit)


def test_gipc_fuse_without_shipped_weights_exits_2_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gipc.pretrained, "SHIPPED_WEIGHTS", tmp_path / "gipc-cpu.pt")
    sources = [str(grayscale_pairs / "g05-A.png"), str(grayscale_pairs / "g05-B.png")]
    assert fuse_main([*sources, "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("gipc-fuse: error: no shipped weights in this install of gipc")
    assert not (tmp_path / "f.png").exists()


class _Named(Patches):
    """Test images with names, as the test loaders give them."""

    def __getitem__(self, i: int) -> dict[str, object]:
        return {**super().__getitem__(i), "name": f"img{i}"}


@pytest.mark.parametrize("installed", [True, False])
def test_the_test_report_scores_the_shipped_model_only_when_installed(
    installed: bool, tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if installed:
        request.getfixturevalue("shipped")  # random_eval_generator(seed=5), not the run's generator
    else:
        monkeypatch.setattr(gipc.pretrained, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    report = callbacks.TestReport(str(tmp_path / "run"), baselines=["average"])
    trainer = L.Trainer(callbacks=[report], logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(_Named(3), batch_size=2)
    trainer.test(run_ckpt[1], dataloaders=loader, verbose=False)
    with open(tmp_path / "run" / "metrics.csv") as table:
        rows = list(csv.DictReader(table))
    methods = ["gipc", "gipc-shipped", "average"] if installed else ["gipc", "average"]
    assert [r["method"] for r in rows] == [m for m in methods for _ in range(3)]
    if installed:
        # The shipped row scores the installed generator: its direct output fused on the CPU's auto path (what
        # pretrained(device) takes), scored here by fusion_metrics with the ground truth. The run's own row
        # scores another generator, so at least one of its scores differs clearly on every image.
        fusion = prepare(random_eval_generator(seed=5), choose_path("cpu")).fusion("direct")
        expected: dict[str, dict[str, float]] = {}
        for batch in loader:
            with torch.inference_mode():
                scores = fusion_metrics(batch["a"], batch["b"], fusion([batch["a"], batch["b"]]).image, batch["gt"])
            expected |= {name: {k: float(v[i]) for k, v in scores.items()} for i, name in enumerate(batch["name"])}
        own = {r["image"]: r for r in rows if r["method"] == "gipc"}
        theirs = {r["image"]: r for r in rows if r["method"] == "gipc-shipped"}
        assert theirs.keys() == expected.keys() == own.keys()
        for name, scores in expected.items():
            assert {k: float(theirs[name][k]) for k in scores} == pytest.approx(scores, rel=1e-6, abs=1e-9), name
            assert any(float(own[name][k]) != pytest.approx(v, rel=0.05) for k, v in scores.items()), name


def test_the_test_report_scores_the_extra_metrics_asked_for_and_refuses_unknown_ones(
    tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gipc.pretrained, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    with pytest.raises(ConfigError, match="callbacks.test_report.extra_metrics: no metric QS; choose from QMI, QNCIE, QM, QSF, QP, QY, QCB or all"):
        callbacks.TestReport(str(tmp_path / "bad"), extra_metrics=["QY", "QS"])
    with pytest.raises(ConfigError, match="callbacks.test_report.baselines: no baseline nope; choose from average, laplacian_energy"):
        callbacks.TestReport(str(tmp_path / "bad"), baselines=["gff", "nope"])
    assert callbacks.TestReport(str(tmp_path / "classics"), baselines=["gff", "all"]).baselines == ["gff", "average", "laplacian_energy", "laplacian_pyramid", "dwt", "gfdf", "dsift", "mwgf", "bf"]
    assert callbacks.TestReport(str(tmp_path / "every"), extra_metrics=["QY", "all"]).extra_metrics == ["QY", "QMI", "QNCIE", "QM", "QSF", "QP", "QCB"]
    report = callbacks.TestReport(str(tmp_path / "run"), baselines=["average"], extra_metrics=["QMI", "QY"])
    trainer = L.Trainer(callbacks=[report], logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(_Named(3), batch_size=2)
    logged = trainer.test(run_ckpt[1], dataloaders=loader, verbose=False)[0]
    with open(tmp_path / "run" / "metrics.csv") as table:
        rows = list(csv.DictReader(table))
    for batch in loader:  # the baseline's rows: its image scored by the metrics' own functions
        fused = fuse_color(BASELINES["average"], batch["a"], batch["b"])
        for i, name in enumerate(batch["name"]):
            (row,) = [r for r in rows if r["method"] == "average" and r["image"] == name]
            assert float(row["QMI"]) == pytest.approx(qmi(batch["a"][i : i + 1], batch["b"][i : i + 1], fused[i : i + 1]).item(), abs=1e-12)
            assert float(row["QY"]) == pytest.approx(qy(batch["a"][i : i + 1], batch["b"][i : i + 1], fused[i : i + 1]).item(), abs=1e-12)
    own = [float(r["QY"]) for r in rows if r["method"] == "gipc"]
    assert logged["test/QY"] == pytest.approx(sum(own) / len(own), rel=1e-6) and "test/QCB" not in logged


class _WithTrueMaps(_Named):
    """Named test images whose true decision map is the left half (1: source A in focus)."""

    def __getitem__(self, i: int) -> dict[str, object]:
        item = super().__getitem__(i)
        true_map = torch.zeros(1, *item["a"].shape[-2:])
        true_map[..., : true_map.shape[-1] // 2] = 1
        return {**item, "focus_map": true_map}


def test_the_test_report_adds_the_map_rule_and_scores_maps_where_the_truth_is_known(
    tmp_path: Path, run_ckpt: tuple[Path, GIPCGAN], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gipc.pretrained, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    passes = []
    run = InferenceGenerator._run
    monkeypatch.setattr(InferenceGenerator, "_run", lambda self, *args: passes.append(1) or run(self, *args))
    settings = {"window": 3, "match_exposure": False, "detail": 0, "closeness": 1.0, "focus": 1.0, "focus_window": 3, "clean": 3, "decisive": float("inf"), "min_region": 0.0, "region_margin": float("inf"), "seam": 0, "seam_evidence": 0.05, "radius": 0, "eps": 0.1}
    report = callbacks.TestReport(str(tmp_path / "run"), fusion={"map": settings, "head_map": {}})
    trainer = L.Trainer(callbacks=[report], logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(run_ckpt[1], dataloaders=torch.utils.data.DataLoader(_WithTrueMaps(3), batch_size=2), verbose=False)
    assert len(passes) == 2  # one network pass per batch serves both rules
    with open(tmp_path / "run" / "metrics.csv") as table:
        rows = list(csv.DictReader(table))
    assert [r["method"] for r in rows] == ["gipc"] * 3 + ["gipc+map"] * 3
    assert all(r["MAP_ACC"] == "" for r in rows[:3])  # the direct output has no map
    assert sorted(p.name for p in (tmp_path / "run" / "fused-map").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    gipc.experiment._print_summary(trainer, tmp_path / "run")  # what a run prints last names both image folders
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("fused")] == [f"fused: {tmp_path / 'run' / 'fused'}", f"fused-map: {tmp_path / 'run' / 'fused-map'}"]
    # The scores are those of the map fused by hand on the module's test path, A's weight against the true
    # map: accuracy the share of pixels on the same side of 0.5, the boundary F-score map_boundary_f's
    # (checked by hand in tests/test_decision.py). The untrained network's maps are far from a coin toss
    # either way, so scoring B's weight or an inverted truth would not pass.
    fusion = prepare(run_ckpt[1].generator, choose_path(run_ckpt[1].device)).fusion("map", map_settings({"map": settings}))
    expected = {}
    for batch in torch.utils.data.DataLoader(_WithTrueMaps(3), batch_size=2):
        with torch.inference_mode():
            w_a = fusion([batch["a"], batch["b"]]).weights[:, :1]
        accuracy = ((w_a >= 0.5) == (batch["focus_map"] >= 0.5)).flatten(1).double().mean(1)
        for name, acc, bf in zip(batch["name"], accuracy.tolist(), map_boundary_f(w_a, batch["focus_map"]).tolist()):
            expected[name] = (acc, bf)
    assert max(abs(acc - 0.5) for acc, _ in expected.values()) > 0.05
    got = {r["image"]: (float(r["MAP_ACC"]), float(r["MAP_BF"])) for r in rows[3:]}
    assert got.keys() == expected.keys()
    for name, (acc, bf) in expected.items():
        assert got[name] == pytest.approx((acc, bf), abs=1e-12), name


def test_pretrained_fusion_takes_the_rule_of_conf_fusion(shipped: Path) -> None:
    """The file's values, read here without Hydra, are the ones the Python API fuses with."""
    conf = yaml.safe_load((CONF / "fusion" / "default.yaml").read_text())
    fusion = pretrained(device="cpu", precision="fp32").fusion()
    assert fusion.rule == conf["rule"] == "map"
    assert fusion.settings == MapSettings(**conf["map"])
    assert pretrained(device="cpu").fusion("direct").rule == "direct"
