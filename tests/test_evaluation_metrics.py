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


def test_data_range_comes_from_the_dtype():
    assert metrics.dtype_range(np.uint8) == 255
    assert metrics.dtype_range(np.uint16) == 65535
    with pytest.raises(ValueError):
        metrics.dtype_range(np.float32)


def test_bicubic_is_exact_on_linear_ramps_and_keeps_constants():
    k = 4
    y, x = np.mgrid[0:20, 0:24].astype(np.float64)
    lr = 3.0 * x + 2.0 * y + 10.0
    up = metrics.bicubic_upsample(lr, k, out_dtype=np.float64)
    assert up.shape == (80, 96)
    # Fine pixel j has its centre at LR coordinate (j + 0.5) / k - 0.5.
    fy, fx = np.mgrid[0:80, 0:96].astype(np.float64)
    expect = 3.0 * ((fx + 0.5) / k - 0.5) + 2.0 * ((fy + 0.5) / k - 0.5) + 10.0
    inner = (slice(2 * k, -2 * k), slice(2 * k, -2 * k))  # away from replicated edges
    np.testing.assert_allclose(up[inner], expect[inner], atol=1e-9)
    const = metrics.bicubic_upsample(np.full((8, 8), 77, np.uint8), 3)
    assert const.dtype == np.uint8 and np.all(const == 77)


def test_bicubic_block_mean_reproduces_lr(real_texture):
    # Averaging the k x k fine pixels of a smooth image's bicubic gives back ~ the LR pixel.
    from scipy import ndimage

    lr = ndimage.gaussian_filter(real_texture.astype(float), 2)
    up = metrics.bicubic_upsample(lr, 4, out_dtype=np.float64)
    back = up.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    assert np.abs(back - lr)[4:-4, 4:-4].max() < 0.5


def test_finite_median_keeps_inf():
    assert metrics.finite_median([1.0, math.inf, math.inf]) == math.inf
    assert metrics.finite_median([]) is None
