"""The shared rules: scales, dtypes, bicubic, the LR forward model, the normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dleem import imaging
from dleem.errors import DleemError, ParameterError


def test_one_scale_range_and_its_default():
    assert imaging.SCALE_RANGE == (2, 8)
    assert [imaging.default_scale(r) for r in (1.2, 4.17, 7.9, 12.0)] == [2, 4, 8, 8]
    assert imaging.check_scale(4) == 4
    for bad in (1, 9, 12, 4.0, True):
        with pytest.raises(ParameterError, match="scale must be an integer from 2 to 8"):
            imaging.check_scale(bad)


def test_supported_dtypes_and_round_clip():
    assert imaging.check_dtype("uint16") == np.uint16
    with pytest.raises(DleemError, match="uint8, uint16, int16, float32, float64"):
        imaging.check_dtype("uint32")
    assert imaging.dtype_max("uint8") == 255 and imaging.dtype_max("float32") == 1.0
    out = imaging.to_dtype(np.array([-3.2, 0.5, 1.5, 254.6, 300.0]), np.uint8)
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 2, 255, 255]
    assert imaging.to_dtype(np.array([0.25]), np.float32).dtype == np.float32


def test_data_range_comes_from_the_dtype():
    assert imaging.dtype_range(np.uint8) == 255
    assert imaging.dtype_range(np.uint16) == 65535
    assert imaging.dtype_range(np.int16) == 65535
    assert imaging.dtype_range(np.float32) is None


def test_bicubic_is_exact_on_linear_ramps_and_keeps_constants():
    k = 4
    y, x = np.mgrid[0:20, 0:24].astype(np.float64)
    lr = 3.0 * x + 2.0 * y + 10.0
    up = imaging.bicubic_upsample(lr, k, out_dtype=np.float64)
    assert up.shape == (80, 96)
    # Fine pixel j has its centre at LR coordinate (j + 0.5) / k - 0.5.
    fy, fx = np.mgrid[0:80, 0:96].astype(np.float64)
    expect = 3.0 * ((fx + 0.5) / k - 0.5) + 2.0 * ((fy + 0.5) / k - 0.5) + 10.0
    inner = (slice(2 * k, -2 * k), slice(2 * k, -2 * k))  # away from replicated edges
    np.testing.assert_allclose(up[inner], expect[inner], atol=1e-9)
    const = imaging.bicubic_upsample(np.full((8, 8), 77, np.uint8), 3)
    assert const.dtype == np.uint8 and np.all(const == 77)


def test_bicubic_block_mean_reproduces_lr(real_texture):
    # Averaging the k x k fine pixels of a smooth image's bicubic gives back ~ the LR pixel.
    from scipy import ndimage

    lr = ndimage.gaussian_filter(real_texture.astype(float), 2)
    up = imaging.bicubic_upsample(lr, 4, out_dtype=np.float64)
    back = up.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    assert np.abs(back - lr)[4:-4, 4:-4].max() < 0.5


def test_forward_model_is_blur_then_area_mean():
    rng = np.random.default_rng(0)
    fine = rng.normal(100, 10, (64, 64)).astype(np.float32)
    # no blur: the plain k x k mean
    np.testing.assert_allclose(imaging.degrade(fine, 4, 0.0),
                               fine.reshape(16, 4, 16, 4).mean(axis=(1, 3)), rtol=1e-6)
    # a constant stays constant; blur spreads an impulse over about sigma LR px
    assert np.allclose(imaging.degrade(np.full((32, 32), 7.0), 4, 0.8), 7.0)
    impulse = np.zeros((64, 64), np.float32)
    impulse[32, 32] = 16.0
    low = imaging.degrade(impulse, 4, 1.0)
    assert low.sum() == pytest.approx(1.0, rel=1e-3) and low.max() < 0.2
    assert imaging.forward_margin_lr_px(1.0) == 5 and imaging.forward_margin_lr_px(0.0) == 0
    assert imaging.footprint_variance_lr_px2(0.5) == pytest.approx(0.25 + 1 / 12)


def test_normalization_round_trips_grey_levels_and_json():
    norm = imaging.Normalization.from_stats("uint16", mean=12000.0, std=3000.0)
    raw = np.array([[0, 1000, 12000, 65535]], np.uint16)
    x = norm.apply(raw)
    assert x.dtype == np.float32 and x[0, 2] == pytest.approx(0.0, abs=1e-6)
    back = norm.invert(x)
    assert back.dtype == np.uint16 and np.array_equal(back, raw)
    assert norm.invert(np.array([1e9], np.float32), "uint8").tolist() == [255]
    again = imaging.Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm
    with pytest.raises(DleemError, match="unknown key 'normalization.meen'"):
        imaging.Normalization.from_dict({**norm.to_dict(), "meen": 0.1})
    with pytest.raises(DleemError, match="std must be a finite number > 0"):
        imaging.Normalization("uint8", 255.0, 0.5, 0.0)
