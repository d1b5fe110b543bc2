"""Synthetic acquisition: exact ground-truth map, noise model, determinism, CLI contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from dleem.errors import DleemError
from dleem.synth import (
    SynthParams,
    generate,
    render_image,
    render_specimen,
    render_truth,
)
from dleem.synth.acquisition import acquire, lr_pixel_to_phys, specimen_extent
from dleem.synth.raster import fill_polygon, polygon_coverage
from dleem.synth.specimen import build_specimen, render

# Coarse pixels (2 µm LR) so that small images hold many grains and pores.
SMALL = dict(lr_size=160, hr_size=128, lr_pixel_size_um=2.0, regions=2, hr_supersample=4)


@pytest.fixture(scope="module")
def small_noisefree():
    return generate(None, SynthParams(seed=3, noise=False, bits=16, **SMALL))


@pytest.fixture(scope="module")
def distorted():
    """Non-integer ratio, visible rotation, shear, scale error and drift."""
    return generate(None, SynthParams(seed=5, noise=False, bits=16, ratio=5.3, rotation_deg=3.0,
                                      scale_error=0.02, shear=0.01, drift_px=(2.0, 3.0),
                                      jitter=0.0, lr_size=160, hr_size=96,
                                      lr_pixel_size_um=2.0, regions=1, hr_supersample=4))


def _to_signal(img: np.ndarray, gain: float, offset: float, bits: int = 16) -> np.ndarray:
    return (img.astype(np.float64) / (2**bits - 1) - offset) / gain


def test_map_reproduces_hr_image(small_noisefree):
    """Rendering the specimen through truth.json's hr_to_lr gives the HR image exactly."""
    truth = small_noisefree.truth
    for i, reg in enumerate(truth["regions"]):
        hr = small_noisefree.hr[i]
        sig = render_specimen(truth, np.array(reg["hr_to_lr"]), tuple(reg["shape"]),
                              blur_px=reg["blur_sigma_px"],
                              supersample=truth["params"]["hr_supersample"])
        err = np.abs(_to_signal(hr, reg["gain"], reg["offset"]) - sig)
        # Equal up to 16-bit rounding; a rare fine sample sitting on a threshold within
        # float rounding may flip (one of 81 samples of a pixel, blurred).
        assert np.percentile(err, 99.9) < 2e-5 and err.max() < 0.01
        # The frame centre lands on the region centre (+ the drift at mid-scan).
        m = np.array(reg["hr_to_lr"])
        rows, cols = reg["shape"]
        centre = m @ [(cols - 1) / 2, (rows - 1) / 2, 1]
        drift_lr = np.hypot(*reg["drift_px"]) / truth["ratio"]
        assert np.hypot(*(centre - reg["centre_lr"])) <= drift_lr + 1e-9
        # Pixel size: columns advance by 1/ratio LR pixels.
        assert np.hypot(*m[:, 0]) == pytest.approx(1 / truth["ratio"], rel=0.02)
        # Corners fall inside the LR image.
        corners = np.array([[-0.5, -0.5, 1], [cols - 0.5, rows - 0.5, 1],
                            [cols - 0.5, -0.5, 1], [-0.5, rows - 0.5, 1]]) @ m.T
        assert corners.min() > 0 and corners.max() < truth["lr_shape"][0] - 1
        # Noise-free re-render from the truth alone matches too.
        again = render_image(truth, i)
        assert np.abs(again - hr.astype(np.float64)).max() <= 0.51


