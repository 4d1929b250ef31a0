"""Compare finished runs: ``gipc-compare <multirun dir | run dirs...> [--out DIR]``.

Every run dir (one holding ``config.yaml`` and ``metrics.csv``) found under the given paths
contributes its per-image test metrics of one method (the model, ``gipc``, by default) and the
command-line overrides that made it (``.hydra/overrides.yaml``). A run's *variant* is its override
string without the overrides every run shares, so ``-m ablation=none,without_int,without_gra``
gives the variants ``ablation=none`` ... and repeated seeds of one setting pool into one variant.

Writes, to a new folder (default ``<dir>/comparison``), atomically:
``comparison.csv`` (every image row with its run, variant and swept values), ``comparison.md``
(mean ± std per variant) and ``<metric>.png`` per metric: a line over the swept value when one
numeric key varies (e.g. ``loss.ratio``), else bars per variant (e.g. the ablation).
Works offline from the run dirs alone.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from gipc.files import atomic_path, write_text
from gipc.report import csv_text, markdown_table, numeric_columns, summarize

DEFAULT_IGNORE = ("seed",)
"""Override keys left out of variants: runs that differ only in them pool into one mean ± std."""


class CompareError(ValueError):
    """Nothing to compare, or an output that would overwrite something: one line for the user."""


@dataclass(frozen=True)
class Run:
    """One finished run: its dir, command-line overrides (key -> value) and per-image metric rows."""

    path: Path
    overrides: dict[str, str]
    rows: list[dict[str, object]]


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run dirs at or under ``paths`` (hidden dirs such as ``.submitit`` skipped), in sweep job order."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.is_dir():
            raise CompareError(f"{path} is not a directory; give a multirun dir or run dirs")
        for csv_path in sorted(path.rglob("metrics.csv")):
            run = csv_path.parent
            hidden = any(part.startswith(".") for part in run.relative_to(path).parts)
            if not hidden and (run / "config.yaml").is_file():
                found.setdefault(run)
    return sorted(found, key=_job_order)


def _job_order(path: Path) -> tuple[object, ...]:
    """Hydra's ``<num>_<overrides>`` sweep subdirs by job number, anything else by name."""
    match = re.match(r"(\d+)_", path.name)
    return (str(path.parent), int(match.group(1)) if match else math.inf, path.name)


def read_overrides(run_dir: Path) -> dict[str, str]:
    """``key -> value`` of the run's command-line overrides (``+``/``++`` prefixes dropped); {} if unrecorded."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    overrides: dict[str, str] = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+")] = value
    return overrides


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def read_rows(run_dir: Path, method: str) -> list[dict[str, object]]:
    """The run's ``metrics.csv`` rows of ``method``, numbers as floats."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [
            {key: value if key in ("image", "method") else _number(value) for key, value in row.items()}
            for row in csv.DictReader(handle)
            if row.get("method") == method
        ]


def collect(paths: Sequence[Path], method: str = "gipc") -> tuple[list[Run], list[str]]:
    """Every finished run under ``paths`` with rows of ``method``, and one note per run dir skipped."""
    runs, skipped = [], []
    for run_dir in find_run_dirs(paths):
        rows = read_rows(run_dir, method)
        if rows:
            runs.append(Run(run_dir, read_overrides(run_dir), rows))
        else:
            skipped.append(f"{run_dir}: no rows of method {method!r} in metrics.csv")
    for path in paths:
        for failed in sorted(path.rglob("FAILED")):
            if not (failed.parent / "metrics.csv").is_file():
                skipped.append(f"{failed.parent}: failed (see its FAILED file), no metrics")
    if not runs:
        where = ", ".join(str(p) for p in paths)
        raise CompareError(
            f"no finished runs under {where}: a run dir holds config.yaml and metrics.csv, "
            f"written when its test stage ends (method {method!r})"
        )
    return runs, skipped


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
    """One row per run and image: variant, run dir (relative to ``root``), swept values, metrics."""
    rows = []
    for run in runs:
        label = variant_of(run, keys)
        swept = {k: _number(run.overrides[k]) if k in run.overrides else "" for k in keys}
        where = str(run.path.relative_to(root)) if run.path.is_relative_to(root) else str(run.path)
        rows.extend({"variant": label, "run": where, **swept, **row} for row in run.rows)
    return rows


