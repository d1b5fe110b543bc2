"""Where a registered HR region lies on the LR grid, and its HR image on the fine grid.

A training pair is the raw LR crop a registered HR region covers (what the network sees
at inference, so it is never resampled) and the HR image resampled onto a grid exactly
``k`` times finer than the LR grid (`dleem.imaging`: fine pixel ``j`` covers LR pixel
``floor(j / k)``, its centre at LR coordinate ``(j + 0.5) / k - 0.5``). The target is
mapped to the LR grey scale with the fitted gain and offset, so the network learns
resolution, not a contrast change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from dleem.errors import DleemError
from dleem.registration.transform import AffineMap

Box = tuple[int, int, int, int]  # (row0, col0, row1, col1), half-open


def map_ratio(hr_to_lr: AffineMap) -> float:
    """HR pixels per LR pixel of a map (the inverse of its mean scale)."""
    return 1.0 / hr_to_lr.mean_scale


def covered_lr_pixels(
    hr_to_lr: AffineMap,
    hr_shape: Sequence[int],
    lr_shape: Sequence[int],
    *,
    lr_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Which LR pixels lie fully inside the HR image's footprint (and inside the LR image).

    An LR pixel is covered when its four corners map inside the HR image extent
    [-0.5, W-0.5] x [-0.5, H-0.5]; an affine map sends the square to a parallelogram and the
    extent is convex, so every fine pixel inside it is then covered too.

    Returns
    -------
    covered : bool array over the LR window that holds the footprint
    origin : (row0, col0) of that window in the LR image
    """
    h_hr, w_hr = hr_shape[:2]
    h_lr, w_lr = lr_shape[:2]
    outline = hr_to_lr.corners(tuple(hr_shape[:2]))
    c0 = max(0, int(math.floor(outline[:, 0].min())))
    c1 = min(w_lr, int(math.ceil(outline[:, 0].max())) + 1)
    r0 = max(0, int(math.floor(outline[:, 1].min())))
    r1 = min(h_lr, int(math.ceil(outline[:, 1].max())) + 1)
    if r1 <= r0 or c1 <= c0:
        return np.zeros((0, 0), bool), (r0, c0)
    inv = hr_to_lr.inverse()
    # LR pixel-corner lattice of the window, mapped to HR coordinates.
    cy, cx = np.meshgrid(
        np.arange(r0, r1 + 1, dtype=np.float64) - 0.5,
        np.arange(c0, c1 + 1, dtype=np.float64) - 0.5,
        indexing="ij",
    )
    u, v = inv.apply_xy(cx, cy)
    eps = 1e-9
    inside = (u >= -0.5 - eps) & (u <= w_hr - 0.5 + eps) & (v >= -0.5 - eps) & (v <= h_hr - 0.5 + eps)
    covered = inside[:-1, :-1] & inside[1:, :-1] & inside[:-1, 1:] & inside[1:, 1:]
    if lr_valid is not None:
        covered &= np.asarray(lr_valid[r0:r1, c0:c1], dtype=bool)
    return covered, (r0, c0)


