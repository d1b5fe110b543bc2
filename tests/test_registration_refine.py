"""refine against the shared LR forward model: the blur it fits is the sigma of dleem.imaging.degrade.

refine models the LR pixel with a Gaussian beam on an exact box (coarse levels: the Gaussian
footprint approximation of variance ``footprint_variance_lr_px2``); here the LR image is made
by ``degrade`` itself from the HR image, so the truth is known exactly: HR pixels are the fine
pixels of ``degrade``, and the HR -> LR map is ``scale_map(K)`` (fine pixel j centred at LR
coordinate (j + 0.5) / K - 0.5).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from dleem.imaging import degrade, footprint_variance_lr_px2
from dleem.registration.refine import refine
from dleem.registration.transform import AffineMap, scale_map

K = 4
LR_PX = 96
SHAPE = (K * LR_PX, K * LR_PX)


def _texture(seed: int = 0) -> np.ndarray:
    """Smooth random field (float64): Gaussian-filtered noise at 3, 6 and 12 HR px."""
    rng = np.random.default_rng(seed)
    acc = np.zeros(SHAPE)
    for sigma, amp in ((3.0, 1.0), (6.0, 1.0), (12.0, 0.7)):
        n = ndimage.gaussian_filter(rng.standard_normal(SHAPE), sigma, mode="reflect")
        acc += amp * n / n.std()
    return 100.0 + 20.0 * acc


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return _texture()


def _initial(truth: AffineMap) -> AffineMap:
    """The truth, off by 0.2 % in scale, 0.2 deg and (0.3, -0.2) LR px."""
    c = (LR_PX - 1) / 2.0
    return AffineMap.from_params(1.002, 0.2, 0.3, -0.2, center=(c, c)).compose(truth)


def test_truth_is_scale_map():
    """The fine-grid convention: fine pixel j has its centre at LR (j + 0.5) / K - 0.5."""
    j = np.array([[0.0, 0.0], [3.0, 5.0], [SHAPE[1] - 1.0, 7.0]])
    np.testing.assert_allclose(scale_map(K).apply(j), (j + 0.5) / K - 0.5, atol=1e-12)


@pytest.mark.parametrize("start_level", [1, 2])
@pytest.mark.parametrize("s", [0.6, 1.0])
def test_refine_fits_degrade_blur_and_map(hr, s, start_level):
    truth = scale_map(K)
    res = refine(degrade(hr, K, s), hr, _initial(truth), start_level=start_level)
    assert abs(res.blur_sigma_lr_px - s) < 0.05, res.blur_sigma_lr_px
    assert truth.corners_rms_error(res.hr_to_lr, SHAPE) < 0.01
    assert res.gain == pytest.approx(1.0, abs=2e-3)
    assert res.offset == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize("s", [0.6, 1.0])
def test_refine_blur_bias_is_the_hr_grid_variance(hr, s):
    """The fit is low by the model's extra 1/3 HR px**2 (see the refine module docstring).

    Measured at K = 4: 0.5831 at s = 0.6 and 0.9905 at s = 1.0 (predicted 0.5824, 0.9895).
    """
    truth = scale_map(K)
    res = refine(degrade(hr, K, s), hr, _initial(truth), start_level=1)
    expected = math.sqrt(s * s - (1.0 / 12.0 + 0.25) / K**2)
    assert res.blur_sigma_lr_px == pytest.approx(expected, abs=4e-3)


@pytest.mark.parametrize("s", [0.6, 1.0])
def test_refine_recovers_gain_and_offset(hr, s):
    truth = scale_map(K)
    res = refine(2.0 * degrade(hr, K, s) + 10.0, hr, _initial(truth), start_level=1)
    assert res.gain == pytest.approx(2.0, abs=2e-3)
    assert res.offset == pytest.approx(10.0, abs=0.3)  # gain error x mean grey level (~100)
    assert abs(res.blur_sigma_lr_px - s) < 0.05
    assert truth.corners_rms_error(res.hr_to_lr, SHAPE) < 0.01


@pytest.mark.parametrize("s", [0.6, 1.0])
def test_footprint_variance_is_degrade_psf_variance(s):
    """The Gaussian footprint's variance is that of degrade's point spread (beam + LR pixel).

    degrade's response of one LR pixel to a fine impulse, as a function of the impulse
    position, has variance s**2 + (k**2 - 1) / (12 k**2) LR px**2: the continuous footprint
    s**2 + 1/12 less the fine grid's own 1 / (12 k**2).
    """
    k = 8
    n = 64 * k
    centre = n // 2  # LR pixel 32 covers fine pixels 256 .. 263
    resp = np.empty(n)
    for j in range(n):
        img = np.zeros((1, n))
        img[0, j] = 1.0
        resp[j] = degrade(np.repeat(img, k, axis=0), k, s)[0, centre // k]
    pos = (np.arange(n) + 0.5) / k - 0.5  # fine pixel centres, LR px
    mean = float(np.sum(resp * pos) / resp.sum())
    var = float(np.sum(resp * (pos - mean) ** 2) / resp.sum())
    assert mean == pytest.approx(centre // k, abs=1e-6)
    assert var == pytest.approx(footprint_variance_lr_px2(s) - 1.0 / (12 * k * k), rel=1e-3)
