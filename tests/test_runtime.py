"""The OpenVINO backend against the fp32 module, its cache, and the fall-back to torch."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
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

from helpers import net_psnr

pytestmark = pytest.mark.skipif(gipc.runtime.unavailable() is not None, reason=f"{gipc.runtime.unavailable()}")


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
        assert net_psnr(exact(ya, yb), reference) > 80.0  # fp32 OpenVINO: the same function to float rounding
        assert net_psnr(fast(ya, yb), reference) > 45.0
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
    zeros, ones = ({side: torch.full((1, 1, side, side), value) for side in sides} for value in (0.0, 1.0))
    first = {side: run(zeros[side], ones[side]) for side in sides[:-1]}  # as many as it keeps
    kept = first[sides[0]].clone()
    swapped = run(ones[sides[0]], zeros[sides[0]])  # used last now; its shape's next result leaves the earlier one alone
    assert not torch.equal(swapped, kept) and torch.equal(first[sides[0]], kept)
    run(zeros[sides[-1]], ones[sides[-1]])  # one more: the least recently used shape, sides[1], makes room
    run(zeros[sides[0]], ones[sides[0]])  # kept: no compile
    again = run(zeros[sides[1]], ones[sides[1]])  # evicted: compiled again, same result
    assert [shape[-1] for shape in compiled] == [*sides, sides[1]] and torch.equal(first[sides[1]], again)


def test_the_runner_keeps_no_more_input_pixels_compiled_than_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget of 3000 px: 24^2 + 32^2 = 1600 fit, 40^2 more (3200) pushes out the oldest, 24^2; a
    shape above the budget alone still runs, and stays until the next."""
    import openvino as ov

    compiled: list[int] = []
    real = ov.Core.compile_model

    def counting(core, model, *args, **kwargs):
        compiled.append(model.inputs[0].get_shape()[-1])
        return real(core, model, *args, **kwargs)

    monkeypatch.setattr(ov.Core, "compile_model", counting)
    monkeypatch.setattr(gipc.runtime, "COMPILED_PIXELS", 3000)
    run = gipc.runtime.openvino_runner(fold_batchnorm(shipped_generator()), "forward", "fp32", 1)
    for side in (24, 32, 40, 32, 24, 60, 60, 24):  # 32 kept after 40; 24 compiled again; 60^2 = 3600 alone, then 24 again
        run(*torch.zeros(2, 1, 1, side, side))
    assert compiled == [24, 32, 40, 24, 60, 24]


@pytest.mark.parametrize("precision, hint", [("fp32", "f32"), ("bf16", "bf16")])
def test_openvino_compiles_in_the_paths_precision_on_torchs_threads_for_latency(precision: str, hint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino as ov

    calls: list[tuple] = []
    real = ov.Core.compile_model

    def recording(core, model, *args):
        calls.append(args)
        return real(core, model, *args)

    monkeypatch.setattr(ov.Core, "compile_model", recording)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # what the process runs torch on
    network = prepare(shipped_generator(), choose_path("cpu", precision, "openvino"))
    network(torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16))
    assert network.path.backend == "openvino"
    assert calls == [("CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": 3, "PERFORMANCE_HINT": "LATENCY"})]


def test_a_signal_after_runners_are_freed_reaches_its_python_handler(tmp_path: Path) -> None:
    """Two networks, each run before the next is made, then freed, then SIGUSR2 (Slurm's warning) to a Python handler: with a Core
    per runner this process died in a segfault (exit -11); one Core per process lets the handler run."""
    code = f"""
import gc, os, signal, torch
os.environ["GIPC_CACHE"] = {str(tmp_path)!r}
from gipc.inference import choose_path, prepare
from gipc.pretrained import shipped_generator
x = torch.zeros(1, 1, 64, 64)
generator = shipped_generator().eval()
first = prepare(generator, choose_path("cpu", "fp32", "openvino"))
first(x, x)
second = prepare(generator, choose_path("cpu", "fp32", "openvino"))
second(x, x)
del first, second
gc.collect()
signal.signal(signal.SIGUSR2, lambda signum, frame: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGUSR2)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (0, "handled\n"), done.stderr[-2000:]


def test_converted_models_live_in_gipc_cache_else_xdg_cache_home_else_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIPC_CACHE", str(tmp_path / "gipc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert gipc.runtime.cache_dir() == tmp_path / "gipc"
    monkeypatch.setenv("GIPC_CACHE", "")  # set but empty: as if unset
    assert gipc.runtime.cache_dir() == tmp_path / "xdg" / "gipc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert gipc.runtime.cache_dir() == tmp_path / "home" / ".cache" / "gipc"


def test_a_cache_entry_belongs_to_one_set_of_weights_and_one_graph() -> None:
    net = shipped_generator()
    same, nudged = copy.deepcopy(net), copy.deepcopy(net)
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-6  # one weight of about 156 000
    key = gipc.runtime._fingerprint
    assert key(same, "forward") == key(net, "forward")
    assert len({key(net, "forward"), key(net, "weight"), key(nudged, "forward")}) == 3


def test_a_later_runner_reads_the_cache_and_a_damaged_entry_is_converted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import openvino as ov

    net = fold_batchnorm(shipped_generator())
    a, b = torch.rand(1, 1, 16, 16) * 2 - 1, torch.rand(1, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = net(a, b)
    gipc.runtime.openvino_runner(net, "forward", "fp32", 1)  # converted once per session (conftest's cache), by the first test to run it
    entry = gipc.runtime.cache_dir() / "openvino" / f"{gipc.runtime._fingerprint(net, 'forward')}.xml"
    pristine = tmp_path / "pristine.xml"
    shutil.copy(entry, pristine)
    shutil.copy(entry.with_suffix(".bin"), pristine.with_suffix(".bin"))
    conversions: list[int] = []
    monkeypatch.setattr(ov, "convert_model", lambda *args, **kwargs: conversions.append(1) or ov.Core().read_model(pristine))
    torch.testing.assert_close(gipc.runtime.openvino_runner(net, "forward", "fp32", 1)(a, b), expected, atol=1e-5, rtol=0)
    assert conversions == []  # read from the cache
    entry.write_text("damaged")
    torch.testing.assert_close(gipc.runtime.openvino_runner(net, "forward", "fp32", 1)(a, b), expected, atol=1e-5, rtol=0)
    assert conversions == [1] and f"ignoring the cached model {entry}" in caplog.text
    assert entry.read_bytes() == pristine.read_bytes()  # and kept whole again
