"""gipc-compare on hand-made run dirs: variants from overrides, hand-computed means across images and seeds,
paired Wilcoxon tests with hand-computed p-values (and scipy's on the same numbers), charts, errors, atomic output."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from scipy.stats import wilcoxon

import gipc.compare as module
from gipc.compare import collect, compare, default_method, find_run_dirs, headline, numeric_key, paired_table, paired_tests, variant_named, varying_keys
from gipc.cli.compare import main
from gipc.errors import CompareError

HEADER = ["image", "method", "QABF", "EN"]


def make_run(root: Path, name: str, overrides: list[str], rows: list[tuple[str, str, float, float]]) -> Path:
    """A run dir as gipc/run.py leaves it: config.yaml (with the seed a ``seed=`` override sets), .hydra/overrides.yaml, metrics.csv."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    seed = next((o.partition("=")[2] for o in overrides if o.startswith("seed=")), "42")
    (run / "config.yaml").write_text(f"seed: {seed}\n")
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    write_metrics(run / "metrics.csv", rows)
    return run


def write_metrics(path: Path, rows: list[tuple[str, str, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


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
    # the paper's table: Q^AB/F 0.7 best, 0.6 second; EN equal in every variant, so unmarked
    tex = (out / "comparison.tex").read_text().splitlines()
    assert tex[tex.index("\\midrule") + 1 : tex.index("\\bottomrule")] == [
        r"ablation=none & \textbf{0.7000} & 7.2500 \\",
        r"ablation=without\_int & \underline{0.6000} & 7.2500 \\",
        r"ablation=without\_gra & 0.4000 & 7.2500 \\",
    ]


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
    assert numeric_key(runs, ["loss.ratio", "seed"]) is None  # two numeric keys: no one x axis, a point per variant


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


def test_a_job_first_started_by_a_resumed_sweep_is_the_same_arm_as_its_siblings(tmp_path):
    # What `-m ablation=none,without_int resume=<sweep>` leaves: job 1 never ran before the kill, so its
    # record carries resume=; job 0 kept the record of the first launch.
    sweep = tmp_path / "sweep"
    make_run(sweep, "0_ablation=none", ["ablation=none", "logger=csv"], [("x", "gipc", 0.6, 7.0)])
    make_run(sweep, "1_ablation=without_int", ["ablation=without_int", "logger=csv", f"resume={sweep}"], [("x", "gipc", 0.5, 7.0)])
    runs, _ = collect([sweep])
    assert varying_keys(runs) == ["ablation"]
    md = (compare([sweep], reference="ablation=none") / "comparison.md").read_text()
    assert "| ablation=without_int | 1 | 0.5000 ± 0.0000 |" in md and "resume" not in md


def test_added_overrides_are_named_by_their_key_and_image_names_stay_text(tmp_path):
    sweep = tmp_path / "sweep"
    for num, value in enumerate(("1", "2")):
        make_run(sweep, f"{num}_x", [f"+loss.extra={value}", "++trainer.x=3"], [("01", "gipc", 0.5, 7.0), ("10", "gipc", 0.6, 7.0)])
    out = compare([sweep])
    assert [(r["variant"], r["image"]) for r in read_csv(out / "comparison.csv")] == [
        ("loss.extra=1", "01"), ("loss.extra=1", "10"), ("loss.extra=2", "01"), ("loss.extra=2", "10")
    ]
    assert (out / "comparison.md").read_text().splitlines()[2] == "Overrides shared by every run: `trainer.x=3`"


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
    killed = tmp_path / "3_ablation=content_only"
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "config.yaml").write_text("seed: 42\n")
    for name in ("epoch000-step0000300.ckpt", "epoch001-step0000600.ckpt", "last.ckpt"):
        (killed / "checkpoints" / name).write_bytes(b"")
    unstarted = tmp_path / "4_ablation=paper_without_int"
    unstarted.mkdir()
    (unstarted / "config.yaml").write_text("seed: 42\n")
    late = make_run(tmp_path, "5_ablation=paper_without_gra", ["ablation=paper_without_gra"], [("x", "gipc", 0.9, 1.0)])
    (late / "FAILED").write_text("W&B table upload failed\n")  # crashed after its table: --status says failed
    trained = tmp_path / "6_ablation=none,test=false"
    (trained / "checkpoints").mkdir(parents=True)
    (trained / "config.yaml").write_text("seed: 42\n")
    (trained / "DONE").write_text("2026-12-07T02:40:00+00:00\n")  # trained to its end; test=false wrote no table
    out = compare([tmp_path])
    err = capsys.readouterr().err
    assert (out / "comparison.csv").is_file()
    assert f"skipped {failed}: failed (see its FAILED file), no metrics" in err.splitlines()
    assert f"skipped {killed}: not finished (last checkpoint at step 600)" in err.splitlines()
    assert f"skipped {unstarted}: not finished (no checkpoint yet)" in err.splitlines()
    assert f"skipped {late}: failed after writing its table (see its FAILED file); resume it to finish" in err.splitlines()
    assert f"skipped {trained}: done without a test stage (test=false), no metrics" in err.splitlines()
    assert not any(line.startswith(f"skipped {trained}: not finished") for line in err.splitlines())
    assert "paper_without_gra" not in (out / "comparison.md").read_text()
    out2 = compare([a, b], tmp_path / "pair")
    assert "| ablation=without_int | 1 | 0.4000 ± 0.0000 |" in (out2 / "comparison.md").read_text()
    assert "| default | 1 | 0.2000 ± 0.0000 |" in (compare([a], tmp_path / "one") / "comparison.md").read_text()  # nothing varies


def test_runs_done_without_a_test_stage_have_nothing_to_compare_and_the_error_says_how_to_test_one(tmp_path, capsys):
    trained = tmp_path / "0_ablation=none,test=false"
    (trained / "checkpoints").mkdir(parents=True)
    (trained / "config.yaml").write_text("seed: 42\n")
    (trained / "DONE").write_text("2026-12-07T02:40:00+00:00\n")
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gipc-compare: error: no run under {tmp_path} has a test table: 1 done without a test stage (test=false); its own "
        f"command with test=true plus \"resume='<run dir>'\" tests one (quoted: a sweep job's dir name holds commas), e.g. \"resume='{trained}'\""
    )


def test_a_gipc_eval_folder_given_as_a_path_compares_its_methods_paired_by_image(tmp_path):
    """gipc-eval's --out folder holds metrics.csv without config.yaml: its methods become the
    variants, paired by image. Five images, every one higher under "ours": the exact two-sided p of
    Wilcoxon's test is 2 / 2^5. A table under a run dir (run/lytro/metrics.csv) stays out of a sweep."""
    scored = tmp_path / "lytro-eval"
    q_theirs = [0.70, 0.72, 0.68, 0.75, 0.71]
    write_metrics(scored / "metrics.csv", [(f"p{k}", method, q + bonus, 7.0) for k, q in enumerate(q_theirs) for method, bonus in (("ours", 0.01 * (k + 1)), ("theirs", 0.0))])
    assert main([str(scored), "--method", "ours,theirs", "--reference", "method=theirs"]) == 0
    (row,) = [r for r in read_csv(scored / "comparison" / "paired.csv") if r["metric"] == "QABF"]
    assert row["variant"] == "method=ours" and int(row["pairs"]) == 5
    assert float(row["mean_difference"]) == pytest.approx(0.03) and float(row["p_value"]) == pytest.approx(2 / 2**5)
    # without --method, every method the folder scores (it has no gipc row; run dirs keep gipc)
    assert main([str(scored), "--reference", "method=theirs", "--out", str(tmp_path / "all")]) == 0
    assert read_csv(tmp_path / "all" / "paired.csv") == read_csv(scored / "comparison" / "paired.csv")
    # a folder of methods, not runs: counted as such, and no overrides to share
    assert (tmp_path / "all" / "comparison.md").read_text().splitlines()[:3] == [
        "# Comparison of 2 methods (`ours`, `theirs`) of 1 gipc-eval folder, table `metrics.csv`", "", "## Paired test against `method=theirs`"
    ]
    run = make_run(tmp_path / "sweep", "0_seed=1", ["seed=1"], [("x", "gipc", 0.6, 7.0)])
    write_metrics(run / "lytro" / "metrics.csv", [("x", "gipc", 0.1, 7.0)])
    assert find_run_dirs([tmp_path / "sweep"]) == [run]
    assert default_method([scored]) == "ours,theirs" and default_method([run]) == default_method([scored, run]) == "gipc"
    runs, _ = collect([run, scored], "gipc,ours")  # a run's rules beside the folder's methods
    assert headline(runs, "gipc,ours") == "1 run and 1 gipc-eval folder x 2 methods (`gipc`, `ours`)"
    assert headline(collect([run])[0], "gipc") == "1 run, method `gipc`"


def test_gipc_eval_folders_scoring_one_method_are_told_apart_by_folder(tmp_path):
    """Two gipc-eval folders that both score "ours" (two pair sets, or two versions) merged into one
    variant, each image counted twice; folders of different methods stay paired by image."""
    for folder, method, q in (("lytro", "ours", 0.76), ("grayscale", "ours", 0.72), ("theirs-lytro", "theirs", 0.75)):
        write_metrics(tmp_path / folder / "metrics.csv", [(f"p{k}", method, q, 7.0) for k in range(3)])
    runs, _ = collect([tmp_path / "lytro", tmp_path / "grayscale"], "ours")
    assert [(run.overrides, len(run.rows)) for run in runs] == [({"folder": "grayscale"}, 3), ({"folder": "lytro"}, 3)]
    runs, _ = collect([tmp_path / "lytro", tmp_path / "theirs-lytro"], "ours,theirs")
    assert sorted(str(run.overrides) for run in runs) == ["{'method': 'ours'}", "{'method': 'theirs'}"]
    for run in ("a", "b"):  # same names in two places: the paths tell them apart
        write_metrics(tmp_path / run / "lytro" / "metrics.csv", [("p0", "ours", 0.7, 7.0)])
    runs, _ = collect([tmp_path / "a" / "lytro", tmp_path / "b" / "lytro"], "ours")
    assert sorted(run.overrides["folder"] for run in runs) == ["a/lytro", "b/lytro"]


def test_a_bare_reference_names_the_one_variant_holding_it():
    variants = ["ablation=none,ratio=0.1", "ablation=none,ratio=0.5", "ablation=without_int,ratio=0.1"]
    assert variant_named("without_int", variants) == "ablation=without_int,ratio=0.1"
    assert variant_named("none", variants) == "none"  # two hold it: left for the paired test to refuse, listing them
    assert variant_named("ratio=0.5", variants) == "ratio=0.5" and variant_named(variants[0], variants) == variants[0]


def test_no_runs_is_one_line_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="no finished runs"):
        compare([tmp_path / "empty"])
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gipc-compare: error: no finished runs") and "\n" not in err
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no comparison folder, no staging leftovers


