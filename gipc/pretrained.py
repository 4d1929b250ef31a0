"""Generator weight files: load a run's checkpoint or an exported generator, export one, and the shipped model.

An exported generator is ``{"format": "gipc-generator/1", "generator": {Generator kwargs},
"state_dict": {...}}``: the generator's weights only (no discriminator, no optimiser state), about
0.6 MB, loadable with ``torch.load(weights_only=True)``, so fusing never unpickles code. The
model gipc ships is such a file inside the package, ``gipc/weights/gipc-cpu.pt``; ``gipc-export``
(:mod:`gipc.cli.export`) writes one from a run's checkpoint, or an ONNX model of the network (:mod:`gipc.onnx_export`).
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from gipc import onnx_export
from gipc.configs import conf_group
from gipc.errors import CheckpointError, ConfigError
from gipc.files import atomic_path, check_writable
from gipc.inference import InferenceGenerator, choose_path, prepare
from gipc.models.batchnorm import recalibrate_batchnorm
from gipc.models.generator import Generator

log = logging.getLogger(__name__)

FORMAT = "gipc-generator/1"
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "gipc-cpu.pt"
"""The generator gipc ships (absent until a trained model is added to the package)."""
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _read(path: Path, allow_pickle: bool) -> Any:
    """``torch.load(weights_only=True)``; a checkpoint that needs code to load is unpickled only with ``allow_pickle``."""
    if path.is_dir():  # a run dir, most likely, or its checkpoints/
        last = next((p for p in (path / "checkpoints" / "last.ckpt", path / "last.ckpt") if p.is_file()), None)
        hint = f", {last} or the one gipc-select picks" if last is not None else ""
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file; give a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _UNSAFE_GLOBAL.search(str(err))
        if unsafe is None:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (UnpicklingError)") from None
        if not allow_pickle:
            raise CheckpointError(f"{path}: needs {unsafe[1]} to load, which torch.load(weights_only=True) refuses") from None
        log.warning(
            "%s: holds %s, so it cannot load with torch.load(weights_only=True); unpickling it in full, "
            "which runs code from the file: use only checkpoints you trust (gipc-export makes a weights-only copy)",
            path, unsafe[1],
        )
    except Exception as err:  # a corrupt file can fail in the zip reader, the unpickler or storage loading
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None


def _generator_parts(path: Path, ckpt: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(Generator kwargs, generator state dict) of an exported file or a Lightning checkpoint of ``GIPCGAN``."""
    if isinstance(ckpt, dict) and "format" in ckpt:
        if ckpt["format"] != FORMAT:
            raise CheckpointError(f"{path}: generator file format {ckpt['format']!r}; this version of gipc reads {FORMAT!r}")
        return dict(ckpt.get("generator") or {}), dict(ckpt.get("state_dict") or {})
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict); use one saved by gipc training")
    state = {k.removeprefix("generator."): v for k, v in ckpt["state_dict"].items() if k.startswith("generator.")}
    if not state:
        raise CheckpointError(f"{path}: holds no generator weights (no 'generator.*' keys); is it a gipc checkpoint?")
    return dict((ckpt.get("hyper_parameters") or {}).get("generator") or {}), state


def check_training_checkpoint(path: str | Path) -> None:
    """Refuse, in one line, a ``ckpt_path`` that a run cannot continue from: an exported generator
    (Lightning failed on it with a KeyError traceback), or a file that is no Lightning checkpoint."""
    path = Path(path)
    ckpt = _read(path, allow_pickle=True)
    if isinstance(ckpt, dict) and "format" in ckpt:
        raise CheckpointError(f"{path}: a generator file (gipc-export), not a training checkpoint; fine-tune from its weights with model.init_generator={path}")
    if not isinstance(ckpt, dict) or "pytorch-lightning_version" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint of a gipc run (no pytorch-lightning_version); give <run dir>/checkpoints/last.ckpt")


def _build(path: Path, kwargs: dict[str, Any], state: dict[str, torch.Tensor]) -> Generator:
    """``Generator(**kwargs)`` holding ``state``, in eval mode; a one-line error when they do not fit.
    Settings a file does not name (older files name none) are ``conf/model``'s, Table 1's."""
    try:
        generator = Generator(**{**conf_group("model")["generator"], **kwargs})
    except TypeError as err:
        raise CheckpointError(f"{path}: generator settings {kwargs} do not fit this version of gipc ({err})") from None
    expected = generator.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        example = (missing or unexpected or reshaped)[0]
        raise CheckpointError(
            f"{path}: generator weights do not fit Generator({kwargs}): {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(reshaped)} of another shape (e.g. {example})"
        )
    generator.load_state_dict(state)
    return generator.eval()


