"""The OpenVINO backend against the fp32 module, its cache, and the fall-back to torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gipc.inference
import gipc.runtime
from gipc.cli.fuse import main as fuse_main
from gipc.color import to_net
from gipc.decision import best_source
from gipc.errors import UserError
from gipc.fusion import luma
from gipc.imaging import read_image
from gipc.inference import choose_path, fold_batchnorm, prepare
from gipc.metrics import psnr
from gipc.pretrained import shipped_generator

pytestmark = pytest.mark.skipif(gipc.runtime.unavailable() is not None, reason=f"{gipc.runtime.unavailable()}")


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR of network outputs in [-1, 1] (peak-to-peak 2)."""
    return float(10 * torch.log10(4.0 / ((x - y) ** 2).mean()))


def test_auto_takes_openvino_on_a_cpu_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIPC_BACKEND")
    assert choose_path("cpu").backend == "openvino" and "OpenVINO" in choose_path("cpu").describe()
    assert choose_path("cpu", backend="torch").backend == "torch"
    monkeypatch.setenv("GIPC_BACKEND", "torch")
    assert choose_path("cpu").backend == "torch"
    monkeypatch.setenv("GIPC_BACKEND", "onnx")
    with pytest.raises(UserError, match="GIPC_BACKEND must be one of auto, torch, openvino, got 'onnx'"):
        choose_path("cpu")


def test_where_openvino_cannot_load_auto_falls_back_to_torch_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIPC_BACKEND")
    monkeypatch.setattr(gipc.runtime, "unavailable", lambda: "openvino cannot be imported (ImportError: gone)")
    path = choose_path("cpu", backend="auto")
    assert path.backend == "torch" and "(OpenVINO unavailable: openvino cannot be imported (ImportError: gone))" in path.describe()
    with pytest.raises(UserError, match="backend openvino: openvino cannot be imported"):
        choose_path("cpu", backend="openvino")


def test_a_failed_conversion_fuses_with_torch(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported op")

    monkeypatch.setattr(gipc.runtime, "openvino_runner", broken)
    generator = shipped_generator()
    network = prepare(generator, choose_path("cpu", "fp32", "openvino"))
    a, b = torch.rand(1, 1, 32, 32) * 2 - 1, torch.rand(1, 1, 32, 32) * 2 - 1
    out = network(a, b)
    assert network.path.backend == "torch" and "OpenVINO failed: RuntimeError" in network.path.describe()
    assert "fusing with torch" in caplog.text
    torch.testing.assert_close(out, prepare(generator, choose_path("cpu", "fp32", "torch"))(a, b))


def test_conversion_works_inside_a_test_stage_inference_mode_and_bf16_autocast(tmp_path: Path, monkeypatch) -> None:
    """Lightning's test stage runs under inference mode and bf16 autocast, where tracing fails unless converted apart."""
    monkeypatch.setenv("GIPC_CACHE", str(tmp_path))
    generator = shipped_generator().eval()
    a, b = torch.rand(1, 1, 48, 48) * 2 - 1, torch.rand(1, 1, 48, 48) * 2 - 1
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        network = prepare(generator, choose_path("cpu", "fp32", "openvino"))
        out = network(a, b)
    assert network.path.backend == "openvino" and out.dtype == torch.float32
    torch.testing.assert_close(out, prepare(generator, choose_path("cpu", "fp32", "torch"))(a, b), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_openvino_stays_within_45_db_of_the_fp32_module_and_picks_the_same_pixels(lytro_pairs: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GIPC_CACHE", str(tmp_path / "cache"))
    generator = shipped_generator().eval()
    fast = prepare(generator, choose_path("cpu", backend="openvino"))  # bf16 where native, fp32 elsewhere
    exact = prepare(generator, choose_path("cpu", "fp32", "openvino"))
    for pair in ("lytro-03", "lytro-11"):
        a, b = (read_image(lytro_pairs / f"{pair}-{s}.jpg").pixels[None].float() for s in "AB")
        ya, yb = to_net(luma(a)), to_net(luma(b))
        with torch.no_grad():
            reference = generator(ya, yb)
        assert _psnr(exact(ya, yb), reference) > 80.0  # fp32 OpenVINO: the same function to float rounding
        assert _psnr(fast(ya, yb), reference) > 45.0
        fused = [fusion([a, b]) for fusion in (fast.fusion("map"), prepare(generator, choose_path("cpu", "fp32", "torch")).fusion("map"))]
        # The same source wherever the choice shows: where the sources differ by an 8-bit step or more
        # (in flat areas where they are equal the choice is a coin toss that does not change the image).
        matters = (luma(a) - luma(b)).abs()[0, 0] >= 1 / 255
        same = (best_source(fused[0].weights) == best_source(fused[1].weights))[0, 0]
        assert same[matters].float().mean() > 0.999 and psnr(fused[0].image, fused[1].image) > 60.0  # images in [0, 1]
    # Converted once per weights and graph, whole, with fp32 weights (4 bytes per parameter of the folded network).
    (xml,) = (tmp_path / "cache" / "openvino").glob("*.xml")
    folded = sum(p.numel() for p in fold_batchnorm(generator).parameters())
    assert xml.with_suffix(".bin").stat().st_size >= 4 * folded and not list((tmp_path / "cache" / "openvino").glob(".*"))  # no staging folder left


@pytest.mark.slow
def test_gipc_fuse_names_the_backend_and_writes_the_same_image_as_torch_to_rounding(grayscale_pairs: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("GIPC_CACHE", str(tmp_path / "cache"))
    sources = [str(grayscale_pairs / "g03-A.png"), str(grayscale_pairs / "g03-B.png")]
    assert fuse_main([*sources, "--backend", "openvino", "--precision", "fp32", "--rule", "direct", "--out", str(tmp_path / "ov.png")]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("gipc-fuse: rule direct") and "cpu, fp32 (asked for), OpenVINO, BatchNorm folded" in first
    assert fuse_main([*sources, "--backend", "torch", "--precision", "fp32", "--rule", "direct", "--out", str(tmp_path / "torch.png")]) == 0
    ov, pt = (read_image(tmp_path / f"{name}.png").pixels.float() for name in ("ov", "torch"))
    assert (ov - pt).abs().max() <= 1 / 255 + 1e-6  # at most one 8-bit level apart


def test_the_runner_keeps_the_shapes_used_last_compiled_and_recompiles_an_evicted_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino as ov

    compiled: list[tuple[int, ...]] = []
    real = ov.Core.compile_model

    def counting(core, model, *args, **kwargs):
        compiled.append(tuple(model.inputs[0].get_shape()))
        return real(core, model, *args, **kwargs)

    monkeypatch.setattr(ov.Core, "compile_model", counting)
    run = gipc.runtime.openvino_runner(fold_batchnorm(shipped_generator()), "forward", "fp32", 1)
    sides = [16 + 8 * k for k in range(gipc.runtime.COMPILED_SHAPES + 1)]  # one size more than it keeps
    first = run(torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16))
    for side in sides[1:]:
        run(torch.zeros(1, 1, side, side), torch.ones(1, 1, side, side))
    run(torch.zeros(1, 1, sides[-1], sides[-1]), torch.ones(1, 1, sides[-1], sides[-1]))  # kept: no compile
    assert [shape[-1] for shape in compiled] == sides
    again = run(torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16))  # evicted: compiled again, same result
    assert [shape[-1] for shape in compiled] == [*sides, 16] and torch.equal(first, again)
