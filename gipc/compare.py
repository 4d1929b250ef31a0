"""Comparing finished runs (the ``gipc-compare`` command is :mod:`gipc.cli.compare`).

Every run dir (one holding ``config.yaml`` and ``metrics.csv``) found under the given paths, and
every ``gipc-eval`` output folder given as a path (``metrics.csv`` without ``config.yaml``),
contributes the per-image rows of one method (the model, ``gipc``, by default; several comma-separated
methods, e.g. the fusion rules ``gipc,gipc+map``, each become a variant ``method=<name>``) from one table
(``--metrics``: the test stage's ``metrics.csv``, or e.g. ``lytro/metrics.csv`` that ``gipc-eval``
wrote into the run dir), the command-line overrides that made it (``.hydra/overrides.yaml``) and
its seed (``config.yaml``). A run's *variant* (an arm of a study) is its override string without
the overrides every run shares and without the ignored keys (``seed``), so
``-m seed=1,2 ablation=none,without_int`` gives two variants of two runs each.

Statistics, each for its own question:

- across images: mean ± std over every image row of the variant's runs (how images vary);
- across seeds: mean ± std of the runs' own means (how training varies), when a variant has
  several runs;
- with ``--reference``: a paired Wilcoxon signed-rank test (two-sided, scipy's defaults: zero
  differences dropped, exact for small samples without ties) of each variant against the
  reference variant, per metric. Values are paired by **(image, seed)**: a variant's image at
  seed s meets the reference's same image at the same seed, so the shared seed (same data
  split, same draws) cancels and held-out sets that differ between seeds pair correctly; seeds
  are not averaged first. The pairs are not independent samples of training noise (the images
  of one run share its weights), so read the p-value beside the across-seeds std.

Std is the population std, as everywhere in gipc (with two seeds, mean ± std spans exactly the
two runs' means). Writes, to a new folder (default ``<dir>/comparison``), atomically:
``comparison.csv`` (every image row with its run, seed, variant and swept values), ``runs.csv``
(each run's means), ``paired.csv`` (with ``--reference``: one row per variant and metric with
its pairs, mean difference, statistic and p-value), ``comparison.md`` (the tables), ``comparison.tex``
(the means over images as a paper's LaTeX table, the best of each metric in bold) and
``<metric>.png`` per metric: a line over the swept value when one numeric key varies (e.g.
``loss.ratio``), else one point per variant (e.g. the ablation), with std error bars across seeds
when every variant has several runs, else across images. Works offline from the run dirs alone.
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from gipc.errors import CompareError
from gipc.files import atomic_path, replace_dir, staging_dir, write_text
from gipc.report import PARTIAL, Row, csv_text, latex_table, markdown_table, numeric_columns, summarize
from gipc.runstate import DONE, FAILED, UNTESTED, job_order, progress, recorded_overrides, running, unfinished_runs, untested

DEFAULT_IGNORE = ("seed",)
"""Override keys left out of variants: runs that differ only in them pool into one mean ± std."""
DEFAULT_METRICS = "metrics.csv"
"""The table training's test stage writes into every run dir."""


@dataclass(frozen=True)
class Run:
    """One finished run: its dir, command-line overrides (key -> value), seed and per-image metric rows."""

    path: Path
    overrides: dict[str, str]
    seed: object
    rows: list[dict[str, object]]


