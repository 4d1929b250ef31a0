"""Fusion quality metrics (docs/paper.md section 7): one torchmetric per file, each with a per-image functional twin.

All score the 0..255 integer luminance that the MFIF benchmark toolbox scores (see ``luminance``).
"""

from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean
from gipc.metrics.collection import EXTRA_NAMES, METRIC_NAMES, REFERENCE_NAMES, FusionMetrics, fusion_metrics, goal, symbol
from gipc.metrics.decision_map import map_accuracy, map_boundary_f, map_scores
from gipc.metrics.correlation import CorrelationCoefficient, correlation_coefficient, pearson
from gipc.metrics.entropy import Entropy, entropy
from gipc.metrics.luminance import gray255
from gipc.metrics.msssim import FusionMSSSIM, fusion_msssim, msssim, msssim_scales
from gipc.metrics.qabf import QABF, qabf
from gipc.metrics.qcb import QCB, qcb
from gipc.metrics.qm import QM, qm
from gipc.metrics.qmi import QMI, qmi
from gipc.metrics.qncie import QNCIE, qncie
from gipc.metrics.qp import QP, qp
from gipc.metrics.qsf import QSF, qsf
from gipc.metrics.qy import QY, qy
from gipc.metrics.reference import ReferencePSNR, ReferenceSSIM, psnr, ssim
from gipc.metrics.spatial_frequency import SpatialFrequency, spatial_frequency
from gipc.metrics.standard_deviation import StandardDeviation, standard_deviation

__all__ = [
    "EXTRA_NAMES",
    "METRIC_NAMES",
    "REFERENCE_NAMES",
    "CorrelationCoefficient",
    "Entropy",
    "FusionMSSSIM",
    "FusionMetrics",
    "MetricInputError",
    "PerImageMean",
    "QABF",
    "QCB",
    "QM",
    "QMI",
    "QNCIE",
    "QP",
    "QSF",
    "QY",
    "ReferencePSNR",
    "ReferenceSSIM",
    "SpatialFrequency",
    "StandardDeviation",
    "correlation_coefficient",
    "entropy",
    "fusion_metrics",
    "fusion_msssim",
    "goal",
    "gray255",
    "map_accuracy",
    "map_boundary_f",
    "map_scores",
    "msssim",
    "msssim_scales",
    "pearson",
    "psnr",
    "qabf",
    "qcb",
    "qm",
    "qmi",
    "qncie",
    "qp",
    "qsf",
    "qy",
    "spatial_frequency",
    "ssim",
    "symbol",
    "standard_deviation",
]
