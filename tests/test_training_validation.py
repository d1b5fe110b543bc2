"""The training log's bicubic validation figure is the report's bicubic figure on the same tile."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from test_training import make_workspace

from dleem.evaluation.metrics import score_tile
from dleem.imaging import BICUBIC_HALO_LR_PX, bicubic_upsample, dtype_range
from dleem.training import load_pairs, validation_tiles
from dleem.training.validation import ValidationSet


def report_bicubic_psnr(lr_crop: np.ndarray, hr: np.ndarray, r: int, c: int, tile: int, k: int) -> float:
    """What the report does: bicubic of a window with context, cut back, scored with score_tile."""
    h = BICUBIC_HALO_LR_PX
    r0, c0 = max(r - h, 0), max(c - h, 0)
    window = lr_crop[r0:min(r + tile + h, lr_crop.shape[0]), c0:min(c + tile + h, lr_crop.shape[1])]
    up = bicubic_upsample(window, k)
    top, left = k * (r - r0), k * (c - c0)
    pred = up[top:top + k * tile, left:left + k * tile]
    ref = hr[k * r:k * (r + tile), k * c:k * (c + tile)].astype(np.float32)
    return score_tile(pred, ref, data_range=dtype_range(lr_crop.dtype), border=k).psnr


@pytest.mark.parametrize("scale", [3, 4])
def test_bicubic_validation_psnr_equals_the_reports(tmp_path, scale):
    ws = make_workspace(tmp_path, scale=scale)
    lr_crop = tifffile.imread(ws / "pairs" / "HR_1_lr.tif")
    hr = tifffile.imread(ws / "pairs" / "HR_1_hr.tif")
    data = load_pairs(ws)
    tile = 8
    val = validation_tiles(data, tile, max_tiles=100)
    assert val is not None and len(val) >= 2
    box = data.val[0]
    r0, c0 = box.box[0], box.box[1]
    # tile 0 lies on the left edge of the crop (no context there), tile 1 has context on every side
    for i, (r, c) in enumerate([(r0, c0), (r0, c0 + tile)]):
        one = ValidationSet(lr=val.lr[i:i + 1], ref=val.ref[i:i + 1], mask=val.mask[i:i + 1],
                            bicubic=val.bicubic[i:i + 1], data=data)
        trainer_psnr, _ = one.score_bicubic()
        assert trainer_psnr == pytest.approx(report_bicubic_psnr(lr_crop, hr, r, c, tile, scale), abs=0.01)
        assert np.isfinite(trainer_psnr) and 10 < trainer_psnr < 60


def test_validation_uses_grey_levels_and_the_dtype_range(tmp_path):
    ws = make_workspace(tmp_path)
    data = load_pairs(ws)
    assert data.data_range == 255.0 and data.lr_dtype == "uint8"
    val = validation_tiles(data, 16)
    assert val.ref.dtype == np.float32 and val.bicubic.dtype == np.uint8
    assert val.ref.max() > 1.5  # grey levels, not network units
