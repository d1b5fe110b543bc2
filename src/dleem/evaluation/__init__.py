"""Evaluation: image-quality metrics, pore statistics, held-out tile sampling, the report.

Reads a workspace (pairs manifest, LR image, HR targets) and one or more model folders,
scores SR and bicubic against HR on random held-out tiles, and writes
``WORKSPACE/report/index.html`` and ``WORKSPACE/report/metrics.json``
(schema in docs/report.md).
"""

from dleem.evaluation.metrics import bicubic_upsample, psnr, score_tile, ssim
from dleem.evaluation.pores import (
    choose_threshold,
    distribution_distances,
    local_thickness,
    pore_stats,
    segment,
    two_point_correlation,
)
from dleem.evaluation.sampling import Tile, sample_tiles

__all__ = [
    "Tile",
    "bicubic_upsample",
    "choose_threshold",
    "distribution_distances",
    "local_thickness",
    "pore_stats",
    "psnr",
    "sample_tiles",
    "score_tile",
    "segment",
    "ssim",
    "two_point_correlation",
]