def numeric_key(runs: Sequence[Run], keys: Sequence[str]) -> str | None:
    """The one varying key whose values are all numbers (a curve's x axis), if there is exactly one."""
    numeric = [k for k in keys if all(isinstance(_number(r.overrides.get(k, "")), float) for r in runs)]
    return numeric[0] if len(numeric) == 1 else None


def plot_metric(rows: Sequence[dict[str, object]], metric: str, keys: Sequence[str], x_key: str | None, path: Path) -> None:
    """A PNG of ``metric``'s mean ± std: lines over ``x_key`` (one per other variant), else bars per variant."""
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
        others = [k for k in keys if k != x_key]
        lines: dict[str, list[dict[str, object]]] = {}
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
        if len(lines) > 1:
            ax.legend(fontsize="small")
    else:
        stats = summarize(rows, "variant", [metric])
        names = [n for n, s in stats.items() if metric in s]
        # One swept key: its values say it all; several: the full variant label.
        labels = [(n.partition("=")[2] if len(keys) == 1 else "") or n for n in names]
        means, stds = [stats[n][metric][0] for n in names], [stats[n][metric][1] for n in names]
        if max(map(len, labels)) <= 16:
            ax.bar(range(len(names)), means, yerr=stds, capsize=4)
            ax.set_xticks(range(len(names)), labels)
            ax.set_xlabel(keys[0] if len(keys) == 1 else "variant")
            ax.set_ylabel(metric)
        else:  # long override lists read better as rows, one override per line
            ax.barh(range(len(names)), means, xerr=stds, capsize=4)
            ax.set_yticks(range(len(names)), [label.replace(",", "\n") for label in labels], fontsize="small")
            ax.invert_yaxis()
            ax.set_xlabel(metric)
    if x_key is not None:
        ax.set_ylabel(metric)
    ax.set_title(f"{metric} (mean ± std over test images)")
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def compare(
    paths: Sequence[Path], out: Path | None = None, method: str = "gipc", ignore: Sequence[str] = DEFAULT_IGNORE, overwrite: bool = False
) -> Path:
    """Write the comparison of every run under ``paths`` to ``out`` (a new folder, made atomically); returns it."""
    paths = [Path(p) for p in paths]
    root = paths[0] if len(paths) == 1 else Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    out = Path(out) if out is not None else root / "comparison"
    if out.exists() and not overwrite:
        raise CompareError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    runs, skipped = collect(paths, method)
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    keys = varying_keys(runs, ignore)
    rows = table_rows(runs, keys, root)
    metrics = numeric_columns([r for run in runs for r in run.rows])
    shared = [f"{k}={v}" for k, v in runs[0].overrides.items() if k not in keys and k not in ignore]
    x_key = numeric_key(runs, keys)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_text(staging / "comparison.csv", csv_text(rows))
        header = [
            f"# Comparison of {len(runs)} run(s), method `{method}`",
            "",
            f"Overrides shared by every run: `{' '.join(shared)}`" if shared else "No override is shared by every run.",
            "",
        ]
        write_text(staging / "comparison.md", "\n".join(header) + markdown_table(rows, "variant", metrics))
        for metric in metrics:
            plot_metric(rows, metric, keys, x_key, staging / f"{_safe(metric)}.png")
        _replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out``; an old ``out`` is removed only after that succeeds."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        old.rmdir()
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="gipc-compare",
        description="Compare finished runs: one CSV, a mean ± std table per variant and a chart per metric.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="a multirun dir (outputs/<task>/multiruns/<time>) or run dirs")
    parser.add_argument("--out", type=Path, default=None, help="new output folder (default: <dir>/comparison)")
    parser.add_argument("--method", default="gipc", help="metrics.csv method to compare (default: gipc, the model)")
    parser.add_argument(
        "--ignore", nargs="*", default=list(DEFAULT_IGNORE), help="override keys that do not make a variant (default: seed)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    try:
        out = compare(args.paths, args.out, args.method, args.ignore, args.overwrite)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print((out / "comparison.md").read_text())
    print(f"comparison written to {out}")


if __name__ == "__main__":
    main()