def largest_rectangle(mask: np.ndarray) -> Box:
    """The largest axis-aligned all-True rectangle of a boolean mask (half-open box).

    The classic row-by-row histogram and stack method, O(H x W). Ties go to the first found.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    heights = np.zeros(w, dtype=np.int64)
    best: tuple[int, Box] = (0, (0, 0, 0, 0))
    for r in range(h):
        heights = np.where(mask[r], heights + 1, 0)
        if heights.max(initial=0) * w <= best[0]:
            continue
        stack: list[tuple[int, int]] = []  # (first column, height), heights increasing
        for c, hc in enumerate(heights.tolist() + [0]):
            start = c
            while stack and stack[-1][1] >= hc:
                left, height = stack.pop()
                area = height * (c - left)
                if area > best[0]:
                    best = (area, (r - height + 1, left, r + 1, c))
                start = left
            if hc > 0:
                stack.append((start, hc))
    return best[1]


def pair_lr_box(
    hr_to_lr: AffineMap,
    hr_shape: Sequence[int],
    lr_shape: Sequence[int],
    *,
    lr_valid: np.ndarray | None = None,
) -> Box:
    """The largest LR box whose fine grid is fully covered by the HR image.

    "Fully": every LR pixel of the box (hence every fine pixel) lies inside the HR
    footprint, inside the LR image, and, when `lr_valid` is given, on valid LR pixels.
    A rotated region therefore gives a box smaller than its footprint (about 85 % of
    the area at 5 degrees); in exchange the target has no holes.
    """
    covered, (r0, c0) = covered_lr_pixels(hr_to_lr, hr_shape, lr_shape, lr_valid=lr_valid)
    if covered.size == 0 or not covered.any():
        raise DleemError("the HR region covers no whole LR pixel inside the LR image")
    b = largest_rectangle(covered)
    return (b[0] + r0, b[1] + c0, b[2] + r0, b[3] + c0)


def fine_grid_lr_coords(lr_box: Box, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """LR coordinates of the fine-pixel centres of an LR box: y along rows, x along columns.

    Fine pixel j of LR pixel i = floor(j / k) has its centre at (j + 0.5) / k - 0.5.
    """
    r0, c0, r1, c1 = lr_box
    k = int(scale)
    y = r0 + (np.arange((r1 - r0) * k, dtype=np.float64) + 0.5) / k - 0.5
    x = c0 + (np.arange((c1 - c0) * k, dtype=np.float64) + 0.5) / k - 0.5
    return y, x


def box_kernel(width: float) -> np.ndarray:
    """A normalised 1-D box of (possibly fractional) `width` samples: an area average.

    Tap t covers [t - 0.5, t + 0.5]; its weight is the overlap with [-width/2, width/2].
    """
    half = width / 2.0
    n = int(math.ceil(half - 0.5))
    t = np.arange(-n, n + 1, dtype=np.float64)
    weights = np.clip(np.minimum(t + 0.5, half) - np.maximum(t - 0.5, -half), 0.0, None)
    return weights / weights.sum()


def area_prefilter(image: np.ndarray, width: float) -> np.ndarray:
    """Average `image` over a `width` x `width` square (in its own pixels) before sampling.

    When the HR pixels are smaller than the fine pixels (ratio > k), a point sample would
    alias; the fine pixel's value is the mean of the HR pixels in its footprint.
    """
    out = np.asarray(image, dtype=np.float32)
    if width <= 1.0 + 1e-6:
        return out
    kernel = box_kernel(width)
    out = ndimage.correlate1d(out, kernel, axis=0, mode="nearest")
    return ndimage.correlate1d(out, kernel, axis=1, mode="nearest")


def resample_hr_to_fine(
    hr: np.ndarray,
    hr_to_lr: AffineMap,
    lr_box: Box,
    scale: int,
    *,
    gain: float = 1.0,
    offset: float = 0.0,
    hr_valid: np.ndarray | None = None,
    order: int = 3,
    chunk_px: int = 1 << 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample an HR image onto the fine grid (k times the LR grid) of an LR box.

    Each fine-pixel centre goes fine grid -> LR coordinates -> HR coordinates through the
    inverse map, the HR image is area-averaged over a fine pixel's footprint when it is
    finer than the fine grid (ratio > k), and the values are sampled with a cubic spline
    and mapped to the LR grey scale: ``gain * HR + offset``.

    Parameters
    ----------
    hr : 2-D array, the HR image (any dtype).
    hr_to_lr : AffineMap, HR px -> LR px.
    lr_box : (row0, col0, row1, col1), the LR crop (half-open, LR px).
    scale : int, k: fine pixels per LR pixel along each axis.
    gain, offset : the fitted grey-level map LR ~ gain * HR + offset.
    hr_valid : bool array of the HR shape, False on pixels that must not feed a target
        (databar, user mask).
    order : spline order of the sampling (3 = cubic).
    chunk_px : fine pixels computed at once (bounds the memory on large regions).

    Returns
    -------
    target : float32, shape ``(k * crop_rows, k * crop_cols)``, LR grey scale.
    mask : uint8 of the same shape, 1 where the fine pixel's footprint lies fully inside
        the HR image and on valid HR pixels.
    """
    inv = hr_to_lr.inverse()
    k = int(scale)
    hr = np.asarray(hr)
    h_hr, w_hr = hr.shape
    y, x = fine_grid_lr_coords(lr_box, k)
    # HR px per fine px: the footprint is a (rotated) square of this side in HR pixels.
    width = inv.mean_scale / k
    # Work on the HR window the box needs only (large HR images stay cheap).
    cy, cx = np.meshgrid(y[[0, -1]], x[[0, -1]], indexing="ij")
    u, v = inv.apply_xy(cx.ravel(), cy.ravel())
    pad = int(math.ceil(width)) + 4
    u0 = max(0, int(math.floor(u.min())) - pad)
    u1 = min(w_hr, int(math.ceil(u.max())) + pad + 1)
    v0 = max(0, int(math.floor(v.min())) - pad)
    v1 = min(h_hr, int(math.ceil(v.max())) + pad + 1)
    if u1 <= u0 or v1 <= v0:
        raise DleemError("the LR box does not overlap the HR image")
    window = area_prefilter(hr[v0:v1, u0:u1], width)
    pad = 12  # as scipy pads before its own spline prefilter, so edges behave the same
    if order > 1:
        coeffs = ndimage.spline_filter(np.pad(window, pad, mode="edge"), order, mode="nearest",
                                       output=np.float64)
    else:
        coeffs, pad = window, 0
    spread = None
    if hr_valid is not None:
        bad = ~np.asarray(hr_valid[v0:v1, u0:u1], dtype=bool)
        if bad.any():
            spread = area_prefilter(bad.astype(np.float32), max(width, 1.0))

    target = np.empty((y.size, x.size), dtype=np.float32)
    valid = np.empty((y.size, x.size), dtype=bool)
    half = 0.5 / k
    step = max(1, chunk_px // max(1, x.size))
    for r in range(0, y.size, step):  # row strips: memory stays bounded for large regions
        yy, xx = np.meshgrid(y[r : r + step], x, indexing="ij")
        uu, vv = inv.apply_xy(xx, yy)
        coords = np.stack([vv - v0 + pad, uu - u0 + pad])
        values = ndimage.map_coordinates(coeffs, coords, order=order, mode="nearest", prefilter=False)
        target[r : r + step] = gain * values + offset
        # Validity: the fine pixel's footprint (side 1/k LR px) fully inside the HR extent.
        ok = np.ones(yy.shape, dtype=bool)
        for dx in (-half, half):
            for dy in (-half, half):
                cu, cv = inv.apply_xy(xx + dx, yy + dy)
                ok &= (cu >= -0.5 - 1e-9) & (cu <= w_hr - 0.5 + 1e-9)
                ok &= (cv >= -0.5 - 1e-9) & (cv <= h_hr - 0.5 + 1e-9)
        if spread is not None:
            touched = ndimage.map_coordinates(spread, coords - pad, order=1, mode="nearest")
            ok &= touched < 1e-3
        valid[r : r + step] = ok
    return target, valid.astype(np.uint8)
