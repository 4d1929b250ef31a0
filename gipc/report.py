"""Metric tables shared by training's test step, the eval command and the cross-run comparison."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from gipc.files import write_text

if TYPE_CHECKING:
    import torch

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


def latex_table(rows: Sequence[Row], group: str, columns: Sequence[str], digits: int = 4) -> str:
    """Means per group as a LaTeX tabular (booktabs), as fusion papers print their tables: one row
    per group, a column per metric headed by its symbol and direction, the best mean of each metric
    column in bold and the second best underlined (ranked as printed, so equal figures share a mark)."""
    stats = summarize(rows, group, columns)
    printed = {c: {g: f"{cols[c][0]:.{digits}f}" for g, cols in stats.items() if c in cols} for c in columns}
    from gipc.metrics import goal, symbol  # torch and torchmetrics, only for a LaTeX table: gipc-compare --status starts without them

    marks = {c: _marks(printed[c], goal(c)) for c in columns}
    header = [_escape(group)] + [f"{symbol(c) or _escape(c)}{_direction(goal(c))}" for c in columns]
    lines = [
        f"% mean over the images of each {_escape(group)}; best of each column in bold, second underlined; needs \\usepackage{{booktabs}}",
        "\\begin{tabular}{l" + "r" * len(columns) + "}",
        "\\toprule",
        " & ".join(header) + r" \\",
        "\\midrule",
    ]
    for name in stats:
        cells = [marks[c].get(name, "{}").format(_number(printed[c][name])) if name in printed[c] else "--" for c in columns]
        lines.append(" & ".join([_escape(name), *cells]) + r" \\")
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"]) + "\n"


def _marks(printed: Mapping[str, str], target: str | float | None) -> dict[str, str]:
    """``{group: format}`` for the best (bold) and second best (underlined) of one column; no marks
    for a column that is no metric or where fewer than two figures differ."""
    if target is None:
        return {}
    def rank(text: str) -> float:
        value = float(text)
        return value if target == "max" else -value if target == "min" else -abs(value - float(target))
    ranked = sorted({rank(text) for text in printed.values()}, reverse=True)
    if len(ranked) < 2:
        return {}
    styles = {ranked[0]: r"\textbf{{{}}}"} | ({ranked[1]: r"\underline{{{}}}"} if len(ranked) > 2 else {})
    return {g: styles[rank(text)] for g, text in printed.items() if rank(text) in styles}


def _direction(target: str | float | None) -> str:
    """A metric column's direction as its header shows it: up, down, or the value it is best at."""
    if isinstance(target, float):
        return f" $\\to {target:g}$"
    return {"max": r" $\uparrow$", "min": r" $\downarrow$", None: ""}[target]


def _number(text: str) -> str:
    """A printed figure in LaTeX: a minus sign, not a hyphen."""
    return f"$-${text[1:]}" if text.startswith("-") else text


_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def _escape(text: str) -> str:
    """Plain text (a method or variant name) safe inside a LaTeX table."""
    return "".join(_SPECIAL.get(c, c) for c in text)


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


PARTIAL = "metrics.partial.jsonl"
"""Beside a ``gipc-eval`` folder's tables until they are written: each pair's rows as they were scored
(:mod:`gipc.journal`), which ``gipc-eval --resume`` goes on from."""


def write_report(rows: Sequence[Row], out_dir: str | Path, group: str, stem: str = "metrics") -> list[Path]:
    """Write ``<stem>.csv`` (every row), ``<stem>.md`` (mean +- std per group) and ``<stem>.tex``
    (the means as a paper's table), each atomically; returns their paths."""
    out_dir = Path(out_dir)
    columns = numeric_columns(rows)
    texts = {"csv": csv_text(rows), "md": markdown_table(rows, group, columns), "tex": latex_table(rows, group, columns)}
    for suffix, text in texts.items():
        write_text(out_dir / f"{stem}.{suffix}", text)
    return [out_dir / f"{stem}.{suffix}" for suffix in texts]


def score_batch(
    names: Sequence[str],
    a: torch.Tensor,
    b: torch.Tensor,
    fused_by_method: Mapping[str, torch.Tensor],
    gt: torch.Tensor | None = None,
    maps_by_method: Mapping[str, torch.Tensor] = {},
    true_map: torch.Tensor | None = None,
    extra: Sequence[str] = (),
    only: Sequence[str] | None = None,
    more: Sequence[torch.Tensor] = (),
) -> list[dict[str, object]]:
    """Rows ``{"image", "method", EN, ..., [PSNR, SSIM], [MAP_ACC, MAP_BF]}`` of one (N, C, H, W) batch, per method then image
    (of the metrics, ``only`` those named where given; ``more``: a focus sequence's sources after ``a`` and ``b``).

    The per-image form of :func:`gipc.metrics.fusion_metrics` that both this command and
    training's test report tabulate with :func:`gipc.report.write_report`; a method with a decision
    map (A's weight, (N, 1, H, W)) in ``maps_by_method`` is also scored against ``true_map``; the
    ``extra`` metrics (:data:`gipc.metrics.EXTRA_NAMES`) come after the image metrics.
    """
    from gipc.metrics import fusion_metrics, map_scores

    rows = []
    for method, fused in fused_by_method.items():
        values = fusion_metrics(a, b, fused, gt, extra, only, more)
        if true_map is not None and method in maps_by_method:
            values |= map_scores(maps_by_method[method], true_map)
        rows += [{"image": name, "method": method, **{k: float(v[i]) for k, v in values.items()}} for i, name in enumerate(names)]
    return rows
