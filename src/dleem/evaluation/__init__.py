"""Evaluation: image-quality metrics, pore statistics, held-out tiles, the report.

Reads a workspace (pairs manifest, LR image, HR targets) and one or more model folders,
scores SR and bicubic against HR on held-out tiles, and writes
``WORKSPACE/report/index.html`` and ``WORKSPACE/report/metrics.json``
(schema in docs/report.md).
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "evaluate": ["EvalData", "EvalOptions", "Upscaler", "evaluate", "open_workspace"],
        "metrics": ["psnr", "score_tile", "ssim"],
        "pipeline": ["evaluate_workspace"],
        "pores": ["choose_threshold", "distribution_distances", "local_thickness", "pore_stats",
                  "segment", "two_point_correlation"],
        "sampling": ["EvalTile", "sample_tiles"],
    },
)
