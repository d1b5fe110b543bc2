"""Training pairs: fine-grid geometry on known maps, crop boxes, splits, manifest."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from dleem import pairs
from dleem.errors import DleemError
from dleem.io import read_image
from dleem.pairs import geometry
from dleem.registration import AffineMap
from dleem.workspace import Workspace


def specimen(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth, known grey field in LR pixel coordinates (wavelengths 5 to 20 LR px)."""
    rng = np.random.default_rng(seed)
    out = np.full(np.broadcast(x, y).shape, 100.0)
    for _ in range(12):
        wavelength = rng.uniform(5.0, 20.0)
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        kx, ky = np.cos(angle) * 2 * np.pi / wavelength, np.sin(angle) * 2 * np.pi / wavelength
        out += 10.0 * np.cos(kx * x + ky * y + phase)
    return out


def similarity(ratio: float, rotation_deg: float, tx: float, ty: float) -> AffineMap:
    """HR px -> LR px: scale 1/ratio, rotation, then translation (x = col, y = row)."""
    t = np.deg2rad(rotation_deg)
    c, s = np.cos(t), np.sin(t)
    lin = np.array([[c, s], [-s, c]]) / ratio
    return AffineMap(np.column_stack([lin, [tx, ty]]))


def render_hr(m: AffineMap, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    v, u = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    x, y = m.apply_xy(u, v)
    return specimen(x, y, seed)


def test_fine_grid_centres_follow_the_contract():
    y, x = pairs.fine_grid_lr_coords((2, 3, 5, 7), 4)
    assert y.shape == (12,) and x.shape == (16,)
    np.testing.assert_allclose(y[:4], [1.625, 1.875, 2.125, 2.375])
    # fine pixel j lies inside LR pixel floor(j / k) of the box
    j = np.arange(12)
    assert np.all(np.abs(y - (2 + j // 4)) < 0.5)
    assert np.isclose(x.mean(), 4.5)  # the box's centre in LR coordinates (cols 3..6)


def test_box_kernel_is_an_area_average():
    k = geometry.box_kernel(2.5)
    assert np.isclose(k.sum(), 1.0)
    assert np.allclose(k, k[::-1])
    assert k.size == 3 and np.allclose(k, [0.3, 0.4, 0.3])
    assert np.allclose(geometry.box_kernel(4.0), [0.125, 0.25, 0.25, 0.25, 0.125])


def test_translation_is_carried_between_grids_with_the_scale_factor():
    """HR cut from a world at HR pixel size; LR is its 4x4 block mean. With k = ratio = 4
    the target must be the HR pixels themselves, the LR crop the block means."""
    rng = np.random.default_rng(3)
    world = rng.normal(100, 20, (256, 256))
    lr = world.reshape(64, 4, 64, 4).mean(axis=(1, 3))
    v0, u0 = 52, 36  # HR-world pixel offsets of the region (multiples of 4: LR pixel edges)
    hr = world[v0 : v0 + 120, u0 : u0 + 100]
    # HR pixel u sits at world pixel u0 + u; world pixel w covers LR (w + 0.5) / 4 - 0.5.
    m = AffineMap(np.array([[0.25, 0.0, (u0 + 0.5) / 4 - 0.5], [0.0, 0.25, (v0 + 0.5) / 4 - 0.5]]))
    box = pairs.pair_lr_box(m, hr.shape, lr.shape)
    assert box == (13, 9, 43, 34)  # exactly the LR pixels the region covers
    target, mask = pairs.resample_hr_to_fine(hr, m, box, 4)
    r0, c0, r1, c1 = box
    np.testing.assert_allclose(target, world[4 * r0 : 4 * r1, 4 * c0 : 4 * c1], atol=1e-3)
    assert mask.all()
    # a map that forgot the scale factor on the translation would be off by whole pixels
    wrong = m.matrix.copy()
    wrong[:, 2] = [u0 / 4, v0 / 4]
    t_wrong, _ = pairs.resample_hr_to_fine(hr, AffineMap(wrong), box, 4)
    assert np.abs(t_wrong - target).mean() > 5


@pytest.mark.parametrize(("ratio", "rotation", "scale"), [(4.17, 3.0, 4), (7.9, -5.0, 8), (6.0, 2.0, 3)])
def test_target_reproduces_the_specimen_on_a_rotated_map(ratio, rotation, scale):
    m = similarity(ratio, rotation, 60.3, 41.7)
    hr = render_hr(m, (420, 400))
    lr_shape = (256, 256)
    box = pairs.pair_lr_box(m, hr.shape, lr_shape)
    r0, c0, r1, c1 = box
    target, mask = pairs.resample_hr_to_fine(hr, m, box, scale, gain=0.5, offset=7.0)
    assert target.shape == (scale * (r1 - r0), scale * (c1 - c0))
    assert target.dtype == np.float32 and mask.dtype == np.uint8
    assert mask.all()  # the box is fully covered
    strips = pairs.resample_hr_to_fine(hr, m, box, scale, gain=0.5, offset=7.0, chunk_px=5000)
    np.testing.assert_array_equal(strips[0], target)  # row strips change nothing
    y, x = pairs.fine_grid_lr_coords(box, scale)
    truth = 0.5 * specimen(*np.meshgrid(x, y)) + 7.0
    err = target - truth
    # area averaging over a footprint of 1/k LR px damps a 5-px wave by < 1 %
    assert np.sqrt(np.mean(err**2)) < 0.005 * truth.std()  # a 0.05 LR px shift gives 0.023
    # the box is the largest fully covered one: at least cos-sin loss of the footprint
    footprint = (420 / ratio) * (400 / ratio)
    t = np.deg2rad(abs(rotation))
    assert (r1 - r0) * (c1 - c0) > 0.85 * footprint / (np.cos(t) + np.sin(t)) ** 2
    # every LR pixel of the box lies inside the HR image
    inv = m.inverse()
    cy, cx = np.meshgrid([r0 - 0.5, r1 - 0.5], [c0 - 0.5, c1 - 0.5], indexing="ij")
    u, v = inv.apply_xy(cx, cy)
    assert u.min() >= -0.5 - 1e-9 and u.max() <= 400 - 0.5 + 1e-9
    assert v.min() >= -0.5 - 1e-9 and v.max() <= 420 - 0.5 + 1e-9


def test_anti_aliasing_averages_hr_finer_than_the_fine_grid():
    """Ratio 8 at k = 2: HR noise must be averaged over 4 x 4 HR pixels, not point-sampled."""
    rng = np.random.default_rng(1)
    hr = rng.normal(0, 1, (256, 256))
    m = similarity(8.0, 0.0, 3.0, 3.0)
    box = pairs.pair_lr_box(m, hr.shape, (64, 64))
    target, _ = pairs.resample_hr_to_fine(hr, m, box, 2)
    assert 0.15 < target.std() < 0.35  # 1/4 for a 4x4 mean; point sampling would give ~1


def test_mask_excludes_masked_hr_pixels_and_region_outside_lr():
    m = similarity(4.0, 0.0, -10.0, 5.0)  # starts left of the LR image
    hr = render_hr(m, (200, 200))
    box = pairs.pair_lr_box(m, hr.shape, (128, 128))
    assert box[1] == 0 and box[3] == 40  # clipped to the LR image
    valid = np.ones(hr.shape, bool)
    valid[100:110, :] = False
    _, mask = pairs.resample_hr_to_fine(hr, m, box, 4, hr_valid=valid)
    assert 0.85 < mask.mean() < 0.97
    with pytest.raises(DleemError):
        pairs.pair_lr_box(similarity(4.0, 0, 500, 500), hr.shape, (128, 128))


def _gap(a, b):
    """Chebyshev gap between two half-open boxes (negative: overlap)."""
    dr = max(a[0] - b[2], b[0] - a[2])
    dc = max(a[1] - b[3], b[1] - a[3])
    return max(dr, dc)


@pytest.mark.parametrize("layout", ["band", "stripes"])
@pytest.mark.parametrize(("shape", "seed"), [((240, 240), 0), ((120, 300), 1), ((300, 90), 2), ((64, 64), None)])
def test_splits_are_disjoint_with_a_guard_band(layout, shape, seed):
    guard = 8
    s = pairs.split_boxes(shape, guard=guard, layout=layout, seed=seed)
    area = {name: sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) for name, boxes in s.items()}
    total = shape[0] * shape[1]
    for boxes in s.values():
        for b in boxes:
            assert 0 <= b[0] < b[2] <= shape[0] and 0 <= b[1] < b[3] <= shape[1]
        for a, b in itertools.combinations(boxes, 2):
            assert _gap(a, b) >= 0
    for n1, n2 in itertools.combinations(s, 2):
        for a in s[n1]:
            for b in s[n2]:
                assert _gap(a, b) >= guard, (n1, a, n2, b)
    assert area["test"] / total == pytest.approx(0.2, abs=0.05)
    assert area["val"] / total == pytest.approx(0.1, abs=0.05)
    assert 0.45 < area["train"] / total < 0.7


def test_splits_are_seeded_and_fixed():
    a = pairs.split_boxes((200, 200), seed=5)
    assert a == pairs.split_boxes((200, 200), seed=5)
    variants = {json.dumps(pairs.split_boxes((200, 200), seed=s)) for s in range(12)}
    assert len(variants) > 2
    # the test area of the band layout is roughly square (evaluation tiles fit)
    (t,) = pairs.split_boxes((240, 240), seed=None)["test"]
    assert 0.7 < (t[2] - t[0]) / (t[3] - t[1]) < 1.4


def test_overlapping_regions_never_train_on_each_others_test_area():
    guard = 8
    boxes = [(10, 10, 110, 110), (60, 40, 160, 140)]
    splits = [pairs.split_boxes((100, 100), guard=guard, seed=i) for i in range(2)]
    sep = pairs.separate_regions(splits, boxes, guard)

    def glob(b, o):
        return (b[0] + o[0], b[1] + o[1], b[2] + o[0], b[3] + o[1])

    for i, j in [(0, 1), (1, 0)]:
        for a in sep[i]["train"] + sep[i]["val"]:
            for t in sep[j]["test"]:
                assert _gap(glob(a, boxes[i]), glob(t, boxes[j])) >= guard
        for a in sep[i]["train"]:
            for t in sep[j]["val"]:
                assert _gap(glob(a, boxes[i]), glob(t, boxes[j])) >= guard
        assert sep[i]["test"] == splits[i]["test"]


def test_image_stats_in_chunks_match_numpy():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4096, (301, 77)).astype(np.uint16)
    st = pairs.image_stats(img, rows_per_chunk=64)
    assert st.mean == pytest.approx(img.mean(), rel=1e-12)
    assert st.std == pytest.approx(img.std(), rel=1e-9)
    assert (st.min, st.max) == (img.min(), img.max())


CONTRACT_TOP = {"version", "scale", "lr_file", "lr_sha256", "lr_dtype", "lr_shape",
                "lr_pixel_size_um", "lr_stats", "lr_blur_sigma_px", "regions"}
CONTRACT_REGION = {"id", "hr_file", "hr_sha256", "hr_pixel_size_um", "ratio", "hr_to_lr", "gain",
                   "offset", "lr_box", "lr", "hr", "mask", "splits"}


def test_make_pairs_writes_the_manifest_of_the_contract(tmp_path):
    lr_y, lr_x = np.mgrid[0:160, 0:180].astype(np.float64)
    lr = np.clip(specimen(lr_x, lr_y), 0, 255).astype(np.uint8)
    m1 = similarity(4.17, 2.0, 20.2, 15.6)
    m2 = similarity(4.17, -1.0, 80.4, 70.1)
    regions = [
        pairs.RegionPair(id=f"HR_{i + 1}", hr=render_hr(m, (300, 320)), hr_to_lr=m, gain=0.9,
                         offset=3.0, hr_file=f"/data/HR_{i + 1}.tif", hr_sha256="0" * 64,
                         hr_pixel_size_um=0.4 / 4.17, ratio=4.17)
        for i, m in enumerate([m1, m2])
    ]
    manifest = pairs.make_pairs(lr, regions, tmp_path, lr_file="/data/LR.tif",
                                lr_sha256="1" * 64, lr_pixel_size_um=0.4, lr_blur_sigma_px=0.8)
    assert Workspace(tmp_path).read_pairs() == manifest
    on_disk = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert CONTRACT_TOP <= set(on_disk)
    assert on_disk["scale"] == 4 and on_disk["lr_dtype"] == "uint8"
    assert on_disk["lr_stats"]["mean"] == pytest.approx(lr.mean())
    for region in on_disk["regions"]:
        assert CONTRACT_REGION <= set(region)
        r0, c0, r1, c1 = region["lr_box"]
        crop = read_image(tmp_path / "pairs" / region["lr"])
        target = read_image(tmp_path / "pairs" / region["hr"])
        mask = read_image(tmp_path / "pairs" / region["mask"])
        assert crop.dtype == np.uint8 and np.array_equal(crop.data, lr[r0:r1, c0:c1])
        assert target.dtype == np.float32 and target.shape == (4 * (r1 - r0), 4 * (c1 - c0))
        assert mask.dtype == np.uint8 and mask.shape == target.shape
        assert crop.pixel_size_um == pytest.approx(0.4)
        assert target.pixel_size_um == pytest.approx(0.1)
        assert set(region["splits"]) == {"train", "val", "test"}
        assert np.allclose(region["hr_to_lr"], (m1 if region["id"] == "HR_1" else m2).matrix)


def test_target_reproduces_the_synthetic_specimen(tmp_path):
    """On `dleem.synth` (no noise, 16-bit, ratio 4.17, 3 degrees), the fine target made with
    the true map and grey levels equals the noise-free specimen seen through the HR beam."""
    synth = pytest.importorskip("dleem.synth")
    result = synth.generate(tmp_path, synth.SynthParams(
        seed=2, ratio=4.17, lr_size=256, hr_size=320, regions=1, noise=False, databar_rows=0,
        rotation_deg=3.0, bits=16))
    truth = result.truth
    reg = truth["regions"][0]
    hr = read_image(tmp_path / reg["file"]).data
    vmax = 2**16 - 1
    gain = truth["lr_gain"] / reg["gain"]
    offset = (truth["lr_offset"] - gain * reg["offset"]) * vmax
    hr_to_lr = AffineMap.from_list(reg["hr_to_lr"])
    box = pairs.pair_lr_box(hr_to_lr, hr.shape, truth["lr_shape"])
    target, mask = pairs.resample_hr_to_fine(hr, hr_to_lr, box, 4, gain=gain, offset=offset)
    assert mask.all() and target.shape == (4 * (box[2] - box[0]), 4 * (box[3] - box[1]))
    ref = synth.render_truth(truth, box, 4, blur="hr")

    def rel_error(shift_x: float, shift_y: float) -> float:
        m = np.array(reg["hr_to_lr"]) + [[0, 0, shift_x], [0, 0, shift_y]]
        t, _ = pairs.resample_hr_to_fine(hr, AffineMap(m), box, 4, gain=gain, offset=offset)
        return float(np.sqrt(np.mean((t - ref) ** 2)) / ref.std())

    best = rel_error(0.0, 0.0)
    assert best < 0.02  # measured 0.014 (interpolation of the 1 px HR blur, edges)
    assert abs(np.mean(target - ref)) < 0.001 * ref.std()
    # the target sits on the specimen to better than 0.01 LR px: any shift makes it worse
    for sx, sy in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert rel_error(sx, sy) > best