def test_an_interrupted_gipc_eval_folder_is_named_with_how_to_finish_it(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "metrics.partial.jsonl").write_text('{"header": {}}\n')  # what an interrupted gipc-eval --out leaves
    with pytest.raises(CompareError, match=rf"; {folder} holds an interrupted gipc-eval: its own command plus --resume finishes it$"):
        compare([folder])
    write_metrics(folder / "metrics.csv", [("x", "gipc", 0.6, 7.0)])  # an earlier run's tables, now being redone with --overwrite
    assert any(note == f"{folder}: an interrupted gipc-eval (metrics.partial.jsonl); its own command plus --resume finishes it" for note in collect([folder])[1])


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
    with pytest.raises(RuntimeError, match="disk full"):
        compare([ablation_sweep])
    assert not (ablation_sweep / "comparison").exists()
    assert not [p for p in ablation_sweep.iterdir() if p.name.startswith(".comparison")]


def test_console_script_runs_as_module(ablation_sweep):
    result = subprocess.run(
        [sys.executable, "-m", "gipc.cli.compare", str(ablation_sweep), "--out", str(ablation_sweep / "c")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| ablation=without_gra |" in result.stdout and (ablation_sweep / "c" / "QABF.png").is_file()
    assert math.isclose(float(read_csv(ablation_sweep / "c" / "comparison.csv")[1]["QABF"]), 0.8)



def test_gipc_compare_starts_without_torch_and_the_metrics() -> None:
    """A sweep's --status and --help read files and print: torch and torchmetrics took 2 of their 2.8 s
    (benchmarks/README.md); only the LaTeX table's symbols need the metrics."""
    heavy = ("torch", "torchmetrics", "lightning", "gipc.metrics")
    code = f"import sys, gipc.cli.compare; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


# ---------------------------------------------------------------- seeds and the paired test
#: Q^AB/F per (seed, image) of the reference arm; each seed holds out other images, as data=photos does.
REFERENCE = {1: {"x": 0.50, "y": 0.60, "z": 0.70}, 2: {"u": 0.40, "v": 0.50, "w": 0.60}}
#: Differences from the reference in the order x, y, z, u, v, w.
SHIFTS = {
    "without_int": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06],  # all up: ranks 1..6 all positive
    "without_gra": [-0.01, 0.02, 0.03, -0.04, 0.05, 0.06],  # ranks 1 and 4 negative
}


@pytest.fixture
def seeded_study(tmp_path: Path) -> Path:
    """Three arms x seeds 1, 2 (seed outermost, as the study presets order the jobs); EN equal in every arm."""
    sweep = tmp_path / "study"
    num = 0
    for seed in (1, 2):
        for arm in ("none", "without_int", "without_gra"):
            shifts = [0.0] * 6 if arm == "none" else SHIFTS[arm]
            images = REFERENCE[seed].items()
            rows = [(image, "gipc", q + shifts[3 * (seed - 1) + i], 7.0) for i, (image, q) in enumerate(images)]
            make_run(sweep, f"{num}_ablation={arm}", [f"ablation={arm}", f"seed={seed}"], rows)
            num += 1
    return sweep


def table_line(md: str, section: str, variant: str) -> str:
    """The row of ``variant`` in the markdown section whose heading starts with ``section``."""
    body = md.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    (line,) = [line for line in body.splitlines() if line.startswith(f"| {variant} |")]
    return line


def test_seed_statistics_are_the_mean_and_std_of_the_runs_means(seeded_study):
    out = compare([seeded_study])
    md = (out / "comparison.md").read_text()
    # Run means: none 0.6 (seed 1) and 0.5 (seed 2); without_int 0.62 and 0.55. Population std of two = half the gap.
    assert table_line(md, "Across seeds", "ablation=none") == "| ablation=none | 2 | 0.5500 ± 0.0500 | 7.0000 ± 0.0000 |"
    assert table_line(md, "Across seeds", "ablation=without_int").startswith("| ablation=without_int | 2 | 0.5850 ± 0.0350 |")
    # Across images: the six values of none pooled over both seeds.
    values = [0.5, 0.6, 0.7, 0.4, 0.5, 0.6]
    std = math.sqrt(sum((v - 0.55) ** 2 for v in values) / 6)
    assert table_line(md, "Across images", "ablation=none") == f"| ablation=none | 6 | 0.5500 ± {std:.4f} | 7.0000 ± 0.0000 |"
    assert "Paired test" not in md and not (out / "paired.csv").exists()
    assert md.splitlines()[2] == "No override is shared by every run."  # the seeds differ: seed=1 is not shared
    runs = read_csv(out / "runs.csv")
    assert [(r["variant"], r["seed"]) for r in runs][:2] == [("ablation=none", "1"), ("ablation=without_int", "1")]
    assert math.isclose(float(runs[4]["QABF"]), 0.55) and "image" not in runs[0]
    assert {r["seed"] for r in read_csv(out / "comparison.csv")} == {"1", "2"}


def test_wilcoxon_drops_zero_differences_and_is_exact_for_few_pairs() -> None:
    # Zeros dropped (Wilcoxon's own rule): 1, 2, -3, 4, 5 rank 1..5, W+ = 12, W- = 3, statistic min = 3.
    # Exact null for n = 5: 5 of the 32 sign patterns give W- <= 3 ({}, {1}, {2}, {3}, {1, 2}), so p = 2 * 5/32.
    assert module.wilcoxon([0.0, 0.0, 1.0, 2.0, -3.0, 4.0, 5.0]) == (3.0, pytest.approx(0.3125))
    assert module.wilcoxon([0.0, 0.0]) == (0.0, 1.0) and all(map(math.isnan, module.wilcoxon([])))


def test_paired_wilcoxon_against_the_reference_by_image_and_seed(seeded_study):
    out = compare([seeded_study], reference="ablation=none")
    paired = {(r["variant"], r["metric"]): r for r in read_csv(out / "paired.csv")}
    # a bare value names the one variant holding it
    bare = compare([seeded_study], reference="none", out=seeded_study / "bare", overwrite=True)
    assert read_csv(bare / "paired.csv") == read_csv(out / "paired.csv")
    assert set(paired) == {(v, m) for v in ("ablation=without_int", "ablation=without_gra") for m in ("QABF", "EN")}
    up = paired["ablation=without_int", "QABF"]
    # Six positive differences with distinct sizes: W = 0, exact two-sided p = 2 / 2^6.
    assert (up["pairs"], float(up["statistic"]), float(up["p_value"])) == ("6", 0.0, 2 / 64)
    assert math.isclose(float(up["mean_difference"]), 0.21 / 6)
    mixed = paired["ablation=without_gra", "QABF"]
    # Negative ranks 1 + 4 = 5; subsets of {1..6} with rank sum <= 5: 10 of 64, so p = 2 * 10 / 64.
    assert float(mixed["statistic"]) == 5.0 and math.isclose(float(mixed["p_value"]), 20 / 64)
    reference = [q for seed in (1, 2) for q in REFERENCE[seed].values()]
    for arm, row in (("without_int", up), ("without_gra", mixed)):
        scipy_result = wilcoxon([q + d for q, d in zip(reference, SHIFTS[arm])], reference)
        assert math.isclose(float(row["p_value"]), scipy_result.pvalue) and float(row["statistic"]) == scipy_result.statistic
    same = paired["ablation=without_int", "EN"]  # every difference 0: nothing to rank, p = 1
    assert (float(same["statistic"]), float(same["p_value"]), float(same["mean_difference"])) == (0.0, 1.0, 0.0)
    md = (out / "comparison.md").read_text()
    assert table_line(md, "Paired test against `ablation=none`", "ablation=without_int") == (
        "| ablation=without_int | 6 | +0.0350 (p=0.0312) | +0.0000 (p=1) |"
    )
    assert "| ablation=none |" not in md.split("## Paired test", 1)[1].split("## Across images")[0]


def test_pairs_are_image_and_seed_and_unmatched_images_drop_out():
    rows = [
        {"variant": "ref", "image": "x", "seed": 1, "Q": 0.5},
        {"variant": "ref", "image": "x", "seed": 2, "Q": 0.9},
        {"variant": "arm", "image": "x", "seed": 1, "Q": 0.7},
        {"variant": "arm", "image": "x", "seed": 2, "Q": 0.8},
        {"variant": "arm", "image": "y", "seed": 1, "Q": 0.1},  # no reference value for (y, 1)
        {"variant": "arm", "image": "x", "seed": 3, "Q": 0.1},  # nor for seed 3
    ]
    (result,) = paired_tests(rows, "ref", ["Q"])
    # x at seed 1 meets x at seed 1 (+0.2), x at seed 2 meets x at seed 2 (-0.1); averaging seeds first would leave one pair.
    assert result["pairs"] == 2 and math.isclose(result["mean_difference"], 0.05)
    assert paired_tests(rows[:2], "ref", ["Q"]) == []  # the reference alone: nothing to test


def test_a_missing_value_drops_its_pair_and_a_variant_without_pairs_shows_blank_cells():
    reference, arm = [0.50, 0.60, 0.70, 0.40, 0.55], [0.52, math.nan, 0.73, 0.44, 0.56]  # NaN: undefined on that image
    rows = [{"variant": variant, "image": f"i{i}", "seed": seed, "Q": q}
            for variant, seed, values in (("ref", 1, reference), ("arm", 1, arm), ("other", 2, reference)) for i, q in enumerate(values)]
    results = paired_tests(rows, "ref", ["Q"])
    tested, untested = results
    # Four pairs left, +0.02, +0.04, +0.03, +0.01: all positive, W = 0, exact two-sided p = 2 / 2^4.
    assert (tested["variant"], tested["pairs"], tested["statistic"]) == ("arm", 4, 0.0)
    assert math.isclose(tested["p_value"], 2 / 16) and math.isclose(tested["mean_difference"], 0.025)
    # "other" ran at seed 2 only, which the reference never did: nothing to pair, nothing to report.
    assert (untested["variant"], untested["pairs"]) == ("other", 0)
    assert all(math.isnan(untested[k]) for k in ("mean_difference", "statistic", "p_value"))
    assert paired_table(results, ["Q"]).splitlines()[2:] == ["| arm | 4 | +0.0250 (p=0.125) |", "| other | 0 |  |"]


def test_reference_errors_are_one_line_and_write_nothing(seeded_study, capsys):
    assert main([str(seeded_study), "--reference", "nothing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gipc-compare: error: --reference 'nothing' is not a variant here; the variants are: ablation=none, ablation=without_int, ablation=without_gra"
    make_run(seeded_study, "6_ablation=none", ["ablation=none", "seed=1"], [("x", "gipc", 0.1, 7.0)])  # a second seed-1 run
    with pytest.raises(CompareError, match="ablation=none has two values of QABF for image x at seed 1"):
        compare([seeded_study], reference="ablation=none")
    assert not (seeded_study / "comparison").exists()
    assert "| ablation=none | 3 |" in (compare([seeded_study]) / "comparison.md").read_text()  # without a test: 3 runs pool


def test_charts_show_the_spread_across_seeds_when_every_variant_has_seeds(seeded_study, ablation_sweep, monkeypatch):
    drawn = []
    monkeypatch.setattr(module, "plot_metric", lambda rows, metric, keys, x_key, path, spread: drawn.append((len(rows), spread)))
    compare([seeded_study])
    assert drawn == [(6, "seeds"), (6, "seeds")]  # one point per run (3 arms x 2 seeds), for QABF and EN
    drawn.clear()
    compare([ablation_sweep])  # one run per arm: the spread over its images
    assert drawn == [(6, "test images"), (6, "test images")]
    drawn.clear()
    shutil.rmtree(seeded_study / "5_ablation=without_gra")  # one arm with one seed: its images, for every arm
    md = (compare([seeded_study], overwrite=True) / "comparison.md").read_text()
    assert drawn == [(15, "test images"), (15, "test images")]
    assert table_line(md, "Across seeds", "ablation=without_gra").startswith("| ablation=without_gra | 1 | ")  # the others still have seeds


def test_arm_chart_spans_the_values_so_small_differences_show(tmp_path, monkeypatch):
    """Arms 0.003 apart near 0.67: an axis from zero would draw them as equal bars."""
    import matplotlib.figure

    limits = []
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (limits.append(fig.axes[0].get_ylim()), savefig(fig, *a, **k)))
    rows = [{"variant": f"ablation={arm}", "ablation": arm, "QABF": value}
            for arm, values in (("none", (0.669, 0.671)), ("without_gra", (0.672, 0.674))) for value in values]
    module.plot_metric(rows, "QABF", ["ablation"], None, tmp_path / "QABF.png", spread="seeds")
    low, high = limits[0]
    assert 0.66 < low < 0.669 and 0.674 < high < 0.68
    assert (tmp_path / "QABF.png").is_file()


def test_seeded_ratio_chart_is_drawn_with_error_bars(tmp_path):
    sweep = tmp_path / "ratio"
    for num, (ratio, seed) in enumerate((r, s) for s in (1, 2) for r in ("0.05", "0.5")):
        make_run(sweep, f"{num}_loss.ratio={ratio}", [f"loss.ratio={ratio}", f"seed={seed}"], [("x", "gipc", 0.1 * seed, 1.0)])
    out = compare([sweep], reference="loss.ratio=0.05")
    with Image.open(out / "QABF.png") as png:
        assert png.format == "PNG" and png.size[0] > 100
    assert table_line((out / "comparison.md").read_text(), "Across seeds", "loss.ratio=0.5") == (
        "| loss.ratio=0.5 | 2 | 0.1500 ± 0.0500 | 1.0000 ± 0.0000 |"
    )


def test_another_table_of_the_run_dirs_such_as_lytro_scores(seeded_study, capsys):
    # gipc-eval --fused gipc=<run>/lytro-fused --out <run>/lytro writes <run>/lytro/metrics.csv.
    jobs = sorted(p for p in seeded_study.iterdir() if p.is_dir())
    for job in jobs[:-1]:
        write_metrics(job / "lytro" / "metrics.csv", [("lytro-01", "gipc", 0.7, 7.5), ("lytro-01", "gff", 0.75, 7.6)])
    out = compare([seeded_study], seeded_study / "lytro-comparison", metrics_table="lytro/metrics.csv")
    assert f"{jobs[-1]}: no lytro/metrics.csv" in capsys.readouterr().err
    rows = read_csv(out / "comparison.csv")
    assert len(rows) == 5 and {r["image"] for r in rows} == {"lytro-01"}
    assert "table `lytro/metrics.csv`" in (out / "comparison.md").read_text().splitlines()[0]
    both = compare([seeded_study], seeded_study / "both", method="gipc,gff", metrics_table="lytro/metrics.csv")
    assert capsys.readouterr().err.count(f"{jobs[-1]}: no lytro/metrics.csv") == 1  # once per run dir, not per method
    assert len(read_csv(both / "comparison.csv")) == 10
    capsys.readouterr()
    assert main([str(seeded_study), "--metrics", "lytro/metrics.csv", "--out", str(seeded_study / "command")]) == 0  # the same from the command
    assert {r["image"] for r in read_csv(seeded_study / "command" / "comparison.csv")} == {"lytro-01"}
    # a table no run dir holds is a misspelt --metrics, not runs still to score
    capsys.readouterr()
    assert main([str(seeded_study), "--metrics", "lytro/metric.csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"gipc-compare: error: --metrics lytro/metric.csv: none of the {len(jobs)} run dirs under {seeded_study} holds it; "
        "the tables there: lytro/metrics.csv, metrics.csv"
    )


def test_a_method_no_table_has_is_one_line_naming_the_methods_there(tmp_path, capsys):
    """A misspelt method is not a run still to be scored: refused, not left out of the comparison."""
    scored = tmp_path / "eval"
    write_metrics(scored / "metrics.csv", [("p1", "ours", 0.7, 7.0), ("p1", "gff", 0.6, 7.0)])
    assert main([str(scored), "--method", "ours,gfff"]) == 2
    assert capsys.readouterr().err.strip() == "gipc-compare: error: --method gfff: no metrics.csv here has rows of it; the methods there: gff, ours"
    assert sorted(p.name for p in scored.iterdir()) == ["metrics.csv"]


def test_several_methods_of_one_run_become_paired_variants(tmp_path):
    """The fusion rules of one run (rows gipc and gipc+map) compared as arms, paired by (image, seed)."""
    study = tmp_path / "rules"
    for seed, (x, y) in ((1, (0.60, 0.70)), (2, (0.50, 0.65))):
        rows = [("x", "gipc", x, 7.0), ("y", "gipc", y, 7.0), ("x", "gipc+map", x + 0.1, 7.0), ("y", "gipc+map", y + 0.05, 7.0)]
        make_run(study, f"seed{seed}", [f"seed={seed}"], rows)
    out = compare([study], method="gipc,gipc+map", reference="method=gipc")
    md = (out / "comparison.md").read_text()
    assert table_line(md, "Across seeds", "method=gipc") == "| method=gipc | 2 | 0.6125 ± 0.0375 | 7.0000 ± 0.0000 |"
    (row,) = [r for r in read_csv(out / "paired.csv") if r["metric"] == "QABF"]
    # four pairs (2 images x 2 seeds), differences +0.1, +0.05, +0.1, +0.05: all positive, ties in rank
    assert row["variant"] == "method=gipc+map" and row["pairs"] == "4" and math.isclose(float(row["mean_difference"]), 0.075)
    assert float(row["statistic"]) == 0.0


def test_status_lists_every_job_of_the_sweep_as_done_failed_partial_or_not_started(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n    params:\n      seed: 1,2\n"
        "  overrides:\n    task: ['ablation=none,without_int', 'logger=csv']\n"
    )
    make_run(sweep, "0_ablation=none", ["seed=1", "ablation=none"], [("x", "gipc", 0.5, 7.0)])
    partial = sweep / "1_ablation=without_int"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "config.yaml").write_text("seed: 1\n")
    (partial / "checkpoints" / "epoch000-step0000300.ckpt").write_bytes(b"")
    (sweep / "2_ablation=none").mkdir()
    (sweep / "2_ablation=none" / "FAILED").write_text("boom\n")
    main([str(sweep), "--status"])
    lines = capsys.readouterr().out.splitlines()
    jobs = [
        "| 0 | seed=1 ablation=none logger=csv | done |",
        "| 1 | seed=1 ablation=without_int logger=csv | partial: last checkpoint at step 300 |",
        "| 2 | seed=2 ablation=none logger=csv | failed (see its FAILED file) |",
        "| 3 | seed=2 ablation=without_int logger=csv | not started |",
    ]
    assert lines[2:] == jobs
    other = tmp_path / "other"
    make_run(other, "0_ablation=none", ["ablation=none"], [("x", "gipc", 0.5, 7.0)])
    (other / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['ablation=none']\n")
    main([str(sweep), str(other), "--status"])
    lines = capsys.readouterr().out.splitlines()
    header = ["| job | overrides | state |", "|---|---|---|"]
    assert lines == [str(sweep), *header, *jobs, "", str(other), *header, "| 0 | ablation=none | done |"]
    # a sweeper that chooses its trials as they run (the Optuna plugin's own writes no multirun.yaml): the trials started so far
    (sweep / "multirun.yaml").unlink()
    assert main([str(sweep), "--status"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == [
        "| 0 | seed=1 ablation=none | done |",  # its own record of the overrides it ran with
        "| 1 |  | partial: last checkpoint at step 300 |",  # killed before Hydra recorded them
        "| 2 |  | failed (see its FAILED file) |",
    ]


def test_status_tells_job_1_from_job_10_and_names_the_states_before_a_first_checkpoint(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['a=0,1,2,3,4,5,6,7,8,9,10']\n")
    (sweep / "0_a=0" / ".hydra").mkdir(parents=True)  # killed while Hydra wrote its record
    (sweep / "2_a=2").mkdir()
    (sweep / "2_a=2" / "config.yaml").write_text("seed: 42\n")  # killed before its first checkpoint
    make_run(sweep, "10_a=10", ["a=10"], [("x", "gipc", 0.5, 7.0)])  # job 1 never started
    (sweep / "5_a=5").mkdir()
    (sweep / "5_a=5" / "config.yaml").write_text("seed: 42\n")
    (sweep / "5_a=5" / "DONE").write_text("2026-12-07T02:40:00+00:00\n")  # trained to its end with test=false
    assert main([str(sweep), "--status"]) == 0
    states = {0: "started, no config yet", 2: "no checkpoint yet", 5: "done, without a test stage (test=false)", 10: "done"}
    assert capsys.readouterr().out.splitlines()[2:] == [f"| {n} | a={n} | {states.get(n, 'not started')} |" for n in range(11)]
