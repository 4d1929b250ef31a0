"""OpenVINO, the CPU inference runtime gipc fuses with by default on CPUs (``--backend openvino``).

The folded generator (:func:`gipc.inference.fold_batchnorm`) is converted once per weights with
dynamic batch, height and width, kept as OpenVINO IR in the user's cache (``$GIPC_CACHE``, else
``$XDG_CACHE_HOME/gipc``, else ``~/.cache/gipc``) so later processes skip the conversion, and
compiled for the path's precision: OpenVINO's bf16 hint where the CPU computes bf16 natively, fp32
elsewhere. Measured beside torch in one process, it runs the generator 1.5x faster than torch's bf16
path on an AMD CPU with AVX512-BF16 (benchmarks/README.md).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from gipc import quantization
from gipc.files import staging_dir
from gipc.hardware import native_bf16

log = logging.getLogger(__name__)

HINTS = {"fp32": "f32", "bf16": "bf16"}
"""OpenVINO's INFERENCE_PRECISION_HINT for each inference precision it runs (fp16 is a GPU precision here);
an int8 model's float layers run in bf16 where the CPU computes it natively, else in fp32 (:func:`hint`)."""
COMPILED_SHAPES = 4
"""Input shapes an OpenVINO runner keeps compiled at most (a tiled image needs one: every tile has one size)."""
COMPILED_PIXELS = 600_000
"""... and input pixels: a compiled shape's buffers grow with its pixels. Two 520x520 shapes fit, or two
large images' tile shapes (4 tile shapes of 12-16 MP photos held 0.4 GiB more than 1, 2 shapes 0.1 GiB:
benchmarks/README.md)."""


def unavailable() -> str | None:
    """Why OpenVINO cannot run here (a phrase for the first output line), or None where it can."""
    try:
        import openvino  # noqa: F401
    except Exception as err:  # ImportError, or a broken native library
        return f"openvino cannot be imported ({type(err).__name__}: {err})"
    return None


@functools.cache
def core():  # -> openvino.Core
    """The process's one OpenVINO Core. With a Core per runner, once two runners' Cores were freed the
    next signal with a Python handler (Slurm's SIGUSR2 in a training run) ended the process in a segfault."""
    import openvino as ov

    return ov.Core()


def cache_dir() -> Path:
    """Where converted models are kept: ``$GIPC_CACHE``, else ``$XDG_CACHE_HOME/gipc``, else ``~/.cache/gipc``."""
    if os.environ.get("GIPC_CACHE"):
        return Path(os.environ["GIPC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gipc"


def _fingerprint(module: nn.Module, graph: str) -> str:
    """Identifies a converted model: the weights, which graph, and the OpenVINO version that converted it."""
    import openvino as ov

    digest = hashlib.sha256(f"{graph}:{ov.__version__}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def graph_of(net: nn.Module, graph: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The generator's callable named ``graph``: its ``forward`` (the fused image) or its map head's ``weight``."""
    return net if graph == "forward" else net.weight


class _Graph(nn.Module):
    """One callable of the generator (:func:`graph_of`) as a module to convert."""

    def __init__(self, net: nn.Module, graph: str) -> None:
        super().__init__()
        self.net, self.graph = net, graph

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return graph_of(self.net, self.graph)(a, b)


def hint(precision: str) -> str:
    """The INFERENCE_PRECISION_HINT a model of ``precision`` compiles with."""
    if precision == "int8":
        return HINTS["bf16"] if native_bf16("cpu") else HINTS["fp32"]
    return HINTS[precision]


def _converted(net: nn.Module, graph: str, precision: str = "fp32"):  # -> openvino.Model
    """The OpenVINO model of ``net``'s ``graph`` (for ``int8``, quantized: :mod:`gipc.quantization`),
    from the cache when it holds one (written whole or not at all)."""
    import openvino as ov

    if precision == "int8":
        key, build = f"{graph}:int8:{quantization.recipe()}", lambda: quantization.quantize(_converted(net, graph))
    else:
        key, build = graph, lambda: _traced(net, graph)
    path = cache_dir() / "openvino" / f"{_fingerprint(net, key)}.xml"
    if path.is_file():
        try:
            return core().read_model(path)
        except Exception as err:  # a damaged cache entry: build it again
            log.warning("ignoring the cached model %s (%s)", path, err)
    model = build()
    try:
        with staging_dir(path) as staging:
            ov.save_model(model, staging / path.name, compress_to_fp16=False)  # the weights stay fp32
            (staging / path.name).with_suffix(".bin").replace(path.with_suffix(".bin"))
            (staging / path.name).replace(path)  # the .xml last: it marks the entry complete
    except OSError as err:
        log.warning("cannot keep the converted model in %s (%s); converting again next time", path.parent, err)
    return model


def _traced(net: nn.Module, graph: str):  # -> openvino.Model
    """``net``'s ``graph`` converted to OpenVINO, with dynamic batch, height and width."""
    import openvino as ov

    # Tracing needs plain fp32 autograd-free mode: inside a test stage (inference mode, bf16 autocast) it fails.
    with torch.inference_mode(False), torch.no_grad(), torch.autocast("cpu", enabled=False):
        example = torch.zeros(1, 1, 64, 64)
        return ov.convert_model(_Graph(net, graph).eval(), example_input=(example, example), input=[ov.PartialShape([-1, 1, -1, -1])] * 2)


def openvino_runner(net: nn.Module, graph: str, precision: str, threads: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``net``'s ``graph`` compiled by OpenVINO for the CPU: (B, 1, H, W) float inputs -> float32 output.

    The model is compiled once per input shape (0.1-0.4 s; a folder of one camera's pairs, or the
    tiles of a large image, has one or a few): a static shape lets OpenVINO plan its buffers,
    which a dynamic one does not (0.1 GiB less at the peak of a tiled 4000x3000 pair). The shapes
    used last stay compiled, up to ``COMPILED_SHAPES`` of them and ``COMPILED_PIXELS`` input pixels
    (the newest always), so a folder of mixed sizes does not hold every size's buffers at once.
    """
    import openvino as ov

    model = _converted(net, graph, precision)
    config = {"INFERENCE_PRECISION_HINT": hint(precision), "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    requests: OrderedDict[tuple[tuple[int, ...], ...], ov.InferRequest] = OrderedDict()

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        shape = (tuple(a.shape), tuple(b.shape))
        if shape in requests:
            requests.move_to_end(shape)
        else:
            static = model.clone()
            static.reshape({port: ov.PartialShape(list(dims)) for port, dims in zip(static.inputs, shape)})
            requests[shape] = core().compile_model(static, "CPU", config).create_infer_request()
            while len(requests) > COMPILED_SHAPES or len(requests) > 1 and sum(math.prod(key[0]) for key in requests) > COMPILED_PIXELS:
                requests.popitem(last=False)
        inputs = [np.ascontiguousarray(x.detach().float().cpu().numpy()) for x in (a, b)]
        return torch.from_numpy(requests[shape].infer(inputs)[0].copy())

    return run
