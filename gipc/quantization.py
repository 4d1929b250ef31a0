"""Post-training int8 quantization of the generator for CPUs (``--precision int8``), with NNCF.

Where a CPU has int8 dot products (AMX-INT8, AVX512-VNNI, AVX-VNNI), OpenVINO runs the generator's
convolutions in int8: 1.5-1.9x faster than in bf16 on the AMX and AVX512-VNNI CPUs measured
(benchmarks/README.md). NNCF sets each
activation's int8 range from calibration pairs (:func:`calibration_pairs`, from the training set
only). The convolutions that read or write a single channel, the network's luminance input and its
output, stay in floating point (:func:`float_layers`): they cost little, and quantizing them too cost
4 dB of the output's PSNR against fp32 on the grayscale pairs (7 dB on the worst pair). ``auto``
never picks int8: its output lies further from fp32's than bf16's does (benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import sys

import numpy as np

from gipc.color import luma, to_net
from gipc.configs import conf_group
from gipc.errors import UserError

INSTALL = "pip install 'gipc[int8]'"


def available() -> bool:
    """Whether NNCF, an optional dependency, is installed (found without importing it: 1.6 s)."""
    return importlib.util.find_spec("nncf") is not None


def check_available() -> None:
    """Refuse int8 in one line where NNCF is not installed."""
    if not available():
        raise UserError(f"precision int8 needs NNCF, which is not installed: {INSTALL}")


def recipe() -> str:
    """What a quantized model depends on besides the weights: NNCF's version and the calibration
    config (part of the cache key, so a change quantizes again)."""
    check_available()
    return f"nncf {importlib.metadata.version('nncf')}; {conf_group('quantization', 'int8')}; {conf_group('data/source', 'embedded')}"


def calibration_pairs() -> list[list[np.ndarray]]:
    """Luminance pairs in the network's range, (1, 1, H, W) float32: the embedded set's train scenes
    (conf/quantization/int8.yaml, conf/data/source/embedded.yaml), each as (A, B) and (B, A)."""
    from gipc.data.embedded import embedded_set

    data = conf_group("data/source", "embedded")
    built = embedded_set(
        test_fraction=data["test_fraction"], seed=conf_group("quantization", "int8")["seed"], sigma=data["sigma"],
        soft=data["soft"], max_side=data["max_side"], map_source=data["map_source"],
        names=tuple(data["photos"]) if data["photos"] is not None else None,
    )
    pairs = []
    for scene in built.train:
        a, b = (to_net(luma(image[None])).numpy() for image in (scene.a, scene.b))
        pairs += [[a, b], [b, a]]
    return pairs


def float_layers(model) -> list[str]:  # model: openvino.Model
    """The names of ``model``'s convolutions that read or write one channel."""
    return [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
        and 1 in (op.get_input_partial_shape(0)[1].get_length(), op.get_output_partial_shape(0)[1].get_length())
    ]


def quantize(model):  # openvino.Model -> openvino.Model
    """``model`` with int8 convolutions, calibrated on :func:`calibration_pairs` (a few seconds)."""
    check_available()
    import nncf

    nncf.set_log_level(logging.WARNING)  # its progress bars stay; its notes on every layer go
    pairs = calibration_pairs()
    with contextlib.redirect_stdout(sys.stderr):  # where every bar of gipc's goes: NNCF's wrote into stdout
        return nncf.quantize(model, nncf.Dataset(pairs), subset_size=len(pairs), ignored_scope=nncf.IgnoredScope(names=float_layers(model)))
