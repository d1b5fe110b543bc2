"""Evaluation: image-quality metrics, pore statistics, independent tiles, cross-validation,
the report.

Reads a workspace (pairs manifest, LR image, HR targets) and one or more model folders,
scores SR and bicubic against HR on independent tiles, and writes
``WORKSPACE/report/index.html`` and ``WORKSPACE/report/metrics.json``
(schema in docs/report.md); `crossval_workspace` writes ``WORKSPACE/crossval/crossval.json``.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "evaluate": ["EvalData", "EvalOptions", "Upscaler", "evaluate", "open_workspace"],
        "metrics": ["psnr", "score_tile", "ssim"],
        "crossval": ["plan_folds"],
        "pipeline": ["crossval_workspace", "evaluate_workspace"],
        "pores": ["choose_threshold", "distribution_distances", "local_thickness", "match_pores",
                  "pore_stats", "recall_by_size", "segment", "two_point_correlation"],
        "stats": ["bootstrap_median_ci", "median_summary"],
        "sampling": ["EvalTile", "sample_tiles"],
    },
)