def eval_folder(path: Path, metrics: str = DEFAULT_METRICS) -> bool:
    """``path`` is a ``gipc-eval --out`` folder: a metrics table without a run's ``config.yaml``."""
    return (path / metrics).is_file() and not (path / "config.yaml").is_file()


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run dirs at or under ``paths`` (hidden dirs such as ``.submitit`` skipped), in sweep job order;
    a path given that holds ``metrics.csv`` but no ``config.yaml`` (``gipc-eval --out``'s folder)
    counts as one run of no overrides and no seed, whose methods ``--method`` makes the variants."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.is_dir():
            raise CompareError(f"{path} is not a directory; give a multirun dir, run dirs or a gipc-eval folder")
        if eval_folder(path):
            found.setdefault(path)
            continue
        for csv_path in sorted(path.rglob("metrics.csv")):
            run = csv_path.parent
            hidden = any(part.startswith(".") for part in run.relative_to(path).parts)
            if not hidden and (run / "config.yaml").is_file():
                found.setdefault(run)
    return sorted(found, key=job_order)


def read_overrides(run_dir: Path) -> dict[str, str]:
    """``key -> value`` of the run's command-line overrides (``+``/``++`` prefixes dropped, ``resume``
    left out: :func:`~gipc.runstate.launch_override`); {} if unrecorded."""
    overrides: dict[str, str] = {}
    for item in recorded_overrides(run_dir):
        key, _, value = item.partition("=")
        overrides[key.lstrip("+")] = value
    return overrides


def read_seed(run_dir: Path) -> object:
    """The seed the run trained with, from its resolved ``config.yaml`` (None if it names none or has none)."""
    config = run_dir / "config.yaml"
    return (yaml.safe_load(config.read_text()) or {}).get("seed") if config.is_file() else None


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def read_table(table: Path) -> list[dict[str, str]]:
    """A metrics table's rows (``metrics.csv`` of a run or of gipc-eval), as the file holds them."""
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle))


def method_rows(rows: Sequence[Mapping[str, str]], method: str) -> list[dict[str, object]]:
    """The rows of ``method`` in a table's rows, numbers as floats."""
    return [
        {key: value if key in ("image", "method") else _number(value) for key, value in row.items()}
        for row in rows
        if row.get("method") == method
    ]


def collect(paths: Sequence[Path], method: str = "gipc", metrics: str = DEFAULT_METRICS) -> tuple[list[Run], list[str]]:
    """Every finished run under ``paths`` with rows of ``method`` in its table ``metrics``, and one note per run dir skipped.

    ``method`` may list several methods of one table, comma-separated (e.g. ``gipc,gipc+map``: the
    fusion rules of a run): each run then contributes one :class:`Run` per method, told apart by a
    ``method=<name>`` override, so the rules become variants paired on the same images and seeds.
    """
    methods = [m.strip() for m in method.split(",") if m.strip()]
    runs, skipped, trained = [], [], []  # trained: done without a test table
    there: set[str | None] = set()  # the methods of every table read, failed runs' too
    read_any = False
    run_dirs = find_run_dirs(paths)
    for run_dir in run_dirs:
        table = run_dir / metrics
        table_rows = read_table(table) if table.is_file() else None
        if table_rows is not None:
            read_any = True
            there.update(row.get("method") for row in table_rows)
        if (run_dir / FAILED).is_file():  # as --status and a resumed sweep see it: not done
            skipped.append(f"{run_dir}: failed after writing its table (see its FAILED file); resume it to finish")
            continue
        if table_rows is None:
            skipped.append(f"{run_dir}: no {metrics} (not scored on that set yet)")
            continue
        for name in methods:
            rows = method_rows(table_rows, name)
            tag = {"method": name} if len(methods) > 1 else {}
            if rows:
                runs.append(Run(run_dir, {**read_overrides(run_dir), **tag}, read_seed(run_dir), rows))
            else:
                skipped.append(f"{run_dir}: no rows of method {name!r} in {metrics}")
    for path in paths:
        for failed in sorted(path.rglob(FAILED)):
            if not (failed.parent / "metrics.csv").is_file():
                skipped.append(f"{failed.parent}: failed (see its FAILED file), no metrics")
        skipped += [f"{run}: not finished ({'running now, ' * running(run)}{progress(step)})" for run, step in unfinished_runs(path)]
        trained += [done.parent for done in sorted(path.rglob(DONE)) if untested(done.parent)]
    skipped += [f"{run}: done {UNTESTED}, no metrics" for run in trained]
    if read_any and (absent := [name for name in methods if name not in there]):  # a misspelt name, not a run still to score
        raise CompareError(f"--method {','.join(absent)}: no {metrics} here has rows of it; the methods there: {', '.join(sorted(map(str, there)))}")
    interrupted = [journal.parent for path in paths for journal in sorted(path.rglob(PARTIAL))]
    skipped += [f"{folder}: an interrupted gipc-eval ({PARTIAL}); its own command plus --resume finishes it" for folder in interrupted]
    if not runs:
        where = ", ".join(str(p) for p in paths)
        if run_dirs and not read_any and metrics != DEFAULT_METRICS:  # a misspelt --metrics, not runs still to test
            tables = sorted({str(t.relative_to(d)) for d in run_dirs for t in d.rglob("metrics.csv")})
            raise CompareError(
                f"--metrics {metrics}: none of the {len(run_dirs)} run dirs under {where} holds it; the tables there: {', '.join(tables) or 'none'}"
            )
        if trained:
            raise CompareError(
                f"no run under {where} has a test table: {len(trained)} done {UNTESTED}; its own command with test=true "
                f"plus \"resume='<run dir>'\" tests one (quoted: a sweep job's dir name holds commas), e.g. \"resume='{trained[0]}'\""
            )
        resume = f"; {interrupted[0]} holds an interrupted gipc-eval: its own command plus --resume finishes it" if interrupted else ""
        raise CompareError(
            f"no finished runs under {where}: a run dir holds config.yaml and metrics.csv, "
            f"written when its test stage ends, a gipc-eval folder metrics.csv (method {method!r} in {metrics}){resume}"
        )
    return _told_apart(runs, metrics), skipped


