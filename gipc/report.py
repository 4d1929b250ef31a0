"""Metric tables shared by training's test step, the eval command and the cross-run comparison."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import torch

from gipc.files import write_text
from gipc.metrics import fusion_metrics, map_scores

Row = Mapping[str, object]


def numeric_columns(rows: Sequence[Row]) -> list[str]:
    """Columns holding numbers in every row that has them, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                seen.setdefault(key)
    return list(seen)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (the convention of fusion papers' tables)."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / n)


def summarize(rows: Sequence[Row], group: str, columns: Sequence[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{group value: {column: (mean, std, count)}} over the rows, groups in first-seen order."""
    buckets: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for col in columns:
            value = row.get(col)
            if isinstance(value, int | float) and not math.isnan(float(value)):
                buckets[str(row.get(group, ""))][col].append(float(value))
    return {g: {c: (*mean_std(v), len(v)) for c, v in cols.items()} for g, cols in buckets.items()}


def markdown_table(rows: Sequence[Row], group: str, columns: Sequence[str], digits: int = 4) -> str:
    """Mean +- std per group as a markdown table (one row per group, one column per metric)."""
    stats = summarize(rows, group, columns)
    lines = [f"| {group} | n | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, cols in stats.items():
        n = max(c[2] for c in cols.values()) if cols else 0
        cells = [f"{cols[c][0]:.{digits}f} ± {cols[c][1]:.{digits}f}" if c in cols else "" for c in columns]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Row]) -> str:
    """Rows as CSV text with the union of their keys as header."""
    header: dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_report(rows: Sequence[Row], out_dir: str | Path, group: str, stem: str = "metrics") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` (every row) and ``<stem>.md`` (mean +- std per group), atomically."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    write_text(csv_path, csv_text(rows))
    write_text(md_path, markdown_table(rows, group, numeric_columns(rows)))
    return csv_path, md_path


def score_batch(
    names: Sequence[str],
    a: torch.Tensor,
    b: torch.Tensor,
    fused_by_method: Mapping[str, torch.Tensor],
    gt: torch.Tensor | None = None,
    maps_by_method: Mapping[str, torch.Tensor] = {},
    true_map: torch.Tensor | None = None,
    extra: Sequence[str] = (),
) -> list[dict[str, object]]:
    """Rows ``{"image", "method", EN, ..., [PSNR, SSIM], [MAP_ACC, MAP_BF]}`` of one (N, C, H, W) batch, per method then image.

    The per-image form of :func:`gipc.metrics.fusion_metrics` that both this command and
    training's test report tabulate with :func:`gipc.report.write_report`; a method with a decision
    map (A's weight, (N, 1, H, W)) in ``maps_by_method`` is also scored against ``true_map``; the
    ``extra`` metrics (:data:`gipc.metrics.EXTRA_NAMES`) come after the image metrics.
    """
    rows = []
    for method, fused in fused_by_method.items():
        values = fusion_metrics(a, b, fused, gt, extra)
        if true_map is not None and method in maps_by_method:
            values |= map_scores(maps_by_method[method], true_map)
        rows += [{"image": name, "method": method, **{k: float(v[i]) for k, v in values.items()}} for i, name in enumerate(names)]
    return rows
