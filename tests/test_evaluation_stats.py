"""The region-first bootstrap of the median: coverage, the unit, seeds, small groups."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dleem.evaluation import stats


def test_interval_contains_the_median_and_is_seeded():
    rng = np.random.default_rng(0)
    groups = {"A": rng.normal(0.8, 0.02, 30), "B": rng.normal(0.7, 0.02, 30)}
    s = stats.median_summary(groups, seed=1)
    lo, hi = s["ci95"]
    assert lo <= s["median"] <= hi and s["n_tiles"] == 60 and s["n_regions"] == 2
    assert stats.median_summary(groups, seed=1) == s
    assert stats.median_summary(groups, seed=2)["ci95"] != s["ci95"]


def test_the_region_is_the_unit():
    # Two regions far apart: the interval spans the gap between them, which a bootstrap
    # over the 200 pooled tiles (pseudo-replicates) would hide.
    rng = np.random.default_rng(0)
    groups = {"A": rng.normal(0.9, 0.005, 100), "B": rng.normal(0.5, 0.005, 100)}
    lo, hi = stats.bootstrap_median_ci(groups, seed=0)
    assert lo < 0.55 and hi > 0.85
    pooled = stats.bootstrap_median_ci({"all": np.concatenate(list(groups.values()))}, seed=0)
    assert pooled[1] - pooled[0] < hi - lo


def test_fewer_than_three_tiles_get_no_interval():
    assert stats.median_summary({"A": [0.5, 0.6]})["ci95"] is None
    assert stats.median_summary({"A": [0.5, 0.6], "B": [0.7]})["ci95"] is not None
    assert stats.median_summary({})["median"] is None


def test_infinite_values_are_kept_and_nan_ignored():
    s = stats.median_summary({"A": [math.inf, math.inf, 30.0, math.nan]})
    assert s["median"] == math.inf and s["n_tiles"] == 3


def test_single_region_interval_has_bootstrap_coverage():
    # 95 % interval of the median of N(0, 1) samples: covers 0 in most of 40 draws.
    hits = 0
    for seed in range(40):
        x = np.random.default_rng(seed).normal(size=40)
        lo, hi = stats.bootstrap_median_ci({"A": x}, seed=seed, resamples=500)
        hits += lo <= 0 <= hi
    assert hits >= 34
    assert stats.RESAMPLES == 2000 and stats.MIN_TILES == 3
    with pytest.raises(TypeError):
        stats.bootstrap_median_ci({"A": [1, 2, 3]}, 0)  # keyword-only seed
