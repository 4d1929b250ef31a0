"""gipc-compare on hand-made run dirs: variants from overrides, hand-computed means, charts, errors, atomic output."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gipc.compare import CompareError, compare, find_run_dirs, main, numeric_key, varying_keys, collect

HEADER = ["image", "method", "QABF", "EN"]


def make_run(root: Path, name: str, overrides: list[str], rows: list[tuple[str, str, float, float]]) -> Path:
    """A run dir as gipc/run.py leaves it: config.yaml, .hydra/overrides.yaml, metrics.csv."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 42\n")
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    with open(run / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return run


@pytest.fixture
def ablation_sweep(tmp_path: Path) -> Path:
    """Three ablation jobs; every job also carries a shared override and a baseline row that must be ignored."""
    sweep = tmp_path / "multiruns" / "2024-01-01_00-00-00"
    for num, (ablation, q) in enumerate([("none", (0.6, 0.8)), ("without_int", (0.5, 0.7)), ("without_gra", (0.4, 0.4))]):
        make_run(
            sweep,
            f"{num}_ablation={ablation}",
            [f"ablation={ablation}", "trainer.fast_dev_run=true"],
            [("x", "gipc", q[0], 7.0), ("y", "gipc", q[1], 7.5), ("x", "average", 0.1, 1.0)],
        )
    (sweep / "multirun.yaml").write_text("{}\n")
    (sweep / ".submitit" / "123").mkdir(parents=True)  # launcher scratch, never a run
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_ablation_sweep_table_has_one_row_per_variant_with_hand_computed_means(ablation_sweep):
    out = compare([ablation_sweep])
    assert out == ablation_sweep / "comparison"
    md = (out / "comparison.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ablation=")]
    assert [line.split(" | ")[0] for line in table] == ["| ablation=none", "| ablation=without_int", "| ablation=without_gra"]
    # QABF mean +- population std over the two images of each run.
    assert "| ablation=none | 2 | 0.7000 ± 0.1000 | 7.2500 ± 0.2500 |" in md
    assert "| ablation=without_gra | 2 | 0.4000 ± 0.0000 |" in md
    assert "trainer.fast_dev_run=true" in md.splitlines()[2]  # named once as shared, not in the variants
    rows = read_csv(out / "comparison.csv")
    assert len(rows) == 6 and {r["method"] for r in rows} == {"gipc"}
    assert {(r["variant"], r["ablation"], r["image"]) for r in rows} >= {("ablation=without_int", "without_int", "y")}
    assert rows[0]["run"] == "0_ablation=none"
    for metric in ("QABF", "EN"):
        with Image.open(out / f"{metric}.png") as png:
            assert png.format == "PNG" and png.size[0] > 100


def test_ratio_sweep_is_a_numeric_curve_and_seeds_pool(tmp_path):
    sweep = tmp_path / "ratio"
    values = {"0.05": [0.2, 0.4], "0.1": [0.5, 0.7], "1.0": [0.3, 0.3]}
    num = 0
    for ratio, (q_seed1, q_seed2) in values.items():
        for seed, q in ((1, q_seed1), (2, q_seed2)):
            make_run(sweep, f"{num}_loss.ratio={ratio}", [f"loss.ratio={ratio}", f"seed={seed}"], [("x", "gipc", q, 1.0)])
            num += 1
    runs, _ = collect([sweep])
    keys = varying_keys(runs)
    assert keys == ["loss.ratio"]  # seed is ignored by default: two seeds pool into one variant
    assert numeric_key(runs, keys) == "loss.ratio"
    out = compare([sweep], tmp_path / "cmp")
    md = (out / "comparison.md").read_text()
    assert "| loss.ratio=0.05 | 2 | 0.3000 ± 0.1000 |" in md
    assert "| loss.ratio=1.0 | 2 | 0.3000 ± 0.0000 |" in md
    assert [r["loss.ratio"] for r in read_csv(out / "comparison.csv")][::2] == ["0.05", "0.1", "1.0"]
    assert varying_keys(runs, ignore=()) == ["loss.ratio", "seed"]


def test_two_varying_keys_one_numeric_gives_a_line_per_other_value(tmp_path):
    sweep = tmp_path / "grid"
    num = 0
    for ablation in ("none", "without_int"):
        for ratio in ("0.1", "0.5"):
            make_run(sweep, f"{num}_x", [f"ablation={ablation}", f"loss.ratio={ratio}"], [("x", "gipc", 0.5, 1.0)])
            num += 1
    runs, _ = collect([sweep])
    assert numeric_key(runs, varying_keys(runs)) == "loss.ratio"
    out = compare([sweep])
    assert "| ablation=without_int,loss.ratio=0.5 | 1 |" in (out / "comparison.md").read_text()


def test_run_dirs_found_in_job_order_not_name_order(tmp_path):
    for num in (10, 2, 0):
        make_run(tmp_path, f"{num}_a", [f"x={num}"], [("i", "gipc", 0.1, 0.1)])
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("step,train/g_loss\n0,1.0\n")  # a CSVLogger file, not a run
    assert [p.name for p in find_run_dirs([tmp_path])] == ["0_a", "2_a", "10_a"]


def test_run_dirs_given_one_by_one_and_failed_runs_reported(tmp_path, capsys):
    a = make_run(tmp_path, "0_ablation=none", ["ablation=none"], [("x", "gipc", 0.2, 1.0)])
    b = make_run(tmp_path, "1_ablation=without_int", ["ablation=without_int"], [("x", "gipc", 0.4, 1.0)])
    failed = tmp_path / "2_ablation=without_gra"
    failed.mkdir()
    (failed / "FAILED").write_text("boom\n")
    out = compare([tmp_path])
    assert "skipped" in capsys.readouterr().err and (out / "comparison.csv").is_file()
    out2 = compare([a, b], tmp_path / "pair")
    assert "| ablation=without_int | 1 | 0.4000 ± 0.0000 |" in (out2 / "comparison.md").read_text()


def test_no_runs_is_one_line_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="no finished runs"):
        compare([tmp_path / "empty"])
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no finished runs") and "\n" not in err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])
    assert "is not a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no comparison folder, no staging leftovers


def test_existing_output_is_refused_unless_overwrite_and_replaced_whole(ablation_sweep):
    out = compare([ablation_sweep])
    (out / "stale.txt").write_text("old\n")
    with pytest.raises(CompareError, match="already exists"):
        compare([ablation_sweep])
    assert (out / "stale.txt").is_file()
    compare([ablation_sweep], overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "comparison.md").is_file()
    assert not [p for p in ablation_sweep.iterdir() if p.name.startswith(".comparison")]


def test_failure_while_writing_leaves_no_output(ablation_sweep, monkeypatch):
    import gipc.compare as module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "plot_metric", broken)
    with pytest.raises(RuntimeError):
        compare([ablation_sweep])
    assert not (ablation_sweep / "comparison").exists()
    assert not [p for p in ablation_sweep.iterdir() if p.name.startswith(".comparison")]


def test_console_script_runs_as_module(ablation_sweep):
    result = subprocess.run(
        [sys.executable, "-m", "gipc.compare", str(ablation_sweep), "--out", str(ablation_sweep / "c")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| ablation=without_gra |" in result.stdout and (ablation_sweep / "c" / "QABF.png").is_file()
    assert math.isclose(float(read_csv(ablation_sweep / "c" / "comparison.csv")[1]["QABF"]), 0.8)
