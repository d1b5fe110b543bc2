"""Cut training pairs out of registered regions.

A training pair is the raw LR crop a registered HR region covers (what the network sees
at inference, so it is never resampled) and the HR image resampled onto a grid exactly
``k`` times finer than the LR grid: fine pixel ``j`` covers LR pixel ``floor(j / k)`` and
its centre sits at LR coordinate ``(j + 0.5) / k - 0.5`` (x = column, y = row, pixel
centres on integers). The target is mapped to the LR grey scale with the fitted gain and
offset, so the network learns resolution, not a contrast change.

The train / validation / test areas are fixed here, once, in LR-crop coordinates, with a
guard band between them so that a receptive field in one never reads pixels of another.
See docs/CONTRACTS.md ("Training pairs") for the manifest every later step reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from dleem.errors import DleemError
from dleem.io.atomic import write_json

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # (row0, col0, row1, col1), half-open

MANIFEST_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")


# --------------------------------------------------------------------------- geometry


def as_matrix(hr_to_lr: Any) -> np.ndarray:
    """A 2x3 float64 matrix from an `AffineMap` (anything with `.matrix`) or a nested list."""
    m = np.asarray(getattr(hr_to_lr, "matrix", hr_to_lr), dtype=np.float64)
    if m.shape == (3, 3):
        m = m[:2]
    if m.shape != (2, 3) or not np.all(np.isfinite(m)):
        raise DleemError(f"expected a finite 2x3 affine matrix, got {m.tolist()}")
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (LR px -> HR px from HR px -> LR px)."""
    a = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