def _told_apart(runs: list[Run], metrics: str = DEFAULT_METRICS) -> list[Run]:
    """``runs`` with every gipc-eval folder's tagged ``folder=<its name>`` where one method is scored
    in two or more of them: the folders' scores of it are not seeds of one variant (n counted each
    image once per folder, and two pair sets' images ran together)."""
    evals = [run for run in runs if eval_folder(run.path, metrics)]
    if max(Counter(run.overrides.get("method") for run in evals).values(), default=0) < 2:
        return runs
    folders = {run.path for run in evals}
    if len({path.name for path in folders}) < len(folders):  # runA/lytro beside runB/lytro: their paths tell them apart
        common = Path(os.path.commonpath([str(path.resolve()) for path in folders]))
        names = {path: str(path.resolve().relative_to(common)) for path in folders}
    else:
        names = {path: path.name for path in folders}
    return [Run(run.path, {"folder": names[run.path], **run.overrides}, run.seed, run.rows) if run.path in names else run for run in runs]


def varying_keys(runs: Sequence[Run], ignore: Sequence[str] = DEFAULT_IGNORE) -> list[str]:
    """Override keys whose value differs between runs (absent counts as a value), in first-seen order."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.overrides))
    return [k for k in keys if k not in ignore and len({run.overrides.get(k) for run in runs}) > 1]


def variant_of(run: Run, keys: Sequence[str]) -> str:
    """The run's label: its values of the varying keys, or ``default`` when nothing varies."""
    return ",".join(f"{k}={run.overrides[k]}" for k in keys if k in run.overrides) or "default"


def table_rows(runs: Sequence[Run], keys: Sequence[str], root: Path) -> list[dict[str, object]]:
    """One row per run and image: variant, run dir (relative to ``root``), seed, swept values, metrics."""
    rows = []
    for run in runs:
        label = variant_of(run, keys)
        swept = {k: _number(run.overrides[k]) if k in run.overrides else "" for k in keys}
        where = str(run.path.relative_to(root)) if run.path.is_relative_to(root) else str(run.path)
        rows.extend({"variant": label, "run": where, "seed": run.seed, **swept, **row} for row in run.rows)
    return rows


def run_means(rows: Sequence[Row], metrics: Sequence[str]) -> list[dict[str, object]]:
    """One row per run: its variant, run, seed and swept values, and each metric's mean over the run's images."""
    keyed = [{**row, "_run": f"{row['run']}\t{row['variant']}"} for row in rows]  # a run scored for several methods is several runs
    labels: dict[str, dict[str, object]] = {}
    for row in keyed:
        labels.setdefault(str(row["_run"]), {k: v for k, v in row.items() if k not in metrics and k not in ("image", "_run")})
    return [{**labels[run], **{m: mean for m, (mean, _, _) in stats.items()}} for run, stats in summarize(keyed, "_run", metrics).items()]


