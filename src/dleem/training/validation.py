"""Validation during training, scored exactly as the report scores a tile.

A fixed set of non-overlapping tiles from the validation boxes is upscaled by the
generator and by the bicubic baseline, and both are scored with
`dleem.evaluation.metrics.score_tile` on grey levels:

- SR: the generator's output through `Normalization.invert`, rounded to the LR dtype;
- bicubic: `dleem.imaging.bicubic_upsample` of the raw LR tile read with
  `dleem.imaging.BICUBIC_HALO_LR_PX` LR px of context where the region's LR crop has
  it, then cut back to the tile (what a tiled upscale and the report do);
- reference: the HR target in grey levels (float32, from the pair file);
- data range: the full range of the LR dtype (for float LR, the LR image's max - min);
- border: the scale k is cut from each side (the report's shave).

Invalid target pixels take the reference value in both predictions, so they do not count.
The training log's ``val_psnr_bicubic_db`` is therefore the report's bicubic number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dleem.imaging import BICUBIC_HALO_LR_PX, bicubic_upsample
from dleem.training.data import BoxData, PairData

#: Tiles per generator call during validation.
VAL_BATCH = 8


@dataclass
class ValidationSet:
    """Fixed validation tiles: network input, grey-level reference, mask and bicubic baseline.

    Attributes
    ----------
    lr : torch.Tensor
        (N, 1, t, t) normalised LR tiles (the generator's input).
    ref : numpy.ndarray
        (N, k*t, k*t) float32 HR targets in grey levels.
    mask : numpy.ndarray
        (N, k*t, k*t) bool, True where the target is valid.
    bicubic : numpy.ndarray
        (N, k*t, k*t) bicubic upsample of the raw LR tiles (with context), in the LR dtype.
    """

    lr: torch.Tensor
    ref: np.ndarray
    mask: np.ndarray
    bicubic: np.ndarray
    data: PairData

    def __len__(self) -> int:
        return int(self.lr.shape[0])

    def to(self, device: torch.device | str) -> ValidationSet:
        self.lr = self.lr.to(device)
        return self

    def score(self, pred: np.ndarray) -> tuple[float, float]:
        """Mean PSNR (dB) and SSIM of grey-level predictions (N, k*t, k*t) over the tiles."""
        from dleem.evaluation.metrics import score_tile

        k = self.data.scale
        ps, ss = [], []
        for p, r, m in zip(pred, self.ref, self.mask, strict=True):
            s = score_tile(np.where(m, p.astype(np.float32), r), r, data_range=self.data.data_range, border=k)
            ps.append(s.psnr)
            ss.append(s.ssim)
        return float(np.mean(ps)), float(np.mean(ss))

    def score_bicubic(self) -> tuple[float, float]:
        return self.score(self.bicubic)

    @torch.no_grad()
    def score_generator(self, generator: nn.Module, autocast: Callable[[], Any] | None = None,
                        channels_last: bool = False) -> tuple[float, float]:
        """PSNR and SSIM of a generator's output, rounded to the LR dtype as an SR image is."""
        was = generator.training
        generator.eval()
        outs = []
        for i in range(0, len(self), VAL_BATCH):
            x = self.lr[i:i + VAL_BATCH]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if autocast is None:
                y = generator(x)
            else:
                with autocast():
                    y = generator(x)
            outs.append(self.data.normalization.invert(y.float()[:, 0]))
        generator.train(was)
        return self.score(np.concatenate(outs))


def bicubic_tile(box: BoxData, r: int, c: int, tile: int, k: int) -> np.ndarray:
    """Bicubic upsample of the LR tile at (r, c) of a validation box (tile x tile LR px),
    read with `BICUBIC_HALO_LR_PX` px of context where the box's stored LR has it."""
    if box.lr_raw is None:
        raise ValueError("bicubic_tile needs a validation box (with its raw LR)")
    h = BICUBIC_HALO_LR_PX
    lr = box.lr_raw
    r, c = r + box.context[0], c + box.context[1]
    w0, v0 = max(r - h, 0), max(c - h, 0)
    window = lr[w0:min(r + tile + h, lr.shape[0]), v0:min(c + tile + h, lr.shape[1])]
    up = bicubic_upsample(window, k)
    top, left = k * (r - w0), k * (c - v0)
    return up[top:top + k * tile, left:left + k * tile]


def validation_tiles(data: PairData, tile: int, max_tiles: int = 32) -> ValidationSet | None:
    """A fixed set of non-overlapping validation tiles (LR tile x tile px) from the val boxes.

    Tiles with fewer than half their target pixels valid are not used; with no validation
    box large enough the largest square that fits every box is used instead; None when
    there is no val area. More than ``max_tiles`` tiles are thinned evenly (deterministic).
    """
    boxes = [b for b in data.val if b.mask.any()]
    if not boxes:
        return None
    tile = min(tile, min(min(b.lr.shape) for b in boxes))
    if tile < 4:
        return None
    k = data.scale
    found: list[tuple[BoxData, int, int]] = []
    for b in boxes:
        h, w = b.lr.shape
        for r in range(0, h - tile + 1, tile):
            for c in range(0, w - tile + 1, tile):
                if b.mask_np[k * r:k * (r + tile), k * c:k * (c + tile)].mean() >= 0.5:
                    found.append((b, r, c))
    if not found:
        return None
    if len(found) > max_tiles:
        idx = np.linspace(0, len(found) - 1, max_tiles).round().astype(int)
        found = [found[i] for i in idx]

    def fine(b: BoxData, r: int, c: int) -> tuple[slice, slice]:
        return slice(k * r, k * (r + tile)), slice(k * c, k * (c + tile))

    lr = torch.stack([b.lr[r:r + tile, c:c + tile].cpu() for b, r, c in found])[:, None]
    ref = np.stack([b.hr_raw[fine(b, r, c)] for b, r, c in found]).astype(np.float32)
    mask = np.stack([b.mask_np[fine(b, r, c)] for b, r, c in found])
    bic = np.stack([bicubic_tile(b, r, c, tile, k) for b, r, c in found])
    return ValidationSet(lr=lr, ref=ref, mask=mask, bicubic=bic, data=data)
