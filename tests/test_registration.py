"""Registration: map algebra, pixel conventions, sub-pixel accuracy on exact known maps, gates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dleem.errors import RegistrationError
from dleem.registration import (
    AffineMap,
    RegistrationResult,
    image_corners,
    register_region,
    scale_map,
)
from dleem.registration.locate import locate
from dleem.registration.simulate import simulate_pair, texture

LR_SHAPE = (100, 100)
HR_SHAPE = (240, 240)


def _pair(**kw):
    base = dict(ratio=4.0, lr_shape=LR_SHAPE, hr_shape=HR_SHAPE, seed=3, centre_lr=(50.3, 48.6))
    base.update(kw)
    return simulate_pair(**base)


# --- AffineMap ---------------------------------------------------------------------------
def test_affine_algebra_roundtrip():
    a = AffineMap.from_params(0.25, 4.0, 10.5, -3.25, center=(100, 50))
    b = AffineMap.from_params(1.3, -20.0, 1.0, 2.0, shear=0.05)
    pts = np.array([[0.0, 0.0], [10.0, 5.0], [-3.0, 7.5]])
    np.testing.assert_allclose(a.compose(b).apply(pts), a.apply(b.apply(pts)), atol=1e-12)
    np.testing.assert_allclose(a.inverse().apply(a.apply(pts)), pts, atol=1e-10)
    assert AffineMap.from_list(json.loads(json.dumps(a.to_list()))) == a
    assert a.mean_scale == pytest.approx(0.25)
    assert a.rotation_deg == pytest.approx(4.0)
    assert a.corners_rms_error(a, (64, 64)) == 0.0
    shifted = AffineMap(a.matrix + np.array([[0, 0, 0.3], [0, 0, -0.4]]))
    assert a.corners_rms_error(shifted, (64, 64)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        AffineMap(np.zeros((2, 3))).inverse()


def test_scale_map_carries_translation_with_the_factor():
    # LR pixel i covers HR pixels 4i..4i+3: its centre is HR 4i + 1.5.
    m = scale_map(4.0)  # HR (fine) -> LR (coarse)
    np.testing.assert_allclose(m.apply(np.array([1.5, 1.5])), [0.0, 0.0])
    np.testing.assert_allclose(m.apply(np.array([5.5, 9.5])), [1.0, 2.0])
    # Outer corners coincide: HR (-0.5, -0.5) is LR (-0.5, -0.5).
    np.testing.assert_allclose(m.apply(image_corners((8, 8))), image_corners((2, 2)))
    # A shift of d HR px is a shift of d / 4 LR px.
    shift_hr = AffineMap(np.array([[1.0, 0, 6.0], [0, 1.0, -2.0]]))
    np.testing.assert_allclose((m @ shift_hr).translation - m.translation, [1.5, -0.5])


def test_warp_convention():
    img = np.zeros((20, 30), np.float32)
    img[5, 7] = 1.0
    m = AffineMap(np.array([[1.0, 0, 3.0], [0, 1.0, 2.0]]))  # moves content by (+3, +2)
    out = m.warp(img, (20, 30), order="nearest")
    assert out[7, 10] == 1.0
    assert np.isnan(out[0, 0])  # source (-3, -2) is outside
    back = m.inverse().warp(out, (20, 30), order="nearest", fill=0.0)
    assert back[5, 7] == 1.0


# --- refinement accuracy on exact known maps --------------------------------------------
def test_noise_free_subpixel_and_unbiased():
    p = _pair(rotation_deg=3.0)
    res = register_region(p.lr, p.hr, 4.0)
    assert isinstance(res, RegistrationResult)
    err = res.hr_to_lr.corners_rms_error(p.hr_to_lr, p.hr.shape)
    assert err < 0.003, err
    assert res.ratio == pytest.approx(4.0, abs=2e-4)
    assert res.rotation_deg == pytest.approx(3.0, abs=0.01)
    assert res.blur_sigma_lr_px == pytest.approx(0.8, abs=0.1)
    entry = res.to_record("HR.tif", ratio_source="user", hr_shape=p.hr.shape)
    json.dumps(entry.to_dict())


def test_twice_the_blur_is_estimated_and_stays_unbiased():
    p = _pair(rotation_deg=2.0, lr_blur=1.6)
    res = register_region(p.lr, p.hr, 4.0)
    assert res.hr_to_lr.corners_rms_error(p.hr_to_lr, p.hr.shape) < 0.003
    # LR beam beyond the HR image's own blur: sqrt(1.6^2 - (0.6/4)^2)
    assert res.blur_sigma_lr_px == pytest.approx(1.593, abs=0.05)


def test_translation_on_hr_grid_is_carried_to_lr_with_scale():
    """Shift the HR field of view by (+10, -6) HR px: the LR map moves by (2.5, -1.5) LR px."""
    a = _pair(rotation_deg=0.0)
    shift = AffineMap(np.array([[1.0, 0, 10.0], [0, 1.0, -6.0]]))
    b = _pair(hr_to_lr=a.hr_to_lr @ shift)
    ra = register_region(a.lr, a.hr, 4.0)
    rb = register_region(b.lr, b.hr, 4.0)
    centre = np.array([(HR_SHAPE[1] - 1) / 2, (HR_SHAPE[0] - 1) / 2])
    d = rb.hr_to_lr.apply(centre) - ra.hr_to_lr.apply(centre)
    np.testing.assert_allclose(d, [2.5, -1.5], atol=0.005)


def test_noisy_non_integer_ratio_scale_error_gain_offset_16bit():
    truth_ratio = 4.17 * 1.04
    p = _pair(ratio=truth_ratio, rotation_deg=-2.0, lr_noise=0.01, hr_noise=0.005,
              lr_gain=0.7, lr_offset=0.1, dtype=np.uint16)
    assert p.lr.dtype == np.uint16
    res = register_region(p.lr, p.hr, 4.17)  # nominal ratio 4 % off
    err = res.hr_to_lr.corners_rms_error(p.hr_to_lr, p.hr.shape)
    pred = res.uncertainty["corner_rms_lr_px"]
    assert err < 0.02, err
    assert err < 4 * pred + 1e-3, (err, pred)
    assert res.ratio == pytest.approx(truth_ratio, rel=2e-3)
    assert res.gain == pytest.approx(0.7, rel=0.05)  # same full-scale dtype for both
    r0, c0, r1, c1 = res.lr_box
    assert res.residual_map.shape == (r1 - r0, c1 - c0)
    assert np.isfinite(res.residual_map).mean() > 0.6
    assert res.residual == pytest.approx(0.01 * 0.7 * 65535, rel=0.3)


def test_masked_databar_and_robust_weights():
    p = _pair(rotation_deg=1.0, lr_noise=0.005)
    lr = p.lr.copy()
    lr[90:, :] = 1.0  # a bright databar
    lr[40:46, 40:46] = 1.0  # a charging spot inside the footprint
    mask = np.ones(lr.shape, bool)
    mask[90:, :] = False
    res = register_region(lr, p.hr, 4.0, lr_mask=mask, robust="tukey")
    assert res.hr_to_lr.corners_rms_error(p.hr_to_lr, p.hr.shape) < 0.02


# --- coarse search and gates -------------------------------------------------------------
def test_locate_rotation_and_ratio_error_without_being_told():
    p = _pair(ratio=4.0 * 1.12, rotation_deg=9.0, hr_shape=(200, 200))
    res = register_region(p.lr, p.hr, 4.0)
    assert res.hr_to_lr.corners_rms_error(p.hr_to_lr, p.hr.shape) < 0.01


def test_rotation_search_finds_large_rotation():
    p = _pair(rotation_deg=35.0, hr_shape=(200, 200))
    res = register_region(p.lr, p.hr, 4.0, rotation_search=True)
    assert res.hr_to_lr.corners_rms_error(p.hr_to_lr, p.hr.shape) < 0.01
    c = locate(p.lr, p.hr, 4.0, rotation_search=True)
    assert c.ncc_distinctness > 1.3


def test_region_absent_from_lr_raises():
    p = _pair()
    other = _pair(seed=11)  # another specimen
    with pytest.raises(RegistrationError, match="not found|distinct"):
        register_region(p.lr, other.hr, 4.0)


def test_flat_region_raises():
    p = _pair()
    flat = np.full(HR_SHAPE, 0.5, np.float32)
    with pytest.raises(RegistrationError, match="flat"):
        register_region(p.lr, flat, 4.0)
    noisy = flat + np.random.default_rng(0).normal(0, 0.01, HR_SHAPE).astype(np.float32)
    with pytest.raises(RegistrationError):
        register_region(p.lr, noisy, 4.0)


def test_periodic_region_raises():
    y, x = np.mgrid[0:400, 0:400]
    spec = (0.5 + 0.4 * np.sin(2 * np.pi * x / 64) * np.sin(2 * np.pi * y / 64)).astype(np.float32)
    p = simulate_pair(ratio=4.0, lr_shape=(50, 50), hr_shape=(120, 120), specimen=spec,
                      oversample=8)
    with pytest.raises(RegistrationError, match="distinct"):
        register_region(p.lr, p.hr, 4.0)


def test_bad_arguments():
    p = _pair()
    with pytest.raises(RegistrationError):
        register_region(p.lr, p.hr, -1.0)
    with pytest.raises(RegistrationError):
        register_region(p.lr, p.hr, 4.0, robust="cauchy")
    with pytest.raises(RegistrationError, match="larger"):
        register_region(p.lr[:20, :20], p.hr, 4.0)


def test_texture_is_deterministic():
    a = texture((64, 64), seed=1)
    assert np.array_equal(a, texture((64, 64), seed=1))
    assert 0.0 <= a.min() and a.max() <= 1.0


class _Lazy:
    """An array-like that only supports what a lazy (zarr/dask/memmap) image supports."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return self._a[key]

    def __array__(self, dtype=None, copy=None):
        self.reads += 1
        return self._a if dtype is None else self._a.astype(dtype)


def test_lazy_lr_input_and_uint8():
    p = _pair(rotation_deg=2.0, dtype=np.uint8)
    lazy = _Lazy(p.lr)
    res = register_region(lazy, p.hr, 4.0)
    assert lazy.reads >= 1
    assert res.hr_to_lr.corners_rms_error(p.hr_to_lr, p.hr.shape) < 0.01