def _shift_between(ref: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Least-squares translation (dx, dy) such that moving(x) ≈ ref(x + d)."""
    gy, gx = np.gradient(ref)
    a = np.stack([gx.ravel(), gy.ravel()], 1)
    d, *_ = np.linalg.lstsq(a, (moving - ref).ravel(), rcond=None)
    return d


@pytest.mark.parametrize("which", ["small", "distorted"])
def test_lr_grid_truth_agrees_at_mapped_positions(which, small_noisefree, distorted):
    """render_truth on the LR fine grid, sampled at hr_to_lr(HR pixel), gives the HR image.

    This is the check on the half-pixel conventions of the whole chain: any slip shows
    as a translation (a 0.01 LR px offset of the map is detected). Bound: 0.003 LR px,
    on a region of only 24-32 LR px, where the point-sampling quadrature of the
    renderings (4 x 4 samples per pixel) contributes about 0.001.
    """
    res = small_noisefree if which == "small" else distorted
    truth = res.truth
    reg = truth["regions"][0]
    m = np.array(reg["hr_to_lr"])
    rows, cols = reg["shape"]
    k = 8
    box = tuple(reg["lr_box"])
    r0, c0 = box[0], box[1]
    fine = render_truth(truth, box, scale=k, blur="hr")
    # HR pixel -> LR coords -> fine-grid index j = k (u - start) + (k - 1) / 2.
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    u = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
    v = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
    jx = k * (u - c0) + (k - 1) / 2
    jy = k * (v - r0) + (k - 1) / 2
    sampled = ndimage.map_coordinates(fine.astype(np.float64), [jy, jx], order=3, mode="nearest")
    sig_hr = _to_signal(res.hr[0], reg["gain"], reg["offset"])
    sig_truth = _to_signal(sampled, truth["lr_gain"], truth["lr_offset"], truth["bits"])
    inner = (slice(4, -4), slice(4, -4))
    a, b = sig_hr[inner], sig_truth[inner]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.995
    d_hr = _shift_between(a, b)  # HR pixels
    assert np.hypot(*d_hr) / truth["ratio"] < 0.003


def test_rotation_sign_matches_affine_map(distorted):
    """truth.json's rotation and AffineMap.rotation_deg (registration.json) use one convention."""
    from dleem.registration import AffineMap

    region = distorted.truth["regions"][0]
    fitted = AffineMap.from_list(region["hr_to_lr"]).rotation_deg
    assert region["rotation_deg"] == pytest.approx(3.0, abs=1e-9)
    assert fitted == pytest.approx(3.0, abs=1.0)  # same sign; shear and drift tilt it a little


def test_windows_are_consistent(small_noisefree):
    """A window rendered alone equals the same part of a larger rendering (tiling, halos)."""
    truth = small_noisefree.truth
    big = render_truth(truth, (10, 20, 70, 90), scale=2, blur="lr")
    part = render_truth(truth, (30, 45, 50, 60), scale=2, blur="lr")
    assert np.abs(big[40:80, 50:80] - part).max() < 1e-2  # DN of 65535


def test_noise_scales_with_dose():
    """Shot-noise std ∝ 1/sqrt(dose) on the same noise-free image (Poisson)."""
    stds = {}
    base = SynthParams(seed=1, bits=16, read_noise=0.0, line_noise=0.0, lr_size=96,
                       regions=0, lr_pixel_size_um=2.0)
    clean = generate(None, base, noise=False).lr.astype(np.float64)
    for dose in (40.0, 640.0):
        noisy = generate(None, base, lr_dose=dose).lr.astype(np.float64)
        stds[dose] = np.std(noisy - clean)
    assert stds[40.0] / stds[640.0] == pytest.approx(4.0, rel=0.05)
    # And on a flat area, the std is gain * sqrt(S / dose).
    flat = np.full((200, 200), 0.5)
    img = acquire(flat, dose=100.0, gain=1.0, offset=0.0, bits=16, noise=True, read_noise=0.0,
                  line_noise=0.0, charging=0.0, rng=np.random.default_rng(0))
    assert np.std(img / 65535.0) == pytest.approx(np.sqrt(0.5 / 100), rel=0.03)


def test_deterministic_and_seeded():
    p = SynthParams(seed=2, lr_size=64, hr_size=32, lr_pixel_size_um=2.0, regions=1)
    a, b = generate(None, p), generate(None, p)
    c = generate(None, p, seed=4)
    assert np.array_equal(a.lr, b.lr) and np.array_equal(a.hr[0], b.hr[0])
    assert a.truth["regions"] == b.truth["regions"]
    assert not np.array_equal(a.lr, c.lr)


def test_regions_inside_and_disjoint():
    res = generate(None, SynthParams(seed=0, noise=False, lr_size=200, hr_size=64, regions=5,
                                     lr_pixel_size_um=2.0, ratio=3.0))
    boxes = [r["lr_box"] for r in res.truth["regions"]]
    for i, (r0, c0, r1, c1) in enumerate(boxes):
        assert 0 <= r0 < r1 <= 200 and 0 <= c0 < c1 <= 200
        for r0b, c0b, r1b, c1b in boxes[i + 1:]:
            assert r1 <= r0b or r1b <= r0 or c1 <= c0b or c1b <= c0


def test_bad_parameters():
    with pytest.raises(DleemError, match="ratio"):
        generate(None, SynthParams(ratio=0.5, lr_size=64, hr_size=32))
    with pytest.raises(DleemError, match="cannot place"):
        generate(None, SynthParams(lr_size=64, hr_size=128, regions=3, ratio=2.0))


def test_polygon_fill_is_unbiased():
    """Centre-sampling fill: area and centroid of a disk polygon within sampling error."""
    rng = np.random.default_rng(0)
    th = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    for _ in range(5):
        c = rng.uniform(60, 61, 2)
        poly = c + 40 * np.stack([np.cos(th), np.sin(th)], 1)
        img = np.zeros((128, 128), np.uint8)
        fill_polygon(img, poly, 1)
        area = 0.5 * abs(np.sum(poly[:, 0] * np.roll(poly[:, 1], -1)
                                - np.roll(poly[:, 0], -1) * poly[:, 1]))
        assert abs(img.sum() - area) < 0.01 * area
        yy, xx = np.nonzero(img)
        assert abs(xx.mean() - c[0]) < 0.05 and abs(yy.mean() - c[1]) < 0.05


def test_polygon_coverage_is_exact():
    rng = np.random.default_rng(1)
    th = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    for _ in range(3):
        c = rng.uniform(60, 61, 2)
        poly = c + 40 * np.stack([np.cos(th), np.sin(th)], 1)
        r0, c0, cov = polygon_coverage(poly, (128, 128))
        xx = np.arange(c0, c0 + cov.shape[1])
        assert abs((cov * xx).sum() / cov.sum() - c[0]) < 1e-3
    # A rectangle: partial columns, clipped at the image edge.
    r0, c0, cov = polygon_coverage(np.array([[-4.7, 10.2], [5.7, 10.2], [5.7, 30.6],
                                             [-4.7, 30.6]]), (64, 64))
    assert (r0, c0, cov.shape) == (10, 0, (22, 7))
    assert cov.sum() == pytest.approx(6.2 * 20.4)  # exact area in y too
    assert cov[0, 0] == pytest.approx(0.3) and cov[-1, -1] == pytest.approx(0.1 * 0.2)


def test_area_integration_converges():
    """2 x 2 samples per LR pixel vs 8 x 8: the quadrature error shows as an
    apparent shift of ~0.002 LR px on a 128 px window (~0.001 on 256 px windows)."""
    p = SynthParams(lr_size=512)
    spec = build_specimen(p.specimen, 0, specimen_extent(p))
    m = lr_pixel_to_phys(p)
    m[:, 2] = [100.0, 60.0]  # a 128 x 128 LR px window at (120, 200) LR px
    coarse = render(spec, m, (128, 128), blur_sigma_px=0.8, supersample=2).astype(float)
    fine = render(spec, m, (128, 128), blur_sigma_px=0.8, supersample=8).astype(float)
    assert np.sqrt(np.mean((coarse - fine) ** 2)) < 0.01  # signal 0-1
    assert np.hypot(*_shift_between(fine, coarse)) < 0.003


def test_polygon_coverage_matches_fine_sampling():
    """Exact pixel areas of an irregular polygon, clipped by the image, against 64 x 64
    point samples per pixel (error of the sampling ~1/64 along the outline)."""
    from matplotlib.path import Path as MplPath

    rng = np.random.default_rng(4)
    th = np.sort(rng.uniform(0, 2 * np.pi, 12))
    rad = rng.uniform(5, 12, 12)
    poly = np.c_[10 + rad * np.cos(th), 9 + rad * np.sin(th)]
    n = 64
    ys, xs = np.mgrid[0 : 20 * n, 0 : 18 * n]
    pts = np.c_[(xs.ravel() + 0.5) / n - 0.5, (ys.ravel() + 0.5) / n - 0.5]
    ref = MplPath(poly).contains_points(pts).reshape(20, n, 18, n).mean(axis=(1, 3))
    for p in (poly, poly[::-1]):  # either orientation
        r0, c0, cov = polygon_coverage(p, (20, 18))
        full = np.zeros((20, 18))
        full[r0 : r0 + cov.shape[0], c0 : c0 + cov.shape[1]] = cov
        assert np.abs(full - ref).max() < 0.005


def test_noise_free_pair_registers_without_bias():
    """The registration's 'no bias' target on dleem.synth itself: noise-free (16-bit, so no 8-bit rounding
    noise) HR 512 px at ratio 4, 2° rotation. With edges sampled at row centres and 2 x 2
    LR samples (before) the corner errors were 0.0036-0.0059 LR px; with exact polygon
    areas and 4 x 4 LR samples 0.0007-0.0014 (8 x 8: 0.0003-0.0007)."""
    from dleem.registration import AffineMap, register_region

    errs = []
    for seed in (1000, 1001, 1002):
        res = generate(None, seed=seed, ratio=4.0, lr_size=195, hr_size=512, regions=1,
                       rotation_deg=2.0, scale_error=0.01, noise=False, bits=16)
        truth = AffineMap.from_list(res.truth["regions"][0]["hr_to_lr"])
        fit = register_region(res.lr, res.hr[0], 4.0)
        errs.append(fit.hr_to_lr.corners_rms_error(truth, res.hr[0].shape))
    assert max(errs) < 0.002, errs


def test_cli_writes_contract(tmp_path):
    from dleem.cli import main
    from dleem.io import read_image

    out = tmp_path / "syn"
    rc = main(["synth", "-o", str(out), "--seed", "7", "--ratio", "4.5", "--regions", "2",
               "--size", "128", "--hr-size", "64", "--pixel-size", "2", "--bits", "16"])
    assert rc == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 7 and truth["ratio"] == 4.5
    assert truth["lr_pixel_size_um"] == 2.0
    assert truth["hr_pixel_size_um"] == pytest.approx(2.0 / 4.5)
    lr = read_image(out / "LR.tif")
    assert lr.shape == tuple(truth["lr_shape"]) == (128, 128)
    assert lr.dtype == np.uint16
    assert lr.pixel_size_um == pytest.approx(2.0)
    assert [r["file"] for r in truth["regions"]] == ["HR_1.tif", "HR_2.tif"]
    for key in ("lr_shape", "lr_blur_sigma_px", "lr_dose", "lr_gain", "lr_offset", "bits",
                "params", "specimen"):
        assert key in truth
    for key in ("shape", "hr_to_lr", "lr_to_hr", "lr_box", "pixel_size_um", "blur_sigma_px",
                "dose", "gain", "offset", "rotation_deg", "scale_error", "shear", "drift_px"):
        assert key in truth["regions"][0]
    for reg in truth["regions"]:
        hr = read_image(out / reg["file"])
        assert hr.shape == tuple(reg["shape"]) == (64, 64)
        assert hr.pixel_size_um == pytest.approx(2.0 / 4.5)
        assert np.array(reg["hr_to_lr"]).shape == (2, 3)
    assert main(["synth", "-o", str(out), "--ratio", "1"]) == 2


def test_acquire_region_images_the_given_lr_box(tmp_path):
    """A new HR region at an LR box (the planner's proposal): its frame covers the box, and
    area-averaged to the LR grid it matches the LR map there."""
    from dleem.synth import acquire_region, generate

    result = generate(None, seed=5, lr_size=160, hr_size=128, regions=1)
    box = (40, 60, 88, 108)
    hr, entry = acquire_region(result.truth, box, seed=1)
    ratio = result.truth["ratio"]
    assert hr.shape == (round(48 * ratio), round(48 * ratio)) and hr.dtype == result.lr.dtype
    assert entry["lr_box"] == list(box)
    corners = np.array([[-0.5, -0.5, 1], [hr.shape[1] - 0.5, hr.shape[0] - 0.5, 1]]) @ np.array(entry["hr_to_lr"]).T
    np.testing.assert_allclose(corners, [[59.5, 39.5], [107.5, 87.5]], atol=1e-6)  # (x, y) of the box edges
    k = int(ratio)
    low = hr.astype(np.float64).reshape(48, k, 48, k).mean(axis=(1, 3))
    lr = result.lr[40:88, 60:108].astype(np.float64)
    assert np.corrcoef(low.ravel(), lr.ravel())[0, 1] > 0.8
    again, _ = acquire_region(result.truth, box, seed=1)
    np.testing.assert_array_equal(hr, again)
