"""The block grid of the trust map and the statistics of each block.

Block (i, j) covers LR rows i*B .. (i+1)*B - 1 and columns j*B .. (j+1)*B - 1; the last
row and column of blocks keep what is left (partial blocks). Every statistic here is
computed over the blocks of a *core* box (on the map grid when its start is a multiple
of B), from a window of context
around it (clipped at the image border), so a tiled computation equals the whole one
as long as the tiles are multiples of B.

Per block:

- ``chi``: the mean of z² with z = (degrade(SR) - LR) / sigma, sigma from the LR noise
  model at the signal degrade(SR). Where SR could have produced the measurement, z is
  the LR noise in its own units, so ``n * chi`` follows a chi-square with n = the
  block's pixel count (`chi_threshold`).
- ``features``: texture statistics of the LR block (`FEATURE_NAMES`), the input of the
  novelty (`dleem.trust.calibration.novelty`).
- ``texture_gl``: the block's signal standard deviation (noise variance subtracted), in
  grey levels: where there is more structure, there is more to get wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, stats

from dleem.trust.noise import NoiseModel

DEFAULT_BLOCK = 32
GRADIENT_SCALES = (1.0, 2.0, 4.0)
FEATURE_MARGIN = 17  # LR px: 4 sigma of the widest gradient filter, + 1
GRADIENT_QUANTILES = (0.5, 0.9)
FEATURE_NAMES = ("log_signal_std", "log_gradient_s1", "log_gradient_s2",
                 *(f"log_gradient_s2_q{int(100 * q)}" for q in GRADIENT_QUANTILES), "log_gradient_s4")
FALSE_ALARM = 1e-3
_EPS = 1e-4


def block_shape(shape: tuple[int, int], block: int) -> tuple[int, int]:
    """Blocks per axis of an LR image of ``shape`` (the last partial block kept)."""
    return -(-int(shape[0]) // block), -(-int(shape[1]) // block)


def block_means(a: np.ndarray, block: int) -> np.ndarray:
    """Mean of ``a`` over each block of a core starting at a block corner (float64)."""
    h, w = a.shape
    bh, bw = block_shape((h, w), block)
    pad = ((0, bh * block - h), (0, bw * block - w))
    s = np.pad(a.astype(np.float64), pad).reshape(bh, block, bw, block).sum(axis=(1, 3))
    return s / block_counts((h, w), block)


def block_counts(shape: tuple[int, int], block: int) -> np.ndarray:
    """Pixels in each block of a core of ``shape``."""
    h, w = shape
    rows = np.minimum(block, h - block * np.arange(block_shape(shape, block)[0]))
    cols = np.minimum(block, w - block * np.arange(block_shape(shape, block)[1]))
    return np.outer(rows, cols).astype(np.float64)


def chi_threshold(n_px: Any, false_alarm: float = FALSE_ALARM) -> np.ndarray:
    """The ``chi`` (mean z²) a faithful SR exceeds with probability ``false_alarm``."""
    n = np.asarray(n_px, dtype=np.float64)
    return stats.chi2.isf(false_alarm, n) / n


@dataclass
class BlockStats:
    """Statistics of the blocks of one core box (arrays of the core's block shape)."""

    chi: np.ndarray  # mean z² per block (NaN without SR)
    n_px: np.ndarray  # LR pixels per block
    features: np.ndarray  # (bh, bw, len(FEATURE_NAMES))
    texture_gl: np.ndarray  # signal std in grey levels
    sigma_gl: np.ndarray  # mean noise sigma of the block, grey levels


def window(core: tuple[int, int, int, int], shape: tuple[int, int], margin: int) -> tuple[int, int, int, int]:
    """The read window (y0, y1, x0, x1) of ``core`` with ``margin`` px, clipped to the image."""
    y0, y1, x0, x1 = core
    return max(y0 - margin, 0), min(y1 + margin, shape[0]), max(x0 - margin, 0), min(x1 + margin, shape[1])


def block_quantiles(a: np.ndarray, block: int, qs: tuple[float, ...]) -> np.ndarray:
    """Quantiles ``qs`` of ``a`` over each block of a core (bh, bw, len(qs))."""
    h, w = a.shape
    bh, bw = block_shape((h, w), block)
    out = np.empty((bh, bw, len(qs)), np.float64)
    fh, fw = h // block, w // block
    if fh and fw:  # the whole blocks at once
        full = a[:fh * block, :fw * block].reshape(fh, block, fw, block).transpose(0, 2, 1, 3)
        out[:fh, :fw] = np.moveaxis(np.quantile(full.reshape(fh, fw, -1), qs, axis=-1), 0, -1)
    for i in range(bh):  # the partial ones at the edges
        for j in range(bw):
            if i >= fh or j >= fw:
                out[i, j] = np.quantile(a[i * block:(i + 1) * block, j * block:(j + 1) * block], qs)
    return out


def lr_features(lr: Any, core: tuple[int, int, int, int], noise: NoiseModel, block: int,
                dtype_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, signal std and noise sigma (grey levels) of the blocks of ``core``,
    from the (lazy) LR image ``lr``.

    Texture, not brightness: the signal std with the noise variance removed, and the
    gradient magnitude at three scales: its mean and, at the middle scale, its median and
    90th percentile (an edge everywhere, as in a fine-grained rock, against one edge in a
    block of a coarse one). Grey-level statistics (mean, quantiles) were tried and left out:
    a handful of training blocks samples the grey levels of grains, pores and clay too
    sparsely, and they lowered the separation of an unseen rock (docs/trust.md).
    """
    y0, y1, x0, x1 = core
    wy0, wy1, wx0, wx1 = window(core, tuple(lr.shape), FEATURE_MARGIN)
    x = np.asarray(lr[wy0:wy1, wx0:wx1], dtype=np.float32)
    cut = (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
    c = x[cut]
    mean = block_means(c, block)
    var = np.maximum(block_means(c * c, block) - mean * mean, 0.0)
    noise_var = block_means(noise.variance(c), block)
    texture = np.sqrt(np.maximum(var - noise_var, 0.0))
    feats = [np.log(texture / dtype_max + _EPS)]
    for s in GRADIENT_SCALES:
        g = ndimage.gaussian_gradient_magnitude(x, s, mode="reflect", truncate=4.0)[cut]
        feats.append(np.log(block_means(g, block) / dtype_max + _EPS))
        if s == GRADIENT_SCALES[1]:
            q = block_quantiles(g, block, GRADIENT_QUANTILES)
            feats += list(np.log(np.moveaxis(q, -1, 0) / dtype_max + _EPS))
    return np.stack(feats, axis=-1).astype(np.float32), texture, np.sqrt(noise_var)


def consistency_chi(d: np.ndarray, lr_core: np.ndarray, noise: NoiseModel, block: int) -> np.ndarray:
    """Mean z² per block, z = d / sigma(degrade(SR)), with d = degrade(SR) - LR over a core."""
    signal = d + np.asarray(lr_core, dtype=np.float32)
    z2 = d.astype(np.float64) ** 2 / noise.variance(signal)
    return block_means(z2, block)


def block_stats(lr: Any, core: tuple[int, int, int, int], noise: NoiseModel, block: int, dtype_max: float,
                d: np.ndarray | None = None) -> BlockStats:
    """Everything the trust needs about the blocks of ``core`` (blocks counted from its
    corner: on the map grid when it starts on a multiple of ``block``); ``d`` is the
    consistency difference degrade(SR) - LR over the core (`dleem.upscale.consistency.map_tile`)."""
    y0, y1, x0, x1 = core
    feats, texture, sigma = lr_features(lr, core, noise, block, dtype_max)
    shape = (y1 - y0, x1 - x0)
    chi = (np.full(block_shape(shape, block), np.nan) if d is None
           else consistency_chi(d, np.asarray(lr[y0:y1, x0:x1]), noise, block))
    return BlockStats(chi=chi, n_px=block_counts(shape, block), features=feats, texture_gl=texture,
                      sigma_gl=sigma)
