"""The generator gipc ships (gipc/weights/gipc-cpu.pt): weights only, small, and a model that fuses.

These tests do not skip when the weights are missing: an install without them is a broken one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gipc.baselines import average
from gipc.color import fuse_color
from gipc.inference import choose_path, prepare
from gipc.imaging import read_matching
from gipc.metrics.qabf import qabf
from gipc.models import Generator
from gipc.pretrained import FORMAT, SHIPPED_WEIGHTS, pretrained

from helpers import paper_generator

MODEL_CARD = SHIPPED_WEIGHTS.parent / "MODEL_CARD.md"


def test_weights_are_the_generator_alone_under_one_mebibyte_and_load_without_unpickling_code() -> None:
    assert SHIPPED_WEIGHTS.stat().st_size <= 1024 * 1024
    saved = torch.load(SHIPPED_WEIGHTS, map_location="cpu", weights_only=True)
    assert saved["format"] == FORMAT and set(saved) == {"format", "generator", "state_dict"}
    assert all(isinstance(v, torch.Tensor) for v in saved["state_dict"].values())
    expected = Generator(**saved["generator"]).state_dict()
    assert saved["state_dict"].keys() == expected.keys()  # no discriminator, no optimiser state
    assert MODEL_CARD.is_file() and "gipc/run.py experiment=cpu" in MODEL_CARD.read_text()


def test_shipped_model_beats_averaging_on_a_real_pair_where_random_weights_do_not(lytro_pairs: Path) -> None:
    """Q^AB/F of lytro-01 (a test-set pair, never used to choose the model): the shipped model above
    plain averaging, and an untrained generator of the same shape below it (the check has teeth)."""
    a, b = (image.pixels[None] for image in read_matching([lytro_pairs / "lytro-01-A.jpg", lytro_pairs / "lytro-01-B.jpg"]))
    fp32 = choose_path("cpu", "fp32")
    torch.manual_seed(0)
    untrained = prepare(paper_generator().eval(), fp32)
    score = {
        name: float(qabf(a, b, fuse_color(fuse_y, a, b))[0])
        for name, fuse_y in (("shipped", pretrained("cpu").fuse_y), ("average", average), ("untrained", untrained.fuse_y))
    }
    assert score["shipped"] > score["average"] > score["untrained"], score
