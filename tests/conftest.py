"""Shared fixtures: the read-only test data beside the clone (../shared/data), skipped when absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests never reach W&B servers, whatever the developer's own mode or login: offline runs, quiet console.
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
# Networks run on torch unless a test asks for a backend (tests/test_runtime.py): converting every random
# test generator to OpenVINO would cost seconds each. Converted models never land in the user's cache.
os.environ.setdefault("GIPC_BACKEND", "torch")
os.environ.setdefault("GIPC_CACHE", tempfile.mkdtemp(prefix="gipc-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"needs the shared test data at {path} (../shared beside the clone); not present here")
    return path


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test draws the same random inputs whatever ran before it or alone: a failure reproduces."""
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def lytro_pairs() -> Path:
    """Folder of the 20 Lytro pairs lytro-NN-{A,B}.jpg (520x520 RGB)."""
    return _shared("lytro/pairs")


@pytest.fixture
def lytro_triple() -> Path:
    """Folder of the 4 Lytro three-image sequences lytro-0N-{A,B,C}.jpg."""
    return _shared("lytro/triple")


@pytest.fixture
def grayscale_pairs() -> Path:
    """Folder of the 10 classic grayscale pairs gNN-{A,B}.png."""
    return _shared("grayscale")
