"""Independent evaluation tiles: a grid anchored at LR pixel (0, 0) of the LR image.

A tile is a square of ``tile_size`` fine-grid pixels (``tile_size / k`` LR pixels) whose LR
origin is a multiple of its LR side in LR *image* pixels, so the tiles of the whole map form
one grid and never overlap. A grid cell is a tile of a region only when it lies entirely
inside one of the region's evaluation boxes (its test boxes, or its whole crop for a
held-out region) and every fine pixel under it is valid in the region's HR mask: every valid
pixel is then counted at most once. ``n_tiles`` caps the number by a seeded random subset of
the grid cells, so a seed gives the same tiles to every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dleem.errors import ParameterError
from dleem.workspace import Box, PairRegion

#: Evaluation areas: the test boxes of the manifest, or the whole region (held out).
AREAS = ("test", "all")


@dataclass(frozen=True)
class EvalTile:
    """One evaluation tile.

    Attributes
    ----------
    region : str
        Region id in the pairs manifest.
    row, col : int
        Origin in the region's **LR-crop** pixels (multiply by ``scale`` for the fine grid).
    size_lr : int
        Side in LR pixels (``tile_size / scale``).
    scale : int
        Fine-grid factor k.
    origin : (int, int)
        The region's crop origin in LR image px (its ``lr_box[:2]``).
    """

    region: str
    row: int
    col: int
    size_lr: int
    scale: int
    origin: tuple[int, int] = (0, 0)

    @property
    def fine_box(self) -> Box:
        """(row0, col0, row1, col1) on the region's fine grid, half-open."""
        k = self.scale
        return (k * self.row, k * self.col, k * (self.row + self.size_lr),
                k * (self.col + self.size_lr))

    @property
    def crop_box(self) -> Box:
        """(row0, col0, row1, col1) in LR-crop pixels, half-open."""
        return (self.row, self.col, self.row + self.size_lr, self.col + self.size_lr)

    @property
    def lr_box(self) -> Box:
        """(row0, col0, row1, col1) in LR image pixels, half-open."""
        r0, c0, r1, c1 = self.crop_box
        return (r0 + self.origin[0], c0 + self.origin[1], r1 + self.origin[0],
                c1 + self.origin[1])

    def as_dict(self) -> dict:
        return {"region": self.region, "lr_crop_box": list(self.crop_box),
                "lr_box": list(self.lr_box), "fine_box": list(self.fine_box)}


def lr_valid(mask: np.ndarray | None, crop_shape: tuple[int, int], k: int) -> np.ndarray:
    """LR-crop pixels whose k x k fine pixels are all valid in ``mask`` (None: all valid)."""
    h, w = crop_shape
    if mask is None:
        return np.ones((h, w), dtype=bool)
    m = np.zeros((h * k, w * k), dtype=bool)
    mh, mw = min(h * k, mask.shape[0]), min(w * k, mask.shape[1])
    m[:mh, :mw] = mask[:mh, :mw] > 0
    return m.reshape(h, k, w, k).all(axis=(1, 3))


def grid_tiles(region: PairRegion, boxes: Sequence[Sequence[int]], mask: np.ndarray | None,
               size_lr: int, k: int) -> list[EvalTile]:
    """The grid cells (anchored at LR image pixel 0, 0) inside ``boxes`` and fully valid.

    ``boxes`` are in LR-crop px; a cell must lie inside one box (boxes of a region never
    overlap, so neither do its tiles).
    """
    r_off, c_off = int(region.lr_box[0]), int(region.lr_box[1])
    crop = (int(region.lr_box[2]) - r_off, int(region.lr_box[3]) - c_off)
    valid = lr_valid(mask, crop, k)
    bad = np.pad((~valid).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    tiles = []
    for box in boxes:
        r0, c0, r1, c1 = (int(v) for v in box)
        r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, crop[0]), min(c1, crop[1])
        # grid origins in LR image px, then back to crop px
        g_rows = np.arange(-(-(r0 + r_off) // size_lr) * size_lr, r1 + r_off - size_lr + 1, size_lr)
        g_cols = np.arange(-(-(c0 + c_off) // size_lr) * size_lr, c1 + c_off - size_lr + 1, size_lr)
        for gr in g_rows:
            for gc in g_cols:
                r, c = int(gr) - r_off, int(gc) - c_off
                n_bad = (bad[r + size_lr, c + size_lr] - bad[r, c + size_lr]
                         - bad[r + size_lr, c] + bad[r, c])
                if n_bad == 0:
                    tiles.append(EvalTile(region.id, r, c, size_lr, k, (r_off, c_off)))
    return tiles


def area_boxes(region: PairRegion, area: str) -> list[Box]:
    """The evaluation boxes (LR-crop px) of ``region``: its test boxes, or its whole crop."""
    if area == "test":
        return list(region.splits.test)
    if area == "all":
        r0, c0, r1, c1 = region.lr_box
        return [(0, 0, r1 - r0, c1 - c0)]
    raise ParameterError("area", f"{area!r} is not one of {', '.join(AREAS)}")


def sample_tiles(
    regions: list[PairRegion],
    masks: dict[str, np.ndarray | None],
    *,
    scale: int,
    tile_size: int,
    n_tiles: int | None = None,
    seed: int = 0,
    area: str = "test",
) -> list[EvalTile]:
    """The independent tiles of ``regions`` (grid cells), at most ``n_tiles`` of them.

    Parameters
    ----------
    regions : the pairs manifest's regions to evaluate.
    masks : dict
        Region id -> fine-grid validity mask (1 = valid HR), or None for all valid.
    scale : int
        Fine-grid factor k.
    tile_size : int
        Tile side in fine-grid pixels; must be a multiple of ``scale``.
    n_tiles : int, optional
        Cap: a seeded random subset of the grid cells when there are more (default: all).
    seed : int
        Seed of the subset.
    area : {"test", "all"}
        The test boxes of each region, or each region's whole valid area (held out).

    Returns
    -------
    Tiles ordered by region (manifest order), then row, then column.

    Raises
    ------
    ParameterError
        A tile size that is not a multiple of the scale, ``n_tiles < 1``, or a region whose
        evaluation area holds no tile (the message names the region and its size).
    """
    if tile_size < scale or tile_size % scale:
        raise ParameterError("tile_size", f"{tile_size} must be a multiple of the scale {scale}")
    if n_tiles is not None and n_tiles < 1:
        raise ParameterError("tiles", f"must be >= 1, got {n_tiles}")
    size_lr = tile_size // scale
    tiles: list[EvalTile] = []
    for region in regions:
        boxes = area_boxes(region, area)
        found = grid_tiles(region, boxes, masks.get(region.id), size_lr, scale)
        if not found:
            sides = [(b[2] - b[0], b[3] - b[1]) for b in boxes] or [(0, 0)]
            h, w = max(sides, key=lambda s: min(s))
            what = "test area" if area == "test" else "area"
            raise ParameterError(
                "tile_size", f"{tile_size}: region {region.id} is too small for one tile: its "
                f"largest {what} is {h} x {w} LR px ({h * scale} x {w * scale} fine px), and no "
                f"fully valid {size_lr} x {size_lr} LR px cell of the grid fits in it; choose a "
                "smaller one")
        tiles.extend(found)
    if n_tiles is not None and n_tiles < len(tiles):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(tiles), size=n_tiles, replace=False))
        tiles = [tiles[i] for i in keep]
    return tiles
