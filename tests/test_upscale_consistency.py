"""Consistency map: zero where SR explains the LR measurement, large where it invented structure."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from dleem.imaging import degrade
from dleem.upscale.consistency import consistency_map, map_tile, write_consistency

K, SIGMA = 4, 0.8


def _truth(shape=(96, 112), seed=0) -> np.ndarray:
    """A fine-grid 'specimen' in 8-bit grey levels (smooth grains)."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((K * shape[0], K * shape[1])), 3.0)
    x = (x - x.min()) / (x.max() - x.min())
    return (20 + 200 * x).astype(np.float32)


def test_degrade_is_blur_then_area_mean():
    flat = np.full((40, 48), 7.0, np.float32)
    np.testing.assert_allclose(degrade(flat, K, SIGMA), 7.0, atol=1e-5)
    impulse = np.zeros((64, 64), np.float32)
    impulse[30, 30] = 16.0
    low = degrade(impulse, K, 0.0)
    assert low.shape == (16, 16) and low[7, 7] == pytest.approx(1.0) and low.sum() == pytest.approx(1.0)


def test_near_zero_where_sr_is_the_truth():
    fine = _truth()
    lr = np.rint(degrade(fine, K, SIGMA)).astype(np.uint8)  # the measurement, 8-bit
    d = consistency_map(fine, lr, K, SIGMA)
    assert d.shape == lr.shape and d.dtype == np.float32
    assert np.abs(d).max() <= 0.5 + 1e-3  # only the 8-bit rounding of the measurement


def test_large_where_sr_invented_structure(tmp_path):
    fine = _truth(seed=1)
    lr = np.rint(degrade(fine, K, SIGMA)).astype(np.uint8)
    invented = fine.copy()
    yy, xx = np.mgrid[: fine.shape[0], : fine.shape[1]]
    centres = [(100, 120), (250, 300), (60, 380)]
    for cy, cx in centres:
        invented[(yy - cy) ** 2 + (xx - cx) ** 2 < 8**2] = 250.0  # bright particles ~4 LR px wide
    d = consistency_map(invented, lr, K, SIGMA)
    for cy, cx in centres:
        assert d[cy // K, cx // K] > 20  # grey levels: clearly visible
    far = np.ones(d.shape, bool)
    for cy, cx in centres:
        far[max(cy // K - 6, 0):cy // K + 7, max(cx // K - 6, 0):cx // K + 7] = False
    assert np.abs(d[far]).max() <= 0.5 + 1e-3
    # streamed, tiled map == whole-image map; summary figure and statistics written
    out = tmp_path / "cons.tif"
    summary = write_consistency(out, invented, lr, scale=K, sigma_lr_px=SIGMA, dtype_max=255.0,
                                lr_pixel_size_um=0.4, tile=32)
    streamed = tifffile.imread(out)
    assert streamed.dtype == np.float32
    np.testing.assert_allclose(streamed, d, atol=1e-4)
    assert (tmp_path / "cons_summary.png").stat().st_size > 10_000
    assert summary["max"] == pytest.approx(float(d.max()), rel=1e-5)
    assert summary["p50_abs"] < 1.0 < summary["p99_abs"] or summary["max"] > 20


def test_tile_margin_makes_tiles_exact():
    fine = _truth(seed=2)
    lr = np.rint(degrade(fine, K, 1.7)).astype(np.uint8)
    whole = consistency_map(fine, lr, K, 1.7)
    box = (17, 60, 30, 90)
    np.testing.assert_allclose(map_tile(fine, lr, box, K, 1.7), whole[17:60, 30:90], atol=1e-4)
