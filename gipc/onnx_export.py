"""The generator as an ONNX model (``gipc-export CKPT OUT.onnx``), for runtimes beside torch and OpenVINO.

The model fuses luminance as :meth:`gipc.inference.InferenceGenerator.fuse_y` does: inputs ``y_a``
and ``y_b``, (N, 1, H, W) float32 in [0, 1] (the sources' luma, :func:`gipc.color.luma`), output
``y_fused`` of the same shape in [0, 1], for any batch, height and width; BatchNorm folded into the
convolutions (:func:`gipc.inference.fold_batchnorm`), as gipc runs it. It is the network alone, the
paper's ``direct`` rule on luminance: colour (:func:`gipc.color.fuse_color`) and the decision map
(:mod:`gipc.fusion`) stay in gipc. torch's exporter writes it, which needs the ``onnx`` and
``onnxscript`` packages (``pip install 'gipc[onnx]'``); one file, weights inside.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from gipc.color import from_net, to_net
from gipc.errors import UserError
from gipc.inference import fold_batchnorm

INSTALL = "pip install 'gipc[onnx]'"
FORMAT = "gipc-onnx/1"
INPUTS = ("y_a", "y_b")
OUTPUT = "y_fused"


def requested(path: Path) -> bool:
    """Whether an export to ``path`` is an ONNX model (``.onnx``); refused in one line, before any
    work, where its optional packages are not installed."""
    if path.suffix.lower() != ".onnx":
        return False
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"{path}: an ONNX export needs {' and '.join(missing)}, not installed here: {INSTALL}")
    return True


class LuminanceFuser(nn.Module):
    """``generator`` as a luminance fuser in [0, 1] (the ONNX model's graph)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.net = generator

    def forward(self, y_a: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
        return from_net(self.net(to_net(y_a), to_net(y_b)))


def write_onnx(generator: nn.Module, path: Path, settings: dict) -> None:
    """``generator`` (built from ``settings``, its Generator kwargs, recorded in the model's metadata)
    as an ONNX model at ``path``."""
    import onnx

    module = LuminanceFuser(fold_batchnorm(generator)).eval()
    example = tuple(torch.rand(1, 1, 64, 64) for _ in INPUTS)  # any size: every axis is dynamic
    axes = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}  # shared: both inputs one shape
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)  # torchvision's operators are not there to register: not this model's concern
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines and notes
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, example, input_names=list(INPUTS), output_names=[OUTPUT], dynamo=True,
                                        verbose=False, dynamic_shapes=(axes, axes))
    finally:
        exporter.setLevel(level)
    model = program.model_proto  # written once, with its metadata: weights inside (onnx.save's default under 2 GB)
    model.producer_name = "gipc"
    model.doc_string = (
        "GIPC-GAN's generator fusing two luminance planes: y_a, y_b (N, 1, H, W) float32 in [0, 1] -> y_fused in [0, 1]"
    )
    onnx.helper.set_model_props(model, {"format": FORMAT, "generator": json.dumps(settings, sort_keys=True)})
    onnx.save(model, str(path))
