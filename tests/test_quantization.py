"""int8 inference (gipc.quantization): where it runs, what it is calibrated on, how close it stays to fp32."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import PIL.Image
import pytest
import torch

import gipc.hardware
import gipc.quantization
import gipc.runtime
from gipc.cli.fuse import main as fuse_main
from gipc.color import luma, to_net
from gipc.data.embedded import embedded_set
from gipc.decision import best_source
from gipc.errors import UserError
from gipc.inference import choose_path, fold_batchnorm, prepare
from gipc.pretrained import shipped_generator
from gipc.tiling import tiled

from helpers import net_psnr

pytestmark = pytest.mark.skipif(gipc.runtime.unavailable() is not None, reason=f"{gipc.runtime.unavailable()}")


def test_int8_is_refused_in_one_line_where_it_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with pytest.raises(UserError, match="precision int8 runs on CPUs only"):
        choose_path("cuda", "int8")
    with pytest.raises(UserError, match=r"precision int8 runs through OpenVINO \(backend torch asked for\)"):
        choose_path("cpu", "int8", "torch")
    monkeypatch.setattr(gipc.hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    assert "this CPU has no int8 dot products, expect it no faster than fp32" in choose_path("cpu", "int8", "openvino").reason
    monkeypatch.setattr(gipc.hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert choose_path("cpu", "int8", "openvino").reason == "asked for; CPU has avx512_vnni"
    sources = [tmp_path / "a.png", tmp_path / "b.png"]
    for source in sources:
        PIL.Image.new("L", (32, 32)).save(source)
    assert fuse_main([*map(str, sources), "--precision", "int8", "--backend", "torch", "--out", str(tmp_path / "f.png")]) == 2
    assert not (tmp_path / "f.png").exists()
    assert capsys.readouterr().err.strip().splitlines() == ["gipc-fuse: error: precision int8 runs through OpenVINO (backend torch asked for); use bf16 or fp32 with torch"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "nncf" else real(name, *args))
    with pytest.raises(UserError, match=r"precision int8 needs NNCF, which is not installed: pip install 'gipc\[int8\]'"):
        choose_path("cpu", "int8", "openvino")


def test_the_float_layers_are_the_convolutions_that_read_or_write_one_channel() -> None:
    """Table 1: each encoder's first convolution reads the luminance, the decoder's last writes it."""
    model = gipc.runtime._traced(fold_batchnorm(shipped_generator()), "forward")
    names = gipc.quantization.float_layers(model)
    assert [name.split("/")[0] for name in names] == ["__module.net.enc_a.0.0", "__module.net.enc_b.0.0", "__module.net.decoder.3"]


def test_calibration_pairs_are_the_training_splits_both_ways_and_never_a_held_out_scene() -> None:
    pairs = gipc.quantization.calibration_pairs()
    split = embedded_set(test_fraction=0.25, seed=42, sigma=2.0, max_side=256)  # conf/data/source/embedded.yaml, conf/quantization/int8.yaml
    assert len(pairs) == 2 * len(split.train) and len(split.test) > 0
    for (a, b), (b_again, a_again) in zip(pairs[::2], pairs[1::2]):
        assert (a == a_again).all() and (b == b_again).all() and a.min() >= -1.0 and a.max() <= 1.0
    held_out = [to_net(luma(scene.a[None])).numpy() for scene in split.test]
    assert not any(a.shape == h.shape and (a == h).all() for a, _ in pairs for h in held_out)


@pytest.mark.slow
@pytest.mark.skipif(not gipc.quantization.available(), reason=f"needs NNCF, an optional dependency: {gipc.quantization.INSTALL}")
def test_int8_is_quantized_once_stays_near_fp32_and_picks_the_same_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    """On held-out embedded scenes (never calibrated on): 48-49 dB from the fp32 module was measured on
    the grayscale pairs, bf16's 63-67 dB; the map picks the same source nearly everywhere."""
    monkeypatch.setenv("GIPC_CACHE", str(tmp_path))
    generator = shipped_generator().eval()
    quick = prepare(generator, choose_path("cpu", "int8", "openvino"))
    assert "cpu, int8 (asked for" in quick.path.describe() and quick.path.backend == "openvino"
    reference = prepare(generator, choose_path("cpu", "fp32", "torch"))
    for scene in embedded_set(test_fraction=0.25, seed=42, sigma=2.0, max_side=256).test:
        a, b = scene.a[None], scene.b[None]
        ya, yb = to_net(luma(a)), to_net(luma(b))
        out, exact = quick(ya, yb), reference(ya, yb)
        assert 40.0 < net_psnr(out, exact) < 60.0  # quantized: near fp32, but not fp32 to rounding
        fused = [network.fusion("map")([a, b]) for network in (quick, reference)]
        matters = (luma(a) - luma(b)).abs()[0, 0] >= 1 / 255
        same = (best_source(fused[0].weights) == best_source(fused[1].weights))[0, 0]
        assert same[matters].float().mean() > 0.98
    shown = capfd.readouterr()  # the first call quantized
    assert shown.out == "" and "Statistics collection" in shown.err  # NNCF's bars on stderr, as gipc's: stdout stays the user's
    import openvino as ov

    (xml,) = [path for path in (tmp_path / "openvino").glob("*.xml") if "FakeQuantize" in path.read_text()]
    ops = ov.Core().read_model(xml).get_ordered_ops()
    int8_weights = [op for op in ops if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    assert len(int8_weights) == 13 - 3  # Table 1's 13 convolutions but the float layers
    large = [torch.nn.functional.interpolate(y, size=(400, 560), mode="bicubic") for y in (ya, yb)]
    whole = quick(*large)
    assert (tiled(quick, 256, quick.overlap)(*large) - whole).abs().max() < 1e-5  # static ranges: tiles as exact as bf16's
    monkeypatch.setattr(gipc.quantization, "quantize", lambda model: pytest.fail("quantized again"))
    again = prepare(generator, choose_path("cpu", "int8", "openvino"))
    torch.testing.assert_close(again(ya, yb), out)  # read from the cache


@pytest.mark.parametrize(("flags", "hint"), [({"amx_bf16", "amx_int8"}, "bf16"), ({"avx512_vnni"}, "f32")])
def test_an_int8_models_float_layers_run_in_bf16_only_where_the_cpu_computes_it(flags: set[str], hint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gipc.hardware, "cpu_flags", lambda: frozenset(flags))
    assert gipc.runtime.hint("int8") == hint and gipc.runtime.hint("fp32") == "f32" and gipc.runtime.hint("bf16") == "bf16"
