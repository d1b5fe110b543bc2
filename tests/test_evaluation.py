"""Evaluation end to end on a small fabricated workspace: sampling, scoring, metrics.json.

`make_workspace` builds a tiny but real workspace (LR.tif, pairs/manifest.json, HR target and
mask, a registration.json and a QC figure) from a synthetic pore image, without registration
or training; the report and browser tests reuse it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dleem import imaging
from dleem.errors import DleemError
from dleem.evaluation import pores
from dleem.evaluation.evaluate import EvalOptions, Upscaler, evaluate, open_workspace
from dleem.evaluation.sampling import sample_tiles

K = 4
LR_PX = 0.4
LR_SHAPE = (160, 160)
LR_BOX = [16, 16, 144, 144]  # 128 x 128 LR crop
SPLITS = {"train": [[0, 0, 56, 128]], "val": [[64, 72, 128, 128]], "test": [[64, 0, 128, 64]]}


def fine_specimen(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Bright grains with dark pores of many sizes, on the fine grid (grey levels 0-255)."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, 170.0) + 25 * ndimage.gaussian_filter(rng.normal(size=shape), 6)
    for _ in range(int(shape[0] * shape[1] / 900)):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.choice([2.5, 4, 6, 9, 13])
        y0, x0 = max(0, int(cy - r) - 1), max(0, int(cx - r) - 1)
        y1, x1 = min(shape[0], int(cy + r) + 2), min(shape[1], int(cx + r) + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1][np.hypot(yy - cy, xx - cx) <= r] = 45.0
    return ndimage.gaussian_filter(img, 0.7)


_FINE_CACHE: dict[int, np.ndarray] = {}


def cached_fine(seed: int = 0) -> np.ndarray:
    if seed not in _FINE_CACHE:
        _FINE_CACHE[seed] = fine_specimen((K * LR_SHAPE[0], K * LR_SHAPE[1]), seed)
    return _FINE_CACHE[seed]


def make_workspace(root: Path, seed: int = 0, *, ws: Path | None = None) -> Path:
    """A workspace (``root/ws`` or ``ws``) with pairs/, registration.json and qc/, its LR and
    HR images in ``root/data``; returns the workspace."""
    from dleem.io import write_image

    fine = cached_fine(seed)
    lr_f = ndimage.gaussian_filter(fine, 0.8 * K).reshape(LR_SHAPE[0], K, LR_SHAPE[1], K)
    lr_f = lr_f.mean(axis=(1, 3)) + np.random.default_rng(seed + 1).normal(0, 3, LR_SHAPE)
    lr = np.clip(np.rint(lr_f), 0, 255).astype(np.uint8)
    data = root / "data"
    ws = ws if ws is not None else root / "ws"
    (ws / "pairs").mkdir(parents=True, exist_ok=True)
    (ws / "qc").mkdir(exist_ok=True)
    write_image(data / "LR.tif", lr, pixel_size_um=LR_PX)
    r0, c0, r1, c1 = LR_BOX
    hr = fine[K * r0:K * r1, K * c0:K * c1]
    hr = (hr + np.random.default_rng(seed + 2).normal(0, 2, hr.shape)).astype(np.float32)
    write_image(data / "HR_1.tif", np.clip(hr, 0, 255).astype(np.uint8),
                pixel_size_um=LR_PX / K)
    write_image(ws / "pairs" / "HR_1_lr.tif", lr[r0:r1, c0:c1], pixel_size_um=LR_PX)
    write_image(ws / "pairs" / "HR_1_hr.tif", hr, pixel_size_um=LR_PX / K)
    mask = np.ones(hr.shape, np.uint8)
    mask[-8:, 200:] = 0  # an invalid strip inside the test box
    write_image(ws / "pairs" / "HR_1_mask.tif", mask, pixel_size_um=LR_PX / K)
    hr_to_lr = [[1 / K, 0, c0 + 0.5 / K - 0.5], [0, 1 / K, r0 + 0.5 / K - 0.5]]
    manifest = {
        "version": 1, "scale": K, "lr_file": str((data / "LR.tif").resolve()),
        "lr_sha256": "0" * 64, "lr_dtype": "uint8", "lr_shape": list(LR_SHAPE),
        "lr_pixel_size_um": LR_PX, "lr_stats": {"mean": float(lr.mean()), "std": float(lr.std()),
                                               "min": 0, "max": 255},
        "lr_blur_sigma_px": 0.8,
        "regions": [{"id": "HR_1", "hr_file": str((data / "HR_1.tif").resolve()),
                     "hr_sha256": "1" * 64, "hr_pixel_size_um": LR_PX / K, "ratio": float(K),
                     "hr_to_lr": hr_to_lr, "gain": 1.0, "offset": 0.0, "lr_box": LR_BOX,
                     "lr": "HR_1_lr.tif", "hr": "HR_1_hr.tif", "mask": "HR_1_mask.tif",
                     "splits": SPLITS}],
    }
    (ws / "pairs" / "manifest.json").write_text(json.dumps(manifest))
    (ws / "registration.json").write_text(json.dumps({"version": 1, "lr_file": manifest["lr_file"], "regions": [
        {"file": manifest["regions"][0]["hr_file"], "status": "ok", "hr_to_lr": hr_to_lr,
         "ncc_peak": 0.93, "ncc_distinctness": 4.2, "residual": 2.1, "iterations": 12,
         "blur_sigma_lr_px": 0.8, "gain": 1.0, "offset": 0.0, "message": ""}]}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 3), dpi=60)
    ax.imshow(lr, cmap="gray")
    fig.savefig(ws / "qc" / "HR_1_overlay.png")
    plt.close(fig)
    return ws


def sharpened(lr: np.ndarray) -> np.ndarray:
    """A stand-in 'model': bicubic then an unsharp mask (deterministic in the LR window)."""
    up = imaging.bicubic_upsample(lr, K, out_dtype=np.float64)
    out = up + 0.8 * (up - ndimage.gaussian_filter(up, 2.0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def fake_models() -> list[Upscaler]:
    return [Upscaler("model-sharp", sharpened, 6, {"model_dir": None, "note": "test stand-in"})]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("evalws"))


def test_tiles_are_an_independent_grid_inside_test_boxes_and_valid_pixels(workspace):
    ws = open_workspace(workspace)
    region = ws.manifest.regions[0]
    tiles = sample_tiles([region], ws.masks, scale=K, tile_size=64, seed=3)
    test = region.splits.test[0]
    others = region.splits.train + region.splits.val
    size = 64 // K
    # A 64 x 64 LR px test box on a 16-px grid anchored at LR (0, 0): 16 cells, minus the
    # one under the masked strip.
    assert len(tiles) == 15
    cells = set()
    for t in tiles:
        r0, c0, r1, c1 = t.crop_box
        assert test[0] <= r0 and r1 <= test[2] and test[1] <= c0 and c1 <= test[3]
        for b in others:  # never overlaps a training or validation box
            assert r1 <= b[0] or b[2] <= r0 or c1 <= b[1] or b[3] <= c0
        g0, g1 = t.lr_box[0], t.lr_box[1]
        assert g0 % size == 0 and g1 % size == 0  # on the grid of the LR image
        assert (g0 - r0, g1 - c0) == tuple(region.lr_box[:2])
        fr0, fc0, fr1, fc1 = t.fine_box
        assert ws.masks["HR_1"][fr0:fr1, fc0:fc1].all()
        cells.add((g0, g1))
    assert len(cells) == len(tiles)  # no two tiles share a pixel
    # A cap takes a seeded subset of the grid: same for the same seed, another for another.
    sub = sample_tiles([region], ws.masks, scale=K, tile_size=64, n_tiles=5, seed=3)
    assert len(sub) == 5 and set(sub) <= set(tiles)
    assert sample_tiles([region], ws.masks, scale=K, tile_size=64, n_tiles=5, seed=3) == sub
    assert sample_tiles([region], ws.masks, scale=K, tile_size=64, n_tiles=5, seed=4) != sub
    # The whole region: every valid cell of the crop (the strip covers LR columns 50-128).
    whole = sample_tiles([region], ws.masks, scale=K, tile_size=64, area="all")
    assert len(whole) == 8 * 8 - 5 and set(tiles) <= set(whole)  # 5 cells under the strip


def test_tile_size_errors(workspace):
    ws = open_workspace(workspace)
    region = ws.manifest.regions[0]
    with pytest.raises(DleemError, match="multiple of the scale"):
        sample_tiles([region], ws.masks, scale=K, tile_size=66, n_tiles=5)
    with pytest.raises(DleemError, match="region HR_1 is too small for one tile: its largest "
                                         "test area is 64 x 64 LR px"):
        sample_tiles([region], ws.masks, scale=K, tile_size=512, n_tiles=5)
    with pytest.raises(DleemError, match="tiles must be >= 1"):
        sample_tiles([region], ws.masks, scale=K, tile_size=64, n_tiles=0)


def _truth(box, k):  # the noise-free fine image of the fabricated specimen
    fine = cached_fine(0)
    r0, c0, r1, c1 = box
    return fine[k * r0:k * r1, k * c0:k * c1]


@pytest.fixture(scope="module")
def evaluation(workspace):
    ws = open_workspace(workspace)
    return evaluate(ws, fake_models(), EvalOptions(tile_size=64, seed=1, gallery=3,
                                                   thickness_tiles=4), truth=_truth)


def test_evaluate_scores_methods_on_the_same_tiles(evaluation):
    ev = evaluation
    assert len(ev.tiles) == 15 and len(ev.gallery) == 3 and len(ev.pore_tiles) == 3
    for name in ("bicubic", "model-sharp", "truth"):
        res = ev.methods[name]
        assert len(res.ssim) == len(res.psnr) == len(res.match_hr) == 15
        assert all(0 < s < 1 for s in res.ssim)
    # HR is the noise-free image plus 2-grey-level noise: truth scores ~ 20 log10(255/2) dB.
    assert np.median(ev.methods["truth"].psnr) == pytest.approx(20 * math.log10(255 / 2), abs=0.5)
    # The blurred LR loses the small pores: bicubic is worse than the truth everywhere.
    assert np.median(ev.methods["bicubic"].ssim) < np.median(ev.methods["truth"].ssim)
    # The HR porosity matches the segmentation of the HR tiles.
    assert 0.05 < np.median(ev.methods["HR"].porosity) < 0.5
    assert sum(d.size for d in ev.methods["HR"].diameters_um) > 5
    # Truth matched against HR: nearly every HR pore is recalled, nearly all are correct.
    truth_vs_hr = pores.match_summary(ev.methods["truth"].match_hr, K)
    assert truth_vs_hr["pore_recall"] > 0.9 and truth_vs_hr["pore_precision"] > 0.9
    assert ev.truth_threshold is not None


def test_gallery_tiles_sit_at_the_stated_porosity_quantiles(evaluation):
    ev = evaluation
    hr_por = np.asarray(ev.methods["HR"].porosity)
    for g in ev.gallery + ev.pore_tiles:
        i = g["_index"]
        assert g["_tile"] == ev.tiles[i] and g["_porosity"] == pytest.approx(hr_por[i])
        rank = np.searchsorted(np.sort(hr_por), hr_por[i])
        assert abs(rank - g["_quantile"] * (len(hr_por) - 1)) <= 1.5
    assert [g["_quantile"] for g in ev.pore_tiles] == [0.25, 0.5, 0.75]


def test_metrics_json_v2_schema_and_no_infinity(workspace, tmp_path):
    from dleem.evaluation.pipeline import evaluate_workspace

    index = evaluate_workspace(workspace, fake_models(),
                               EvalOptions(tiles=8, tile_size=64, seed=0, gallery=2,
                                           thickness_tiles=3),
                               use_truth=False, out_dir=tmp_path / "report")
    doc = json.loads((index.parent / "metrics.json").read_text())  # strict JSON: no Infinity
    assert doc["schema"] == "dleem-metrics" and doc["schema_version"] == 2
    assert doc["settings"]["tiles"] == 8 and doc["crossval"] is None
    for t in doc["tiles"]:
        assert t["region"] == "HR_1" and len(t["lr_crop_box"]) == len(t["lr_box"]) == 4
        assert [a - b for a, b in zip(t["lr_box"], t["lr_crop_box"], strict=True)] == [16, 16] * 2
    for name in ("bicubic", "model-sharp"):
        m = doc["methods"][name]
        assert len(m["ssim"]["per_tile"]) == 8 and m["ssim"]["median"] is not None
        lo, hi = m["ssim"]["ci95"]
        assert lo <= m["ssim"]["median"] <= hi
        assert len(m["psnr_db"]["ci95"]) == 2
        for key in ("psd_wasserstein_um", "psd_ks_statistic", "pore_size_function_wasserstein_um"):
            assert m["vs_HR"][key] is not None and m["vs_HR"][key] >= 0
        vs = m["vs_HR"]
        assert 0 <= vs["pore_precision"] <= 1 and 0 <= vs["pore_recall"] <= 1
        assert vs["pore_merges"] >= 0 and vs["pore_splits"] >= 0
        classes = vs["pore_recall_by_size"]
        assert [c["min_lr_px"] for c in classes] == [0, 1, 1.5, 2, 3, 5]
        assert classes[-1]["max_lr_px"] is None
        assert all((c["recall"] is None) == (c["n"] == 0) for c in classes)
        assert "resolved_pore_size_lr_px" in vs
        assert m["per_region"]["HR_1"]["ssim"]["median"] == m["ssim"]["median"]
        assert len(m["porosity"]["per_tile"]) == 8
    assert "ssim" not in doc["methods"]["HR"]
    # local thickness is bounded by the tile (64 fine px of 0.1 µm)
    assert doc["methods"]["HR"]["pore_size_function_um"]["max"] <= 6.4
    t = doc["imaging_time"]
    assert t["available"] and t["full_hr_pixels"] == pytest.approx(160 * 160 * 16)
    assert t["time_saved_fraction"] == pytest.approx(1 - (160 * 160 + 512 * 512) / (160 * 160 * 16))
    page = index.read_text()
    assert "No cross-validation in this workspace" in page and "pore_recall.png" in page


def test_a_threshold_that_leaves_no_pore_is_refused_before_the_work(workspace):
    ws = open_workspace(workspace)
    called = []

    def model(lr):
        called.append(1)
        return sharpened(lr)

    with pytest.raises(DleemError, match="leaves no pore in the HR of the 15 tiles"):
        evaluate(ws, [Upscaler("m", model, 6)], EvalOptions(tile_size=64, threshold=1.0))
    assert not called


def test_imaging_time_with_and_without_dwell_times():
    from types import SimpleNamespace

    from dleem.evaluation.report import imaging_time

    man = ((1000, 2000), 0.5, [SimpleNamespace(id="A", hr_pixel_size_um=0.1, ratio=5.0)])
    t = imaging_time(*man, {"A": (1000, 1000)})
    assert t["area_mm2"] == pytest.approx(0.5) and t["full_hr_pixels"] == pytest.approx(5e7)
    assert t["time_saved_fraction"] == pytest.approx(1 - 3e6 / 5e7) and not t["dwell_known"]
    # LR imaged fast (1 µs), HR slowly (4 µs): the saving is in time, not pixels.
    t = imaging_time(*man, {"A": (1000, 1000)}, {"LR": 1.0, "A": 4.0, "HR_full": 4.0})
    assert t["dwell_known"] and t["time_full_h"] == pytest.approx(5e7 * 4 / 3.6e9)
    assert t["time_saved_fraction"] == pytest.approx(1 - (2e6 + 4e6) / 2e8)
    assert not imaging_time((10, 10), None, [], {})["available"]


def test_a_region_with_fewer_than_three_tiles_has_no_interval_and_the_report_says_why(
        workspace, tmp_path):
    from dleem.evaluation.pipeline import evaluate_workspace

    index = evaluate_workspace(workspace, fake_models(),
                               EvalOptions(tiles=2, tile_size=64, gallery=1, thickness_tiles=1),
                               use_truth=False, out_dir=tmp_path / "report")
    doc = json.loads((index.parent / "metrics.json").read_text())
    m = doc["methods"]["model-sharp"]
    assert m["ssim"]["ci95"] is None and m["per_region"]["HR_1"]["ssim"]["ci95"] is None
    assert "HR_1 has 2 tiles: no interval (fewer than 3)" in index.read_text()
