"""The generator as inference runs it: BatchNorm folded, on the fastest runtime, bf16/fp16 where the hardware has it.

Training keeps the :class:`~gipc.models.Generator` as Table 1 builds it. To fuse, :func:`prepare`
makes an eval-only copy whose BatchNorm layers are folded into the preceding convolutions (one
pass less per block, the same function to float rounding) and runs it in the precision and on
the runtime :func:`choose_path` picks: bf16 on a CPU with native bf16 instructions (AVX512-BF16 or
AMX) and on GPUs that have it, fp16 on older GPUs, fp32 elsewhere; on CPUs through OpenVINO
(:mod:`gipc.runtime`) where it loads, else through torch (channels_last, autocast), which is also
the GPU path. ``gipc-fuse``, :func:`gipc.pretrained.pretrained`, tiling (any fuser) and training's
test stage all build the network through :func:`prepare`.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gipc.color import from_net, to_net
from gipc.decision import MapSettings
from gipc.errors import UserError
from gipc.fusion import Fusion, default_rule
from gipc import quantization, runtime
from gipc.hardware import native_bf16, native_int8
from gipc.tiling import DEFAULT_OVERLAP, Fuser, exact_overlap

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
"""The dtype torch hands the network in; int8 runs inside OpenVINO (:mod:`gipc.quantization`), its inputs float32."""
BACKENDS: tuple[str, ...] = ("auto", "torch", "openvino")
"""``auto``: OpenVINO on a CPU where it loads (:mod:`gipc.runtime`), torch on GPUs and where it does not;
``$GIPC_BACKEND`` sets what ``auto`` means for a process (the test suite runs torch by default)."""


@dataclass(frozen=True)
class InferencePath:
    """Where, in which precision and on which runtime the network runs, and why."""

    device: torch.device
    precision: str
    reason: str
    backend: str = "torch"
    backend_reason: str = ""

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    def describe(self) -> str:
        runtime = "OpenVINO" if self.backend == "openvino" else "torch, channels_last"
        why = f" ({self.backend_reason})" if self.backend_reason else ""
        return f"{self.device.type}, {self.precision} ({self.reason}), {runtime}{why}, BatchNorm folded"


def choose_path(device: str | torch.device | None = None, precision: str = "auto", backend: str = "auto") -> InferencePath:
    """The inference path for ``device`` (None: CUDA if available, else CPU) and ``precision``.

    ``auto`` takes bf16 where the hardware computes it natively (a CPU with AMX or AVX512-BF16, a
    GPU of compute capability 8 or later), fp16 on older GPUs, fp32 on other CPUs. An explicit
    ``bf16`` runs anywhere (emulated where not native); ``fp16`` runs on CUDA only; ``int8`` (never
    chosen by ``auto``: its output lies further from fp32's) runs through OpenVINO on CPUs, with NNCF
    installed (:mod:`gipc.quantization`).
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    try:
        device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    except (RuntimeError, TypeError):  # torch lists its twenty device types
        raise UserError(f"device must be cpu or cuda (cuda:<index>), got {device}") from None
    precision, reason = _precision(device, precision)
    path = InferencePath(device, precision, reason, *_backend(device, backend))
    if precision == "int8":
        if path.backend != "openvino":
            raise UserError(f"precision int8 runs through OpenVINO ({path.backend_reason or 'backend torch asked for'}); use bf16 or fp32 with torch")
        quantization.check_available()
    return path


def _precision(device: torch.device, precision: str) -> tuple[str, str]:
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda (cuda:<index>), got {device}")
    if precision == "fp16" and device.type == "cpu":
        raise UserError("precision fp16 runs on CUDA only; use bf16 or fp32 on a CPU")
    if precision == "int8":
        if device.type != "cpu":
            raise UserError("precision int8 runs on CPUs only; use fp16 or bf16 on a GPU")
        fast = native_int8()
        return "int8", f"asked for; {fast}" if fast else "asked for; this CPU has no int8 dot products, expect it no faster than fp32"
    native = native_bf16(device)
    if precision == "auto":
        if native:
            return "bf16", f"auto: {native}"
        return ("fp16", "auto: GPU lacks bf16") if device.type == "cuda" else ("fp32", "auto: CPU has no native bf16")
    if precision == "bf16" and not native:
        slower = "this GPU emulates bf16" if device.type == "cuda" else "this CPU has no native bf16, expect it slower than fp32"
        return "bf16", f"asked for; {slower}"
    return precision, "asked for"


def _backend(device: torch.device, backend: str) -> tuple[str, str]:
    """The runtime and, where it is not the one asked for or expected, why."""
    if backend == "auto":
        backend = os.environ.get("GIPC_BACKEND") or "auto"
        if backend not in BACKENDS:
            raise UserError(f"GIPC_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return "torch", ""
    if device.type != "cpu":
        if backend == "openvino":
            raise UserError("backend openvino runs on the CPU; use --backend torch (or auto) on a GPU")
        return "torch", ""
    problem = runtime.unavailable()
    if problem is not None:
        if backend == "openvino":
            raise UserError(f"backend openvino: {problem}; use --backend torch")
        return "torch", f"OpenVINO unavailable: {problem}"
    return "openvino", ""


def fold_batchnorm(generator: nn.Module) -> nn.Module:
    """An eval-mode copy of ``generator`` with every Conv2d -> BatchNorm2d pair of a Sequential made one Conv2d.

    In eval mode BatchNorm is an affine map per channel, so ``conv`` then ``bn`` equals one conv
    with scaled weights and a shifted bias; the BatchNorm becomes an Identity. The original is untouched.
    """
    folded = copy.deepcopy(generator).eval()
    for block in folded.modules():
        if not isinstance(block, nn.Sequential):
            continue
        for i in range(len(block) - 1):
            conv, norm = block[i], block[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                block[i] = fuse_conv_bn_eval(conv, norm)
                block[i + 1] = nn.Identity()
    return folded


class InferenceGenerator(nn.Module):
    """A generator ready to fuse on one :class:`InferencePath` (to move it, :func:`prepare` again).

    Called like the generator, on two (B, 1, H, W) images in [-1, 1] on any device; returns float32
    on the inputs' device, so tiling can assemble on the CPU while the tiles run on a GPU.
    """

    def __init__(self, generator: nn.Module, path: InferencePath) -> None:
        super().__init__()
        self.net = fold_batchnorm(generator).to(path.device, memory_format=torch.channels_last)
        self.path = path
        self._compiled: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}

    def _graph(self, graph: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The network's ``forward`` or map-head ``weight`` on the path's runtime (OpenVINO: compiled at first use)."""
        if self.path.backend != "openvino":
            return runtime.graph_of(self.net, graph)
        if graph not in self._compiled:
            try:
                self._compiled[graph] = runtime.openvino_runner(self.net, graph, self.path.precision, torch.get_num_threads())
            except Exception as err:  # a conversion OpenVINO cannot do: fuse on, with torch
                log.warning("OpenVINO could not compile the generator (%s: %s); fusing with torch", type(err).__name__, err)
                self.path = replace(self.path, backend="torch", backend_reason=f"OpenVINO failed: {type(err).__name__}")
                return self._graph(graph)
        return self._compiled[graph]

    def _run(self, graph: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        net = self._graph(graph)
        if self.path.backend == "openvino":
            with torch.no_grad():
                return net(a, b).to(a.device)
        device, dtype = self.path.device, self.path.dtype
        a_in = a.to(device).contiguous(memory_format=torch.channels_last)
        b_in = b.to(device).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = net(a_in, b_in)
        return out.float().contiguous().to(a.device)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._run("forward", a, b)

    def fuse_y(self, ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """The :data:`~gipc.tiling.Fuser` form: luminance in [0, 1] in and out."""
        return from_net(self(to_net(ya), to_net(yb)))

    def weight_y(self, ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """A map head's weight for A in [0, 1] from luminance in [0, 1] (a Fuser too, so it tiles)."""
        return self._run("weight", to_net(ya), to_net(yb))

    @property
    def head(self) -> str:
        return getattr(self.net, "head", "image")

    @property
    def overlap(self) -> int:
        """The tile overlap that fuses exactly with the fewest extra pixels: :func:`~gipc.tiling.exact_overlap`
        of the network's receptive radius, :data:`~gipc.tiling.DEFAULT_OVERLAP` for a network that does not say it."""
        radius = getattr(self.net, "receptive_radius", None)
        return DEFAULT_OVERLAP if radius is None else exact_overlap(radius)

    def fusion(
        self, rule: str | None = None, settings: MapSettings | None = None, tile: int | None = None, overlap: int | None = None, **changes: Any
    ) -> Fusion:
        """This network under ``rule`` with the map ``settings`` (None: ``conf/fusion/default.yaml``'s, read only then)
        and any of them ``changes``-d by name (``fusion(clean=31, seam=0)``, as gipc-fuse's flags), in tiles of
        ``tile`` px (None: above :data:`~gipc.tiling.AUTO_TILE_PIXELS`, so a large photo fits in memory)
        that overlap by ``overlap`` px (None: :attr:`overlap`)."""
        if changes and rule == "direct":
            raise UserError(f"{', '.join(changes)}: the decision map's settings, and rule direct makes no map")
        if rule is None or (settings is None and rule != "direct"):
            default, default_settings = default_rule(self.head)
            rule, settings = rule or default, settings or default_settings
        if changes:
            settings = settings.changed(**changes)
        net = self.weight_y if self.head == "weights" else self.fuse_y
        return Fusion(net, rule, settings, self.head, tile, self.overlap if overlap is None else overlap)


def prepare(generator: nn.Module, path: InferencePath | None = None) -> InferenceGenerator:
    """``generator`` made ready to fuse on ``path`` (None: the ``auto`` path of the generator's device)."""
    if path is None:
        path = choose_path(next(generator.parameters()).device)
    return InferenceGenerator(generator, path)


def network_fuser(generator: nn.Module, path: InferencePath | None = None) -> Fuser:
    """The generator as a [0, 1] luminance fuser on the inference path (see :func:`prepare`)."""
    return prepare(generator, path).fuse_y
