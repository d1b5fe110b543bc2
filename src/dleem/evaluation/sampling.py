"""Random evaluation tiles, drawn only from the held-out test boxes of the pairs manifest.

A tile is a square of ``tile_size`` fine-grid pixels whose origin lies on the LR grid (a
multiple of the scale ``k`` on the fine grid), so it corresponds to exactly
``tile_size / k`` LR pixels. A tile is a candidate only when it lies entirely inside one test
box and every fine pixel under it is valid in the region's HR mask. Tiles are drawn uniformly
among all candidates, without replacement of positions (two tiles may overlap: the test
area is small and each tile is a sample of it), with a seeded NumPy generator, so a seed
gives the same tiles to every model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dleem.errors import ParameterError
from dleem.workspace import PairRegion


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
    """

    region: str
    row: int
    col: int
    size_lr: int
    scale: int

    @property
    def fine_box(self) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1) on the region's fine grid, half-open."""
        k = self.scale
        return (k * self.row, k * self.col, k * (self.row + self.size_lr),
                k * (self.col + self.size_lr))

    @property
    def lr_box(self) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1) in LR-crop pixels, half-open."""
        return (self.row, self.col, self.row + self.size_lr, self.col + self.size_lr)

    def as_dict(self) -> dict:
        return {"region": self.region, "lr_crop_box": list(self.lr_box),
                "fine_box": list(self.fine_box)}


def _candidates(box: tuple[int, int, int, int], mask: np.ndarray | None, size_lr: int, k: int) -> np.ndarray:
    """LR-crop origins (row, col) of tiles inside ``box`` and fully valid in ``mask``."""
    r0, c0, r1, c1 = (int(v) for v in box)
    rows = np.arange(r0, r1 - size_lr + 1)
    cols = np.arange(c0, c1 - size_lr + 1)
    if rows.size == 0 or cols.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if mask is None:
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        return np.stack([rr.ravel(), cc.ravel()], axis=1)
    # A tile is valid when the LR pixels under it are all fully valid on the fine grid.
    h, w = mask.shape[0] // k, mask.shape[1] // k
    lr_valid = (mask[: h * k, : w * k] > 0).reshape(h, k, w, k).all(axis=(1, 3))
    bad = np.pad((~lr_valid).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    inside = (rr + size_lr <= h) & (cc + size_lr <= w)
    rr, cc = rr[inside], cc[inside]
    n_bad = (bad[rr + size_lr, cc + size_lr] - bad[rr, cc + size_lr]
             - bad[rr + size_lr, cc] + bad[rr, cc])
    ok = n_bad == 0
    return np.stack([rr[ok], cc[ok]], axis=1)


def sample_tiles(
    regions: list[PairRegion],
    masks: dict[str, np.ndarray | None],
    *,
    scale: int,
    tile_size: int,
    n_tiles: int,
    seed: int = 0,
) -> list[EvalTile]:
    """Draw up to ``n_tiles`` random tiles from the test boxes of ``regions``.

    Parameters
    ----------
    regions : the pairs manifest's regions (their test boxes are in LR-crop px).
    masks : dict
        Region id -> fine-grid validity mask (1 = valid HR), or None for all valid.
    scale : int
        Fine-grid factor k.
    tile_size : int
        Tile side in fine-grid pixels; must be a multiple of ``scale``.
    n_tiles : int
        How many tiles to draw; fewer are returned when there are fewer candidate positions.
    seed : int
        Seed of the NumPy generator.

    Raises
    ------
    DleemError
        When no test box can hold a tile of this size.
    """
    if tile_size % scale:
        raise ParameterError("tile_size", f"{tile_size} must be a multiple of the scale {scale}")
    size_lr = tile_size // scale
    pools: list[tuple[str, np.ndarray]] = []
    largest = 0
    for region in regions:
        for box in region.splits.test:
            largest = max(largest, min(box[2] - box[0], box[3] - box[1]))
            cand = _candidates(box, masks.get(region.id), size_lr, scale)
            if len(cand):
                pools.append((region.id, cand))
    total = sum(len(c) for _, c in pools)
    if total == 0:
        raise ParameterError(
            "tile_size", f"{tile_size}: no test box holds a fully valid tile of this size "
            f"(largest test box side: {largest} LR px = {largest * scale} fine px); choose a "
            "smaller one")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(n_tiles, total), replace=False))
    offsets = np.cumsum([0] + [len(c) for _, c in pools])
    tiles = []
    for p in picks:
        i = int(np.searchsorted(offsets, p, side="right") - 1)
        rid, cand = pools[i]
        r, c = cand[p - offsets[i]]
        tiles.append(EvalTile(rid, int(r), int(c), size_lr, scale))
    order = rng.permutation(len(tiles))  # random order, so the gallery's first tiles are random
    return [tiles[i] for i in order]
