"""Cut the training pairs of registered regions and write their manifest.

`make_pairs` writes ``WORKSPACE/pairs/``: per region the raw LR crop, the HR target on the
fine grid and its validity mask, and ``manifest.json`` (`dleem.workspace.PairsManifest`),
which fixes the train / validation / test areas once for every later step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError
from dleem.imaging import check_scale, default_scale
from dleem.pairs.geometry import map_ratio, pair_lr_box, resample_hr_to_fine
from dleem.pairs.splits import separate_regions, split_boxes
from dleem.progress import ProgressCallback, report
from dleem.registration.transform import AffineMap
from dleem.workspace import (
    LRStats,
    PairRegion,
    PairsManifest,
    Splits,
    SplitSettings,
    Workspace,
)

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


def image_stats(data: Any, *, rows_per_chunk: int = 1024) -> LRStats:
    """Mean, std, min and max of a whole image, read in row chunks (lazy arrays stay lazy).

    Normalisation for training and inference comes from these whole-image numbers, never
    from one tile.
    """
    n = 0
    total = 0.0
    total_sq = 0.0
    lo, hi = math.inf, -math.inf
    for r in range(0, data.shape[0], rows_per_chunk):
        chunk = np.asarray(data[r : r + rows_per_chunk], dtype=np.float64)
        n += chunk.size
        mean_c = chunk.mean()
        total += mean_c * chunk.size
        total_sq += float(((chunk - mean_c) ** 2).sum()) + chunk.size * mean_c**2
        lo = min(lo, float(chunk.min()))
        hi = max(hi, float(chunk.max()))
    mean = total / n
    var = max(total_sq / n - mean**2, 0.0)
    return LRStats(mean=float(mean), std=float(math.sqrt(var)), min=lo, max=hi)


@dataclass
class RegionPair:
    """What `make_pairs` needs to know about one registered region."""

    id: str
    hr: np.ndarray
    hr_to_lr: AffineMap
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
    workspace: Workspace | str | PathLike[str],
    *,
    scale: int | None = None,
    lr_file: str | None = None,
    lr_sha256: str | None = None,
    lr_pixel_size_um: float | None = None,
    lr_blur_sigma_px: float | None = None,
    lr_valid: np.ndarray | None = None,
    lr_shape: tuple[int, int] | None = None,
    lr_databar_rows: int = 0,
    lr_plane: dict[str, int] | None = None,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    guard: int = 8,
    layout: str = "band",
    seed: int | None = 0,
    skip_unusable: bool = False,
    progress: ProgressCallback | None = None,
) -> PairsManifest:
    """Write the training pairs of registered regions and their manifest.

    Parameters
    ----------
    lr : 2-D array (NumPy or lazy), the LR image in its own dtype (databar rows cut off).
    regions : the registered regions (HR image, map HR px -> LR px, gain, offset).
    workspace : the workspace; the pairs go to its ``pairs/`` folder.
    scale : integer k (fine pixels per LR pixel), 2..8; default ``clamp(round(ratio), 2, 8)``
        of the first region (the fitted ratio when given, else the map's).
    lr_pixel_size_um : LR pixel size, µm; the targets are written at lr_pixel_size_um / k.
    lr_blur_sigma_px : the estimated LR beam blur (Gaussian sigma, LR px), recorded.
    lr_valid : bool array of the LR shape, False on pixels to leave out.
    lr_shape, lr_databar_rows : the whole LR file's shape and its databar rows, recorded
        (default: ``lr.shape`` and 0).
    lr_plane : the page / scene / channel the LR map was read from, recorded so that every
        later step reads the same plane (`PairsManifest.read_lr`).
    fractions, guard, layout, seed : the train / validation / test areas; see
        `dleem.pairs.splits.split_boxes`.
    skip_unusable : leave out (with a warning, listed under ``skipped_regions``) a region
        that covers no whole LR pixel or is too small for the splits, instead of raising.

    Returns
    -------
    The manifest, also written to ``WORKSPACE/pairs/manifest.json``.
    """
    from dleem.io import write_image

    if not regions:
        raise DleemError("no registered region to cut training pairs from")
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    shape = tuple(int(s) for s in lr.shape[:2])
    if scale is None:
        first = regions[0]
        scale = default_scale(first.ratio or map_ratio(first.hr_to_lr))
    scale = check_scale(scale)

    boxes: list[Box] = []
    splits = []
    kept: list[RegionPair] = []
    skipped = []
    for i, region in enumerate(regions):
        try:
            box = pair_lr_box(region.hr_to_lr, region.hr.shape, shape, lr_valid=lr_valid)
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

    entries = []
    fine_px = None if lr_pixel_size_um is None else lr_pixel_size_um / scale
    for i, (region, box) in enumerate(zip(kept, boxes, strict=True)):
        r0, c0, r1, c1 = box
        target, mask = resample_hr_to_fine(
            region.hr, region.hr_to_lr, box, scale,
            gain=region.gain, offset=region.offset, hr_valid=region.hr_valid,
        )
        names = {kind: f"{region.id}_{kind}.tif" for kind in ("lr", "hr", "mask")}
        write_image(ws.pair_file(names["lr"]), np.asarray(lr[r0:r1, c0:c1]),
                    pixel_size_um=lr_pixel_size_um)
        write_image(ws.pair_file(names["hr"]), target, pixel_size_um=fine_px)
        write_image(ws.pair_file(names["mask"]), mask, pixel_size_um=fine_px)
        entries.append(PairRegion(
            id=region.id, hr_file=region.hr_file, hr_sha256=region.hr_sha256,
            hr_pixel_size_um=region.hr_pixel_size_um,
            ratio=float(region.ratio if region.ratio is not None else map_ratio(region.hr_to_lr)),
            hr_to_lr=region.hr_to_lr, gain=float(region.gain), offset=float(region.offset),
            lr_box=box, lr=names["lr"], hr=names["hr"], mask=names["mask"],
            valid_fraction=float(mask.mean()), splits=Splits.from_dict(splits[i]),
            quality=region.quality,
        ))
        report(progress, "training pairs", i + 1, len(kept))
    manifest = PairsManifest(
        scale=scale, lr_file=lr_file, lr_sha256=lr_sha256, lr_dtype=np.dtype(lr.dtype).name,
        lr_shape=lr_shape or shape, lr_pixel_size_um=lr_pixel_size_um, lr_stats=image_stats(lr),
        lr_blur_sigma_px=None if lr_blur_sigma_px is None else float(lr_blur_sigma_px),
        lr_databar_rows=int(lr_databar_rows), coverage="full",
        lr_plane={k: int(v) for k, v in (lr_plane or {}).items() if v is not None} or None,
        split=SplitSettings(fractions=[float(f) for f in fractions], guard_lr_px=int(guard),
                            layout=layout, seed=seed),
        regions=entries, skipped_regions=skipped,
    )
    ws.write_pairs(manifest)
    _remove_stale(ws.pairs_dir, {getattr(e, key) for e in entries for key in ("lr", "hr", "mask")})
    log.info("wrote %d training pairs at scale %d to %s", len(entries), scale, ws.pairs_dir)
    return manifest


def _remove_stale(pairs_dir: Path, keep: set[str]) -> None:
    """Pair files of an earlier run into the same folder that this manifest no longer lists."""
    for path in pairs_dir.glob("HR_*_*.tif"):
        if path.name not in keep and path.stem.rsplit("_", 1)[-1] in ("lr", "hr", "mask"):
            path.unlink(missing_ok=True)
