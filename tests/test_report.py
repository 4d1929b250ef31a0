"""The tables of gipc-compare, gipc-eval and the test stage (gipc.report): mean and population std per group,
and the means as a paper's LaTeX table."""

from __future__ import annotations

import math

import pytest

from gipc.metrics import EXTRA_NAMES, METRIC_NAMES, REFERENCE_NAMES, goal, symbol
from gipc.report import latex_table, markdown_table, numeric_columns, write_report


def test_a_studys_table_is_mean_and_population_std_per_arm_with_undefined_values_left_out():
    """gipc-compare's and gipc-eval's tables (gipc.report): population std, as fusion papers' tables give it
    (0.6 and 0.8: 0.1, where the sample std would be 0.1414); a NaN (a metric undefined on an image) counts
    in neither mean nor n; n is the most values any column has; flags and names are not columns."""
    rows = [
        {"image": "a", "ablation": "none", "QABF": 0.6, "EN": 7.0, "finished": True},
        {"image": "b", "ablation": "none", "QABF": 0.8, "EN": math.nan, "finished": True},
        {"image": "a", "ablation": "without_int", "QABF": 0.5, "finished": False},
    ]
    columns = numeric_columns(rows)
    assert columns == ["QABF", "EN"]
    assert markdown_table(rows, "ablation", columns) == (
        "| ablation | n | QABF | EN |\n"
        "|---|---|---|---|\n"
        "| none | 2 | 0.7000 ± 0.1000 | 7.0000 ± 0.0000 |\n"
        "| without_int | 1 | 0.5000 ± 0.0000 |  |\n"
    )


def _body(table: str) -> list[list[str]]:
    """The cells of a LaTeX tabular's rows between \\midrule and \\bottomrule."""
    lines = table.splitlines()
    rows = lines[lines.index("\\midrule") + 1 : lines.index("\\bottomrule")]
    return [row.removesuffix(r" \\").split(" & ") for row in rows]


def test_latex_table_marks_the_best_and_second_of_each_metric_by_its_direction():
    """Q^AB/F: the highest is best; Q_SF: the nearest 0 (-0.02 beats 0.03 and -0.05); PSNR ties at
    the printed digits share the bold; a column that is no metric (time) gets no marks; a missing
    value prints as --; names are escaped; a negative figure gets a minus sign."""
    rows = [
        {"image": "x", "method": "gipc+map", "QABF": 0.76, "QSF": -0.02, "PSNR": 40.00001, "time_s": 1.0},
        {"image": "x", "method": "laplacian_energy", "QABF": 0.75, "QSF": 0.03, "PSNR": 40.0, "time_s": 2.0},
        {"image": "x", "method": "gipc", "QABF": 0.72, "QSF": -0.05, "PSNR": 30.0, "time_s": 3.0},
        {"image": "x", "method": "100%", "QABF": 0.70, "time_s": 0.5},
    ]
    table = latex_table(rows, "method", numeric_columns(rows))
    assert r"method & $Q^{AB/F}$ $\uparrow$ & $Q_{SF}$ $\to 0$ & PSNR $\uparrow$ & time\_s \\" in table.splitlines()
    assert table.splitlines()[1] == r"\begin{tabular}{lrrrr}"
    assert _body(table) == [
        ["gipc+map", r"\textbf{0.7600}", r"\textbf{$-$0.0200}", r"\textbf{40.0000}", "1.0000"],
        [r"laplacian\_energy", r"\underline{0.7500}", r"\underline{0.0300}", r"\textbf{40.0000}", "2.0000"],
        ["gipc", "0.7200", "$-$0.0500", "30.0000", "3.0000"],  # PSNR: last of two figures, no underline
        [r"100\%", "0.7000", "--", "--", "0.5000"],
    ]


@pytest.mark.parametrize(("values", "marked"), [((0.5, 0.7), ["0.5000", r"\textbf{0.7000}"]), ((0.7, 0.7), ["0.7000", "0.7000"])])
def test_latex_table_bolds_only_a_winner_and_underlines_only_among_three(values, marked):
    """Two figures: the better is bold and the other plain (the second of two is the last); equal: no marks."""
    rows = [{"image": "x", "method": name, "QABF": v} for name, v in zip("ab", values)]
    assert [cells[1] for cells in _body(latex_table(rows, "method", ["QABF"]))] == marked


def test_write_report_writes_the_three_tables(tmp_path):
    rows = [{"image": "x", "method": "gipc", "QABF": 0.5}, {"image": "x", "method": "gff", "QABF": 0.6}]
    assert [p.name for p in write_report(rows, tmp_path, group="method")] == ["metrics.csv", "metrics.md", "metrics.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.md", "metrics.tex"]
    assert (tmp_path / "metrics.tex").read_text() == latex_table(rows, "method", ["QABF"])


def test_every_metric_has_a_symbol_and_ranks_as_the_survey_marks_it():
    """The MFIF survey's tables mark every metric higher-is-better but Q_SF (best at 0); so do the
    six of the paper, PSNR/SSIM and the map scores; other columns are not ranked."""
    names = [*METRIC_NAMES, *REFERENCE_NAMES, *EXTRA_NAMES, "MAP_ACC", "MAP_BF"]
    assert {name: goal(name) for name in names} == {name: 0.0 if name == "QSF" else "max" for name in names}
    assert all(symbol(name) for name in names) and symbol("QABF") == "$Q^{AB/F}$"
    assert goal("time_s") is None and symbol("time_s") is None
