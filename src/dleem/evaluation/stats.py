"""Medians and their 95 % intervals with the region as the unit.

Tiles of one region are not independent samples of the specimen (they share its texture,
its registration and its HR acquisition), so a pooled interval comes from a two-stage
bootstrap: resample the regions with replacement, then the tiles within each resampled
region, and take the median of the pooled resample (Davison & Hinkley 1997, sect. 3.8,
"multistage sampling"). With one region this is the plain bootstrap over its tiles. The
interval is the 2.5 and 97.5 percentiles of 2000 seeded resamples. A group with fewer than
``MIN_TILES`` tiles gets no interval (null) and the report says why.

References
----------
Davison, A. C., Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RESAMPLES = 2000
MIN_TILES = 3


def _clean(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[~np.isnan(v)]


def bootstrap_median_ci(groups: Mapping[str, Sequence[float]], *, seed: int = 0,
                        resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """95 % interval of the pooled median: regions resampled first, then tiles within them.

    Returns None when fewer than ``MIN_TILES`` values exist in all (NaN ignored). ``inf``
    (identical tiles in PSNR) is kept as a value, as in the median.
    """
    arrays = [a for a in (_clean(v) for v in groups.values()) if a.size]
    if sum(a.size for a in arrays) < MIN_TILES:
        return None
    rng = np.random.default_rng(seed)
    medians = np.empty(resamples)
    if len(arrays) == 1:
        a = arrays[0]
        medians[:] = np.median(a[rng.integers(0, a.size, (resamples, a.size))], axis=1)
    else:
        for b in range(resamples):
            chosen = rng.integers(0, len(arrays), len(arrays))
            medians[b] = np.median(np.concatenate(
                [arrays[i][rng.integers(0, arrays[i].size, arrays[i].size)] for i in chosen]))
    with np.errstate(invalid="ignore"):
        lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(lo), float(hi)


def median_summary(groups: Mapping[str, Sequence[float]], *, seed: int = 0) -> dict[str, Any]:
    """``{"median", "ci95", "n_tiles", "n_regions"}`` of the pooled values of ``groups``."""
    arrays = {k: _clean(v) for k, v in groups.items()}
    pooled = np.concatenate(list(arrays.values())) if arrays else np.zeros(0)
    return {
        "median": float(np.median(pooled)) if pooled.size else None,
        "ci95": (list(ci) if (ci := bootstrap_median_ci(arrays, seed=seed)) else None),
        "n_tiles": int(pooled.size),
        "n_regions": sum(1 for a in arrays.values() if a.size),
    }