def variant_named(reference: str, variants: Sequence[str]) -> str:
    """The variant ``--reference`` names: itself, or for a bare value (``theirs``, ``none``) the one
    variant holding it (``method=theirs``); else ``reference`` as given, for the paired test to refuse."""
    if reference in variants or "=" in reference:
        return reference
    holding = sorted({v for v in variants if any(part.partition("=")[2] == reference for part in v.split(","))})
    return holding[0] if len(holding) == 1 else reference


def paired_tests(rows: Sequence[Row], reference: str, metrics: Sequence[str]) -> list[dict[str, object]]:
    """Wilcoxon signed-rank test of every other variant against ``reference``, per metric, on values paired by (image, seed).

    One row per variant and metric: pairs (the (image, seed) keys both have), the mean of
    variant − reference over them, the statistic and the two-sided p-value.
    """
    values: dict[str, dict[str, dict[tuple[object, object], float]]] = {}
    for row in rows:
        variant, key = str(row["variant"]), (row["image"], row["seed"])
        for metric in metrics:
            value = row.get(metric)
            if not isinstance(value, float) or math.isnan(value):
                continue
            cell = values.setdefault(variant, {}).setdefault(metric, {})
            if key in cell:
                raise CompareError(
                    f"variant {variant} has two values of {metric} for image {key[0]} at seed {key[1]}: "
                    "the paired test needs one run per variant and seed"
                )
            cell[key] = value
    if reference not in values:
        raise CompareError(f"--reference {reference!r} is not a variant here; the variants are: {', '.join(values)}")
    results = []
    for variant, own in values.items():
        if variant == reference:
            continue
        for metric in metrics:
            theirs, ours = values[reference].get(metric, {}), own.get(metric, {})
            diffs = [ours[key] - theirs[key] for key in ours if key in theirs]
            statistic, p_value = wilcoxon(diffs)
            mean = sum(diffs) / len(diffs) if diffs else math.nan
            results.append(
                {"variant": variant, "reference": reference, "metric": metric, "pairs": len(diffs),
                 "mean_difference": mean, "statistic": statistic, "p_value": p_value}
            )
    return results


def wilcoxon(diffs: Sequence[float]) -> tuple[float, float]:
    """scipy's two-sided Wilcoxon signed-rank (statistic, p) of paired differences; (nan, nan) without pairs.

    Differences all zero (two bit-identical arms) give (0, 1) here rather than scipy's warning.
    """
    if not diffs:
        return math.nan, math.nan
    if not any(diffs):
        return 0.0, 1.0
    from scipy.stats import wilcoxon as signed_rank

    result = signed_rank(diffs)
    return float(result.statistic), float(result.pvalue)


