"""SSIM / PSNR / bicubic on known cases: identical images, a known shift, a known error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dleem.evaluation import metrics


def test_identical_images_give_ssim_one_and_infinite_psnr(real_texture):
    s = metrics.score_tile(real_texture, real_texture, data_range=255, border=4)
    assert s.ssim == pytest.approx(1.0, abs=1e-12)
    assert math.isinf(s.psnr) and s.psnr > 0


def test_constant_offset_gives_the_textbook_psnr(real_texture):
    ref = real_texture.astype(np.float64)
    pred = ref + 5.0  # MSE = 25 exactly
    assert metrics.psnr(pred, ref, 255) == pytest.approx(10 * np.log10(255**2 / 25), abs=1e-9)


def test_known_shift_lowers_ssim_and_psnr_monotonically(real_texture):
    ref = real_texture
    scores = [metrics.score_tile(np.roll(ref, s, axis=1), ref, data_range=255, border=8)
              for s in (0, 1, 2, 4)]
    ssims = [s.ssim for s in scores]
    psnrs = [s.psnr for s in scores]
    assert ssims[0] == pytest.approx(1.0)
    assert ssims[1] < 0.95 and all(a > b for a, b in zip(ssims, ssims[1:], strict=False))
    assert all(a > b for a, b in zip(psnrs, psnrs[1:], strict=False))
    # PSNR of a 1-px shift equals the PSNR of the horizontal difference image (inside the crop).
    diff = ref[8:-8, 8:-8].astype(float) - np.roll(ref, 1, axis=1)[8:-8, 8:-8]
    assert psnrs[1] == pytest.approx(10 * np.log10(255**2 / np.mean(diff**2)), abs=1e-9)


def test_shave_excludes_the_border():
    ref = np.zeros((32, 32), np.uint8)
    pred = ref.copy()
    pred[:4, :] = 200  # errors only in the 4-px border
    s = metrics.score_tile(pred, ref, data_range=255, border=4)
    assert s.ssim == pytest.approx(1.0) and math.isinf(s.psnr)
    assert metrics.score_tile(pred, ref, data_range=255, border=0).ssim < 0.9


def test_finite_median_keeps_inf():
    assert metrics.finite_median([1.0, math.inf, math.inf]) == math.inf
    assert metrics.finite_median([]) is None
