"""The train / validation / test areas of each region, fixed once with guard bands.

Boxes are in LR-crop coordinates (half-open). A guard band between two different splits
keeps a receptive field inside one from reading pixels of another; overlapping regions are
kept apart in LR image coordinates too (`separate_regions`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dleem.errors import DleemError
from dleem.workspace import SPLIT_NAMES, Box


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