def apply_affine(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map point coordinates (x = column, y = row) through a 2x3 matrix."""
    return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]


def map_ratio(hr_to_lr: Any) -> float:
    """HR pixels per LR pixel of a map (the square root of its area scale)."""
    m = as_matrix(hr_to_lr)
    return float(1.0 / math.sqrt(abs(np.linalg.det(m[:, :2]))))


def default_scale(ratio: float) -> int:
    """The issue's default integer scale: min(8, round(ratio)), at least 1."""
    return int(min(8, max(1, round(ratio))))


def hr_outline_lr(hr_to_lr: Any, hr_shape: Sequence[int]) -> np.ndarray:
    """The HR image boundary (pixel edges, not centres) in LR coordinates, shape (4, 2) x/y.

    Corners in order top-left, top-right, bottom-right, bottom-left of the HR image.
    """
    h, w = hr_shape[:2]
    x = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
    y = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
    lx, ly = apply_affine(as_matrix(hr_to_lr), x, y)
    return np.stack([lx, ly], axis=1)


def covered_lr_pixels(
    hr_to_lr: Any,
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
    m = as_matrix(hr_to_lr)
    h_hr, w_hr = hr_shape[:2]
    h_lr, w_lr = lr_shape[:2]
    outline = hr_outline_lr(m, hr_shape)
    c0 = max(0, int(math.floor(outline[:, 0].min())))
    c1 = min(w_lr, int(math.ceil(outline[:, 0].max())) + 1)
    r0 = max(0, int(math.floor(outline[:, 1].min())))
    r1 = min(h_lr, int(math.ceil(outline[:, 1].max())) + 1)
    if r1 <= r0 or c1 <= c0:
        return np.zeros((0, 0), bool), (r0, c0)
    inv = invert_affine(m)
    # LR pixel-corner lattice of the window, mapped to HR coordinates.
    cy, cx = np.meshgrid(
        np.arange(r0, r1 + 1, dtype=np.float64) - 0.5,
        np.arange(c0, c1 + 1, dtype=np.float64) - 0.5,
        indexing="ij",
    )
    u, v = apply_affine(inv, cx, cy)
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
    hr_to_lr: Any,
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
    hr_to_lr: Any,
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
    hr_to_lr : AffineMap or 2x3 matrix, HR px -> LR px.
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
    m = as_matrix(hr_to_lr)
    inv = invert_affine(m)
    k = int(scale)
    hr = np.asarray(hr)
    h_hr, w_hr = hr.shape
    y, x = fine_grid_lr_coords(lr_box, k)
    # HR px per fine px: the footprint is a (rotated) square of this side in HR pixels.
    width = math.sqrt(abs(np.linalg.det(inv[:, :2]))) / k
    # Work on the HR window the box needs only (large HR images stay cheap).
    cy, cx = np.meshgrid(y[[0, -1]], x[[0, -1]], indexing="ij")
    u, v = apply_affine(inv, cx.ravel(), cy.ravel())
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
        uu, vv = apply_affine(inv, xx, yy)
        coords = np.stack([vv - v0 + pad, uu - u0 + pad])
        values = ndimage.map_coordinates(coeffs, coords, order=order, mode="nearest", prefilter=False)
        target[r : r + step] = gain * values + offset
        # Validity: the fine pixel's footprint (side 1/k LR px) fully inside the HR extent.
        ok = np.ones(yy.shape, dtype=bool)
        for dx in (-half, half):
            for dy in (-half, half):
                cu, cv = apply_affine(inv, xx + dx, yy + dy)
                ok &= (cu >= -0.5 - 1e-9) & (cu <= w_hr - 0.5 + 1e-9)
                ok &= (cv >= -0.5 - 1e-9) & (cv <= h_hr - 0.5 + 1e-9)
        if spread is not None:
            touched = ndimage.map_coordinates(spread, coords - pad, order=1, mode="nearest")
            ok &= touched < 1e-3
        valid[r : r + step] = ok
    return target, valid.astype(np.uint8)


# --------------------------------------------------------------------------- splits


def _subtract(box: Box, cut: Box) -> list[Box]:
    """`box` minus `cut`, as up to four disjoint boxes."""
    r0, c0, r1, c1 = box
    q0, d0, q1, d1 = cut
    if q0 >= r1 or q1 <= r0 or d0 >= c1 or d1 <= c0:
        return [box]
    out = []
    if q0 > r0:
        out.append((r0, c0, q0, c1))
    if q1 < r1:
        out.append((q1, c0, r1, c1))
    m0, m1 = max(r0, q0), min(r1, q1)
    if d0 > c0:
        out.append((m0, c0, m1, d0))
    if d1 < c1:
        out.append((m0, d1, m1, c1))
    return [b for b in out if b[2] > b[0] and b[3] > b[1]]


def subtract_boxes(boxes: Sequence[Box], cuts: Sequence[Box]) -> list[Box]:
    """Every box minus every cut (boxes stay disjoint)."""
    out = list(boxes)
    for cut in cuts:
        out = [piece for b in out for piece in _subtract(b, cut)]
    return out


def boxes_overlap(a: Box, b: Box, guard: int = 0) -> bool:
    """Whether two half-open boxes come closer than `guard` pixels (Chebyshev gap)."""
    return not (
        a[2] + guard <= b[0] or b[2] + guard <= a[0] or a[3] + guard <= b[1] or b[3] + guard <= a[1]
    )


def _band_layout(h: int, w: int, fractions: Sequence[float], guard: int) -> dict[str, list[Box]]:
    """Canonical layout: test and validation side by side in a band at the bottom, test in
    the bottom-left corner and roughly square (evaluation tiles fit), train everywhere else.
    """
    f_train, f_val, f_test = fractions
    area = h * w
    band = int(round(math.sqrt(f_test * area)))
    band = max(1, min(band, h - guard - 1))
    w_test = max(1, min(w, int(round(f_test * area / band))))
    w_val = int(round(f_val * area / band)) if f_val > 0 else 0
    splits: dict[str, list[Box]] = {"train": [], "val": [], "test": []}
    splits["test"].append((h - band, 0, h, w_test))
    if w_val > 0:
        v0 = min(w_test + guard, w)
        v1 = min(w, v0 + w_val)
        if v1 > v0:
            splits["val"].append((h - band, v0, h, v1))
        rest0 = v1 + guard
    else:
        rest0 = w_test + guard
    if h - band - guard > 0:
        splits["train"].append((0, 0, h - band - guard, w))
    if rest0 < w:
        splits["train"].append((h - band, rest0, h, w))
    return splits


def _stripe_layout(h: int, w: int, fractions: Sequence[float], guard: int) -> dict[str, list[Box]]:
    """Canonical layout: three horizontal stripes train | val | test from the top."""
    n_guards = sum(1 for f in fractions[1:] if f > 0)
    usable = h - guard * n_guards
    sizes = [int(round(f * usable)) for f in fractions]
    sizes[0] = usable - sum(sizes[1:])
    splits: dict[str, list[Box]] = {"train": [], "val": [], "test": []}
    r = 0
    for name, size in zip(SPLIT_NAMES, sizes, strict=True):
        if size <= 0:
            continue
        if r > 0:
            r += guard
        splits[name].append((r, 0, r + size, w))
        r += size
    return splits


def _orient(box: Box, h: int, w: int, variant: int) -> Box:
    """Map a box of the canonical (h, w) frame by one of the 8 flips/transposes."""
    r0, c0, r1, c1 = box
    if variant & 1:  # flip rows
        r0, r1 = h - r1, h - r0
    if variant & 2:  # flip columns
        c0, c1 = w - c1, w - c0
    if variant & 4:  # transpose
        r0, c0, r1, c1 = c0, r0, c1, r1
    return (r0, c0, r1, c1)


def split_boxes(
    crop_shape: Sequence[int],
    *,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    guard: int = 8,
    layout: str = "band",
    seed: int | None = 0,
) -> dict[str, list[list[int]]]:
    """Fix the train / validation / test areas of one LR crop, once.

    Parameters
    ----------
    crop_shape : (rows, cols) of the LR crop, LR px.
    fractions : train, validation, test shares of the crop area (before guard bands).
    guard : LR px left unused between two different splits, so that a network's receptive
        field inside one split never reads pixels of another.
    layout : "band": test (roughly square, in a corner) and validation side by side in a
        band along one side, train everywhere else; "stripes": three parallel stripes.
    seed : picks which side and corner (one of 8 orientations); None keeps the canonical
        one (test at the bottom left).

    Returns
    -------
    dict with "train", "val", "test": lists of [row0, col0, row1, col1] (half-open, LR-crop px).
    """
    rows, cols = int(crop_shape[0]), int(crop_shape[1])
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or fr[0] <= 0 or fr[2] <= 0:
        raise DleemError(f"split fractions must be three non-negative shares, train and test > 0: {fractions}")
    fr = fr / fr.sum()
    guard = int(guard)
    variant = 0 if seed is None else int(np.random.default_rng(seed).integers(8))
    h, w = (cols, rows) if variant & 4 else (rows, cols)
    if layout == "band":
        splits = _band_layout(h, w, fr, guard)
        if not splits["train"] or (fr[1] > 0 and not splits["val"]):
            layout = "stripes"
    if layout == "stripes":
        if h < w:  # stripes across the longer side
            variant ^= 4
            h, w = w, h
        splits = _stripe_layout(h, w, fr, guard)
    elif layout != "band":
        raise DleemError(f"unknown split layout {layout!r} (band or stripes)")
    if not splits["train"] or not splits["test"]:
        raise DleemError(
            f"an LR crop of {rows} x {cols} px is too small for train and test areas with a {guard} px guard band"
        )
    return {
        name: [list(_orient(b, h, w, variant)) for b in splits[name]] for name in SPLIT_NAMES
    }


def separate_regions(
    regions_splits: Sequence[dict[str, list[list[int]]]],
    lr_boxes: Sequence[Box],
    guard: int,
) -> list[dict[str, list[list[int]]]]:
    """Keep splits of overlapping regions apart in the LR image.

    Two HR regions can overlap in the LR image; region A's train area must then not read
    region B's test area. Train and validation boxes lose every other region's test area
    (plus guard), train boxes lose every other region's validation area (plus guard).
    """
    def to_global(b: Sequence[int], origin: Box) -> Box:
        return (b[0] + origin[0], b[1] + origin[1], b[2] + origin[0], b[3] + origin[1])

    def grow(b: Box) -> Box:
        return (b[0] - guard, b[1] - guard, b[2] + guard, b[3] + guard)

    glob = [
        {name: [to_global(b, lr_boxes[i]) for b in s[name]] for name in SPLIT_NAMES}
        for i, s in enumerate(regions_splits)
    ]
    out = []
    for i, s in enumerate(glob):
        others = [g for j, g in enumerate(glob) if j != i]
        test_cuts = [grow(b) for g in others for b in g["test"]]
        val_cuts = [grow(b) for g in others for b in g["val"]]
        train = subtract_boxes(s["train"], test_cuts + val_cuts)
        val = subtract_boxes(s["val"], test_cuts)
        o = lr_boxes[i]
        out.append({
            "train": [[b[0] - o[0], b[1] - o[1], b[2] - o[0], b[3] - o[1]] for b in train],
            "val": [[b[0] - o[0], b[1] - o[1], b[2] - o[0], b[3] - o[1]] for b in val],
            "test": [list(b) for b in regions_splits[i]["test"]],
        })
    return out


# --------------------------------------------------------------------------- statistics, files


def image_stats(data: Any, *, rows_per_chunk: int = 1024) -> dict[str, float]:
    """Mean, std, min and max of a whole image, read in row chunks (lazy arrays stay lazy).

    Normalisation for training and inference comes from these whole-image numbers, never
    from one tile.
    """
    n = 0
    total = 0.0
    total_sq = 0.0
    lo, hi = math.inf, -math.inf
    h = data.shape[0]
    for r in range(0, h, rows_per_chunk):
        chunk = np.asarray(data[r : r + rows_per_chunk], dtype=np.float64)
        n += chunk.size
        mean_c = chunk.mean()
        total += mean_c * chunk.size
        total_sq += float(((chunk - mean_c) ** 2).sum()) + chunk.size * mean_c**2
        lo = min(lo, float(chunk.min()))
        hi = max(hi, float(chunk.max()))
    mean = total / n
    var = max(total_sq / n - mean**2, 0.0)
    return {"mean": float(mean), "std": float(math.sqrt(var)), "min": lo, "max": hi}


def sha256_file(path: str | PathLike[str], chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()




# --------------------------------------------------------------------------- the pairs step


@dataclass
class RegionPair:
    """What `make_pairs` needs to know about one registered region."""

    id: str
    hr: np.ndarray
    hr_to_lr: Any
    gain: float = 1.0
    offset: float = 0.0
    hr_file: str | None = None
    hr_sha256: str | None = None
    hr_pixel_size_um: float | None = None
    ratio: float | None = None
    hr_valid: np.ndarray | None = None
    quality: dict[str, Any] = field(default_factory=dict)


def make_pairs(
    lr: Any,
    regions: Sequence[RegionPair],
    out_dir: str | PathLike[str],
    *,
    scale: int | None = None,
    lr_file: str | None = None,
    lr_sha256: str | None = None,
    lr_pixel_size_um: float | None = None,
    lr_blur_sigma_px: float | None = None,
    lr_valid: np.ndarray | None = None,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    guard: int = 8,
    layout: str = "band",
    seed: int | None = 0,
    skip_unusable: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Write the training pairs of registered regions and their manifest.

    Parameters
    ----------
    lr : 2-D array (NumPy or lazy), the whole LR image in its own dtype.
    regions : the registered regions (HR image, map HR px -> LR px, gain, offset).
    out_dir : the pairs folder, usually ``WORKSPACE/pairs``.
    scale : integer k (fine pixels per LR pixel); default min(8, round(ratio)) of the
        first region (the fitted ratio when given, else the map's).
    lr_pixel_size_um : LR pixel size, µm; the targets are written at lr_pixel_size_um / k.
    lr_blur_sigma_px : the estimated LR beam blur (Gaussian sigma, LR px), recorded.
    lr_valid : bool array of the LR shape, False on pixels to leave out (databar).
    fractions, guard, layout, seed : the train / validation / test areas; see `split_boxes`.
    skip_unusable : leave out (with a warning, listed under "skipped_regions") a region
        that covers no whole LR pixel or is too small for the splits, instead of raising.

    Returns
    -------
    The manifest (also written to ``out_dir/manifest.json``).
    """
    from dleem import __version__
    from dleem.io import write_image

    if not regions:
        raise DleemError("no registered region to cut training pairs from")
    out_dir = Path(out_dir)
    lr_shape = tuple(int(s) for s in lr.shape[:2])
    if scale is None:
        first = regions[0]
        scale = default_scale(first.ratio or map_ratio(first.hr_to_lr))
    scale = int(scale)
    if not 1 <= scale <= 16:
        raise DleemError(f"scale must be an integer from 1 to 16, got {scale}")
    if scale == 1:
        log.warning("scale 1: the targets have the LR pixel size, there is no resolution to learn")
    lr_dtype = np.dtype(lr.dtype)

    boxes: list[Box] = []
    splits = []
    kept: list[RegionPair] = []
    skipped = []
    for i, region in enumerate(regions):
        try:
            box = pair_lr_box(region.hr_to_lr, region.hr.shape, lr_shape, lr_valid=lr_valid)
            split = split_boxes((box[2] - box[0], box[3] - box[1]), fractions=fractions,
                                guard=guard, layout=layout, seed=None if seed is None else seed + i)
        except DleemError as error:
            if not skip_unusable:
                raise DleemError(f"{region.hr_file or region.id}: {error}") from error
            log.warning("%s: no training pair: %s", region.hr_file or region.id, error)
            skipped.append({"id": region.id, "hr_file": region.hr_file, "message": str(error)})
            continue
        kept.append(region)
        boxes.append(box)
        splits.append(split)
    if not kept:
        raise DleemError("no registered region gives a usable training pair")
    splits = separate_regions(splits, boxes, guard)
    regions = kept

    entries = []
    for i, (region, box) in enumerate(zip(regions, boxes, strict=True)):
        r0, c0, r1, c1 = box
        lr_crop = np.asarray(lr[r0:r1, c0:c1])
        target, mask = resample_hr_to_fine(
            region.hr, region.hr_to_lr, box, scale,
            gain=region.gain, offset=region.offset, hr_valid=region.hr_valid,
        )
        fine_px = None if lr_pixel_size_um is None else lr_pixel_size_um / scale
        names = {kind: f"{region.id}_{kind}.tif" for kind in ("lr", "hr", "mask")}
        write_image(out_dir / names["lr"], lr_crop, pixel_size_um=lr_pixel_size_um)
        write_image(out_dir / names["hr"], target, pixel_size_um=fine_px)
        write_image(out_dir / names["mask"], mask, pixel_size_um=fine_px)
        ratio = region.ratio if region.ratio is not None else map_ratio(region.hr_to_lr)
        entry = {
            "id": region.id,
            "hr_file": region.hr_file,
            "hr_sha256": region.hr_sha256,
            "hr_pixel_size_um": region.hr_pixel_size_um,
            "ratio": float(ratio),
            "hr_to_lr": as_matrix(region.hr_to_lr).tolist(),
            "gain": float(region.gain),
            "offset": float(region.offset),
            "lr_box": [int(v) for v in box],
            "lr": names["lr"],
            "hr": names["hr"],
            "mask": names["mask"],
            "valid_fraction": float(mask.mean()),
            "splits": splits[i],
            "quality": region.quality,
        }
        entries.append(entry)
        if progress is not None:
            progress()
    manifest = {
        "version": MANIFEST_VERSION,
        "scale": scale,
        "lr_file": lr_file,
        "lr_sha256": lr_sha256,
        "lr_dtype": lr_dtype.name,
        "lr_shape": list(lr_shape),
        "lr_pixel_size_um": lr_pixel_size_um,
        "lr_stats": image_stats(lr),
        "lr_blur_sigma_px": None if lr_blur_sigma_px is None else float(lr_blur_sigma_px),
        "coverage": "full",
        "split": {"fractions": [float(f) for f in fractions], "guard_lr_px": guard,
                  "layout": layout, "seed": seed},
        "dleem_version": __version__,
        "regions": entries,
        "skipped_regions": skipped,
    }
    write_json(out_dir / "manifest.json", manifest)
    _remove_stale(out_dir, {e[key] for e in entries for key in ("lr", "hr", "mask")})
    log.info("wrote %d training pairs at scale %d to %s", len(entries), scale, out_dir)
    return manifest


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Pair files of an earlier run into the same folder that this manifest no longer lists."""
    for path in out_dir.glob("HR_*_*.tif"):
        if path.name not in keep and path.stem.rsplit("_", 1)[-1] in ("lr", "hr", "mask"):
            path.unlink(missing_ok=True)


def load_manifest(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a pairs manifest (a folder or the manifest.json itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.exists():
        raise DleemError(f"{path}: no pairs manifest (run `dleem register` first)")
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    if manifest.get("version") != MANIFEST_VERSION:
        raise DleemError(f"{path}: unsupported pairs manifest version {manifest.get('version')!r}")
    return manifest