def load_generator(ckpt_path: str | Path, allow_pickle: bool = True) -> Generator:
    """The generator of a Lightning checkpoint of ``GIPCGAN`` or of an exported file, on the CPU in eval mode.

    Lightning checkpoints take ``state_dict`` keys ``generator.*`` and the Generator kwargs in
    ``hyper_parameters["generator"]``. Files load with ``torch.load(weights_only=True)``; one that
    cannot (it pickles other objects) is unpickled in full with a warning when ``allow_pickle``.
    """
    path = Path(ckpt_path)
    return _build(path, *_generator_parts(path, _read(path, allow_pickle)))


def export_generator(
    ckpt_path: str | Path,
    out_path: str | Path,
    overwrite: bool = False,
    calibration: Iterable[Sequence[torch.Tensor]] | None = None,
) -> Path:
    """Write the generator of ``ckpt_path`` (a run's checkpoint, or an exported file) alone to ``out_path``, atomically:
    an ONNX model where ``out_path`` ends in ``.onnx`` (:mod:`gipc.onnx_export`), else gipc's weights file.

    An existing ``out_path`` is replaced only with ``overwrite``, and never when it is ``ckpt_path``.
    With ``calibration`` (generator inputs, e.g. :func:`gipc.rundir.training_inputs`), the BatchNorm
    statistics are re-estimated on them first (:func:`gipc.models.batchnorm.recalibrate_batchnorm`).
    """
    path, out = Path(ckpt_path), Path(out_path)
    check_writable(out, overwrite, protected=(path,))
    as_onnx = onnx_export.requested(out)
    kwargs, state = _generator_parts(path, _read(path, allow_pickle=True))
    generator = _build(path, kwargs, state)  # checks the weights fit before anything is written
    if calibration is not None:
        recalibrate_batchnorm(generator, calibration)
    with atomic_path(out) as tmp:
        if as_onnx:
            onnx_export.write_onnx(generator, tmp, kwargs)
        else:
            torch.save({"format": FORMAT, "generator": kwargs, "state_dict": generator.state_dict()}, tmp)
    return out


def shipped_weights_exist() -> bool:
    """Whether this install holds the shipped generator (a checkout before one was trained does not)."""
    return SHIPPED_WEIGHTS.is_file()


def shipped_generator() -> Generator:
    """The generator gipc ships, weights-only; a clear one-line error when this install has none."""
    if not shipped_weights_exist():
        raise CheckpointError(
            f"no shipped weights in this install of gipc ({SHIPPED_WEIGHTS} is missing); "
            "give a checkpoint (--ckpt, or load_generator) or a classic --method"
        )
    return load_generator(SHIPPED_WEIGHTS, allow_pickle=False)


def start_from(generator: Generator, source: str | Path) -> Generator:
    """``generator`` holding the weights a run fine-tunes (``model.init_generator``: ``shipped``, or a
    weights-only-loadable file): all but the last layer when the two heads differ (it means something
    else there, so it keeps its fresh weights); a one-line error when the networks do not fit."""
    start = shipped_generator() if str(source) == "shipped" else load_generator(source, allow_pickle=False)
    state = start.state_dict()
    if start.head != generator.head:
        state |= {k: v for k, v in generator.state_dict().items() if k.startswith(generator.output_layer())}
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise ConfigError(f"model.init_generator={source}: its weights do not fit model.generator ({first})") from None
    return generator


def pretrained(device: str | torch.device | None = None, precision: str = "auto", backend: str = "auto") -> InferenceGenerator:
    """The shipped generator, ready to fuse: ``pretrained().fusion()`` fuses under the default rule of
    ``conf/fusion/default.yaml`` (``.fusion("direct")``: the paper's output), and ``pretrained().fuse_y``
    is the network alone as a :data:`gipc.tiling.Fuser`.

    ``device`` None takes CUDA when available, else the CPU; ``precision`` is ``auto``, ``fp32``,
    ``bf16``, ``fp16`` or ``int8``; ``backend`` ``auto``, ``torch`` or ``openvino`` (see :func:`gipc.inference.choose_path`).
    """
    return prepare(shipped_generator(), choose_path(device, precision, backend))
