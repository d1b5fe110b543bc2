"""Cross-validation: the quality to expect where no HR was acquired.

Leave-one-region-out: for each HR region, a model is trained on the train and validation
areas of the *other* regions only (with the budget the final model gets) and scored on the
whole held-out region, all of its valid area in independent tiles. With one region there is
nothing to leave out, so the region's crop is cut into ``folds`` column blocks (spatial
k-fold): each block is held out in turn, training reads the train and validation boxes of
the region clipped away from it by the manifest's guard band, and the whole block is scored.

The estimate pools the held-out tiles of all folds: the median over them, and a 95 %
interval from the two-stage bootstrap of `dleem.evaluation.stats` with the held-out region
(the block, in k-fold) as the unit. The file-level step is
`dleem.evaluation.pipeline.crossval_workspace`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dleem.errors import InputError, ParameterError
from dleem.evaluation import stats
from dleem.workspace import Box, PairRegion, PairsManifest, Splits, Workspace

LORO = "leave-one-region-out"
KFOLD = "spatial-k-fold"
#: Boxes narrower than this (LR px) after clipping are dropped (no crop fits them).
MIN_BOX_LR_PX = 4
#: Guard band (LR px) between a held-out block and training when the manifest has none.
DEFAULT_GUARD_LR_PX = 8


@dataclass(frozen=True)
class Fold:
    """One fold: the region scored, the regions trained on, and the held-out block.

    ``block`` is None when the whole region is held out (leave-one-region-out), else the
    held-out column block in LR-crop px (spatial k-fold of a single region).
    """

    held_out: str
    region: str
    trained_on: list[str]
    block: Box | None = None

    @property
    def name(self) -> str:
        """The fold's folder name under ``crossval/``."""
        return f"fold-{self.held_out.replace(' ', '-').replace('/', 'of')}"


def plan_folds(manifest: PairsManifest, folds: int = 3, *,
               where: str = "pairs/manifest.json") -> tuple[str, list[Fold], str]:
    """The scheme, its folds and a sentence saying what was done.

    Raises
    ------
    InputError
        A manifest without regions.
    ParameterError
        ``folds`` < 2 for a single region, or more folds than the region has columns.
    """
    regions = manifest.regions
    if not regions:
        raise InputError(where, "no HR region to cross-validate (register at least one HR "
                                "image first)")
    if len(regions) >= 2:
        ids = [r.id for r in regions]
        plan = [Fold(r.id, r.id, [i for i in ids if i != r.id]) for r in regions]
        return LORO, plan, (f"leave-one-region-out over {len(regions)} regions: each model "
                            "trained on the other regions only, scored on the whole held-out "
                            "region")
    if folds < 2:
        raise ParameterError("folds", f"must be >= 2 for a single region, got {folds}")
    region = regions[0]
    width = region.lr_box[3] - region.lr_box[1]
    height = region.lr_box[2] - region.lr_box[0]
    if width < folds * MIN_BOX_LR_PX:
        raise ParameterError("folds", f"{folds}: region {region.id} is only {width} LR px wide")
    edges = [round(i * width / folds) for i in range(folds + 1)]
    plan = [Fold(f"{region.id} block {i + 1}/{folds}", region.id, [region.id],
                 (0, edges[i], height, edges[i + 1])) for i in range(folds)]
    return KFOLD, plan, (f"one HR region ({region.id}): spatial {folds}-fold cross-validation "
                         f"over column blocks of it, not leave-one-region-out; each block is "
                         "held out in turn with a guard band, so the estimate still comes from "
                         "the one region and its acquisition")


def _minus_columns(box: Box, c0: int, c1: int) -> list[Box]:
    """The parts of ``box`` left and right of the columns [c0, c1)."""
    r0, b0, r1, b1 = box
    parts = [(r0, b0, r1, min(b1, c0)), (r0, max(b0, c1), r1, b1)]
    return [p for p in parts if p[3] - p[1] >= MIN_BOX_LR_PX and p[2] - p[0] >= MIN_BOX_LR_PX]


def fold_manifest(manifest: PairsManifest, fold: Fold, ws: Workspace) -> PairsManifest:
    """The manifest a spatial fold trains and scores on: train and validation boxes clipped
    away from the held-out block (with the guard band), the block as the only test box, and
    the pair files named by absolute path (so a fold workspace reads the original pairs)."""
    if fold.block is None:
        raise ValueError(f"fold {fold.held_out} holds out a whole region, not a block")
    guard = manifest.split.guard_lr_px if manifest.split else DEFAULT_GUARD_LR_PX
    _, c0, _, c1 = fold.block
    region = manifest.region(fold.region)
    splits = Splits(
        train=[p for b in region.splits.train for p in _minus_columns(b, c0 - guard, c1 + guard)],
        val=[p for b in region.splits.val for p in _minus_columns(b, c0 - guard, c1 + guard)],
        test=[fold.block])
    if not splits.train:
        raise ParameterError("folds", f"holding out columns {c0}-{c1} of {region.id} leaves no "
                                      "train area; use fewer folds")
    files = {name: str(ws.pair_file(getattr(region, name)).resolve())
             for name in ("lr", "hr", "mask")}
    new_region: PairRegion = dataclasses.replace(region, splits=splits, **files)
    return dataclasses.replace(manifest, regions=[new_region])


def _per_tile(entry: dict[str, Any] | None, key: str) -> list[float]:
    """Per-tile values of a scores entry; JSON null is inf for PSNR (identical tiles)."""
    if not entry:
        return []
    fill = math.inf if key == "psnr_db" else math.nan
    return [fill if v is None else float(v) for v in entry[key]["per_tile"]]


def estimate(folds: Sequence[tuple[str, dict[str, Any]]], *, seed: int = 0) -> dict[str, Any]:
    """``{model: E, bicubic: E}`` pooled over the folds' held-out tiles.

    ``folds`` are (unit, metrics) with metrics ``{"model": ENTRY, "bicubic": ENTRY}``; the
    unit (held-out region, or block) is the first stage of the bootstrap.
    """
    out: dict[str, Any] = {}
    for method in ("model", "bicubic"):
        e: dict[str, Any] = {}
        for ref in ("vs_HR", "vs_truth"):
            scores: dict[str, Any] = {}
            for key in ("ssim", "psnr_db"):
                groups: dict[str, list[float]] = {}
                for unit, metrics in folds:
                    src = metrics[method] if ref == "vs_HR" else metrics[method].get("vs_truth")
                    groups.setdefault(unit, []).extend(_per_tile(src, key))
                if not any(groups.values()):
                    scores = {}
                    break
                s = stats.median_summary(groups, seed=seed)
                scores[key] = {"median": s["median"], "ci95": s["ci95"],
                               "n_tiles": s["n_tiles"]}
            e[ref] = scores or None
        out[method] = e
    return out
