"""The tables of gipc-compare, gipc-eval and the test stage (gipc.report): mean and population std per group."""

from __future__ import annotations

import math

from gipc.report import markdown_table, numeric_columns


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
