"""Paths and the subprocess runner shared by the tests that drive `python gipc/run.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
RUN = REPO / "gipc" / "run.py"


def run_gipc(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python gipc/run.py ARGS`` in ``cwd`` (where outputs/ lands), W&B offline."""
    result = subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result