def paired_table(results: Sequence[Row], metrics: Sequence[str], digits: int = 4) -> str:
    """The paired tests as a markdown table: per variant, the pairs and per metric "mean difference (p)"."""
    cells: dict[str, dict[str, Row]] = {}
    for result in results:
        cells.setdefault(str(result["variant"]), {})[str(result["metric"])] = result
    lines = ["| variant | pairs | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for variant, by_metric in cells.items():
        pairs = max(int(r["pairs"]) for r in by_metric.values())
        shown = [
            f"{r['mean_difference']:+.{digits}f} (p={r['p_value']:.3g})" if r["pairs"] else ""
            for r in (by_metric[m] for m in metrics)
        ]
        lines.append(f"| {variant} | {pairs} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def numeric_key(runs: Sequence[Run], keys: Sequence[str]) -> str | None:
    """The one varying key whose values are all numbers (a curve's x axis), if there is exactly one."""
    numeric = [k for k in keys if all(isinstance(_number(r.overrides.get(k, "")), float) for r in runs)]
    return numeric[0] if len(numeric) == 1 else None


def plot_metric(
    rows: Sequence[Row], metric: str, keys: Sequence[str], x_key: str | None, path: Path, spread: str = "test images"
) -> None:
    """A PNG of ``metric``'s mean ± std over ``rows`` (images, or runs' means: ``spread`` names which):
    lines over ``x_key`` (one per other variant), else one point per variant. Points, not bars from
    zero: the axis spans the values, so differences of a thousandth between arms stay visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = {str(r["variant"]) for r in rows}
    if x_key is not None:
        size = (6.0, 4.0)
    else:
        size = (max(5.0, 1.1 * len(variants) + 2.0), max(3.6, 0.35 * sum(v.count(",") + 1 for v in variants) + 1.0))
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    if x_key is not None:
        _plot_curves(ax, rows, metric, keys, x_key)
    else:
        _plot_points(ax, rows, metric, keys)
    ax.set_title(f"{metric} (mean ± std over {spread})")
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _plot_curves(ax: Any, rows: Sequence[Row], metric: str, keys: Sequence[str], x_key: str) -> None:
    """One line over the numeric ``x_key`` per combination of the other varying keys."""
    others = [k for k in keys if k != x_key]
    lines: dict[str, list[Row]] = {}
    for row in rows:
        lines.setdefault(",".join(f"{k}={row[k]}" for k in others) or metric, []).append(row)
    for name, members in lines.items():
        stats = summarize(members, x_key, [metric])
        points = sorted((float(x), s[metric]) for x, s in stats.items() if metric in s)
        xs = [x for x, _ in points]
        ax.errorbar(xs, [m for _, (m, _, _) in points], yerr=[sd for _, (_, sd, _) in points], marker="o", capsize=3, label=name)
    ticks = sorted({float(str(r[x_key])) for r in rows})
    if ticks[0] > 0 and ticks[-1] / ticks[0] >= 10:  # e.g. ratios 0.05 ... 1: even spacing per decade
        ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks], minor=False)
    ax.minorticks_off()
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric)
    if len(lines) > 1:
        ax.legend(fontsize="small")


def _plot_points(ax: Any, rows: Sequence[Row], metric: str, keys: Sequence[str]) -> None:
    """One point per variant: along x when the labels are short, else one row per variant."""
    stats = summarize(rows, "variant", [metric])
    names = [n for n, s in stats.items() if metric in s]
    # One swept key: its values say it all; several: the full variant label.
    labels = [(n.partition("=")[2] if len(keys) == 1 else "") or n for n in names]
    means, stds = [stats[n][metric][0] for n in names], [stats[n][metric][1] for n in names]
    if max(map(len, labels)) <= 16:
        ax.errorbar(range(len(names)), means, yerr=stds, fmt="o", capsize=4)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_xticks(range(len(names)), labels)
        ax.set_xlabel(keys[0] if len(keys) == 1 else "variant")
        ax.set_ylabel(metric)
    else:  # long override lists read better as rows, one override per line
        ax.errorbar(means, range(len(names)), xerr=stds, fmt="o", capsize=4)
        ax.set_ylim(-0.5, len(names) - 0.5)
        ax.set_yticks(range(len(names)), [label.replace(",", "\n") for label in labels], fontsize="small")
        ax.invert_yaxis()
        ax.set_xlabel(metric)


def default_method(paths: Sequence[Path], metrics: str = DEFAULT_METRICS) -> str:
    """``gipc`` (the model's row of a run's table); for gipc-eval folders alone, every method they score."""
    tables = [path / metrics for path in paths if eval_folder(path, metrics)]
    if not tables or len(tables) < len(paths):
        return "gipc"
    return ",".join(dict.fromkeys(str(row.get("method")) for table in tables for row in read_table(table)))


def compare(
    paths: Sequence[Path],
    out: Path | None = None,
    method: str | None = None,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    overwrite: bool = False,
    reference: str | None = None,
    metrics_table: str = DEFAULT_METRICS,
) -> Path:
    """Write the comparison of every run under ``paths`` to ``out`` (a new folder, made atomically); returns it.

    ``method``: the rows compared (:func:`default_method` when None); ``reference``: the variant every
    other is tested against (paired Wilcoxon); ``metrics_table``: which table of each run dir to read
    (``metrics.csv``, or e.g. ``lytro/metrics.csv``).
    """
    paths = [Path(p) for p in paths]
    method = method or default_method(paths, metrics_table)
    root = paths[0] if len(paths) == 1 else Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    out = Path(out) if out is not None else root / "comparison"
    if out.exists() and not overwrite:
        raise CompareError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    runs, skipped = collect(paths, method, metrics_table)
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    keys = varying_keys(runs, ignore)
    rows = table_rows(runs, keys, root)
    metrics = numeric_columns([r for run in runs for r in run.rows])
    shared = [f"{k}={v}" for k, v in runs[0].overrides.items() if k not in keys and k not in ignore]
    x_key = numeric_key(runs, keys)
    per_run = run_means(rows, metrics)
    runs_per_variant = Counter(str(r["variant"]) for r in per_run).values()
    reference = reference if reference is None else variant_named(reference, [str(row["variant"]) for row in rows])
    tests = paired_tests(rows, reference, metrics) if reference is not None else []
    # Error bars show training noise when every variant has seeds to show it, else the spread over images.
    spread_rows, spread = (per_run, "seeds") if min(runs_per_variant) > 1 else (rows, "test images")
    sections = _sections(rows, per_run if max(runs_per_variant) > 1 else [], reference, tests, metrics)

    with staging_dir(out) as staging:
        write_text(staging / "comparison.csv", csv_text(rows))
        write_text(staging / "runs.csv", csv_text(per_run))
        if tests:
            write_text(staging / "paired.csv", csv_text(tests))
        header = [f"# Comparison of {headline(runs, method, metrics_table)}, table `{metrics_table}`", ""]
        if shared or any(not eval_folder(run.path, metrics_table) for run in runs):  # a gipc-eval folder has no overrides to share
            header += [f"Overrides shared by every run: `{' '.join(shared)}`" if shared else "No override is shared by every run.", ""]
        write_text(staging / "comparison.md", "\n".join(header + sections))
        write_text(staging / "comparison.tex", latex_table(rows, "variant", metrics))
        for metric in metrics:
            plot_metric(spread_rows, metric, keys, x_key, staging / f"{_safe(metric)}.png", spread)
        replace_dir(staging, out)
    return out


def headline(runs: Sequence[Run], method: str, metrics: str = DEFAULT_METRICS) -> str:
    """What a comparison compares, counted as a reader would: ``2 runs x 2 methods (`gipc`, `gipc+map`)``
    (a run's table holds a row per method, each a variant) or ``3 methods (`a`, `b`, `c`) of 1
    gipc-eval folder``, where ``runs`` holds one :class:`Run` per folder and method."""
    folders = list(dict.fromkeys(run.path for run in runs))
    evals = sum(eval_folder(path, metrics) for path in folders)
    where = " and ".join(count for count in (_count(len(folders) - evals, "run"), _count(evals, "gipc-eval folder")) if count)
    names = [f"`{name.strip()}`" for name in method.split(",") if name.strip()]
    if len(names) == 1:
        return f"{where}, method {names[0]}"
    methods = f"{len(names)} methods ({', '.join(names)})"
    return f"{methods} of {where}" if evals == len(folders) else f"{where} x {methods}"


def _count(n: int, thing: str) -> str:
    return "" if n == 0 else f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _sections(
    rows: Sequence[Row], per_run: Sequence[Row], reference: str | None, tests: Sequence[Row], metrics: Sequence[str]
) -> list[str]:
    """comparison.md's tables, as lines: across seeds (when ``per_run`` is given), the paired test
    against ``reference`` (when given), across images."""
    sections = []
    if per_run:
        sections += ["## Across seeds", "", "Mean ± std of the runs' own means (n = runs).", "", markdown_table(per_run, "variant", metrics)]
    if reference is not None:
        sections += [
            f"## Paired test against `{reference}`",
            "",
            "Mean difference (variant − reference) and two-sided Wilcoxon signed-rank p-value over images paired by (image, seed).",
            "",
            paired_table(tests, metrics),
        ]
    return sections + ["## Across images", "", "Mean ± std over every image of the variant's runs (n = images).", "", markdown_table(rows, "variant", metrics)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
