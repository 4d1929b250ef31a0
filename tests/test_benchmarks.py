"""The benchmark scripts still run end to end on a tiny input (what they print is measured by hand,
benchmarks/README.md; nothing here times anything): a refactor of the library must not leave them broken."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gipc.imaging import read_image, write_image
from gipc.pretrained import pretrained

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 64x64 RGB pairs: a warm-up and a timed pair per section."""
    folder = tmp_path_factory.mktemp("pairs")
    for k in range(1, 4):
        sharp = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(k))
        blurred = torch.nn.functional.avg_pool2d(sharp[None], 5, stride=1, padding=2)[0]
        write_image(folder / f"lytro-0{k}-A.png", torch.cat([sharp[:, :, :32], blurred[:, :, 32:]], dim=2))
        write_image(folder / f"lytro-0{k}-B.png", torch.cat([blurred[:, :, :32], sharp[:, :, 32:]], dim=2))
    return folder


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_runtime_runs_every_section(tiny_pairs: Path) -> None:
    out = _run("bench_runtime.py", "--pairs", str(tiny_pairs), "--limit", "1", "--baseline-limit", "1", "--rule-repeats", "1",
               "--memory-side", "96x80", "--threads", "1")
    for section in ("== Parameters", "== Start-up", "== Network paths", "== Fusion rules", "map's steps inside each call", "== The map rule's own work",
                    "== End to end", "== Peak memory", "== Classic baselines"):
        assert section in out, f"{section} missing:\n{out[-2000:]}"
    assert "156,033" in out  # G's parameters, Table 1 by hand (tests/test_models.py)
    shares = out.split("== The map rule's own work")[1].split("\n== ")[0]
    assert shares.count("the map adds") == out.split("== Network paths")[1].split("same-run matmul")[0].count("folded")  # every gipc.inference path


def test_bench_pipeline_and_training_run(tiny_pairs: Path) -> None:
    assert "pipelined" in _run("bench_pipeline.py", "--pairs", str(tiny_pairs), "--rounds", "1").lower()
    assert "patches/s" in _run("bench_training.py", "--patch", "16", "--batch", "2", "--steps", "4", "--warmup", "1", "--threads", "1")


def test_bench_stack_runs() -> None:
    out = _run("bench_stack.py", "--frames", "2", "3", "--size", "96x64")
    assert out.count(" s, peak ") == 4 and "bytes per pixel per frame (2 -> 3 frames)" in out, out


def test_bench_metrics_runs(lytro_pairs: Path) -> None:
    assert "QABF" in _run("bench_metrics.py", "--repeat", "1", "--threads", "1")


def test_the_map_step_clock_times_every_step_and_puts_them_back(tiny_pairs: Path) -> None:
    """Every step of the map rule is reached through the names the clock wraps (a step renamed or
    moved would read 0 ms), and the library is left as it was."""
    spec = importlib.util.spec_from_file_location("bench_runtime", ROOT / "benchmarks" / "bench_runtime.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    before = [getattr(module, attr) for _, module, attr in bench.MAP_STEPS]
    fusion = pretrained().fusion()
    a, b = (read_image(tiny_pairs / f"lytro-01-{x}.png").pixels[None] for x in "AB")
    with bench.step_clock(lambda: None) as spent:
        fusion([a, b])
    assert set(spent) == {name for name, _, _ in bench.MAP_STEPS} and all(seconds > 0 for seconds in spent.values()), spent
    assert [getattr(module, attr) for _, module, attr in bench.MAP_STEPS] == before
