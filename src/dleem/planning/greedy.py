"""Greedy proposals of HR boxes that bring the most unsupported area into training.

The trust map's blocks (B x B LR px) are cut into cells of ``B / CELLS_PER_BLOCK`` LR px,
so a box can sit anywhere on that finer step. Objective, one box at a time: the box
covering the most unsupported area, ties broken by the summed predicted RMSE; a box may
overlap neither the existing HR regions nor an earlier proposal. After a proposal only
the cells it covers change: they count as supported from then on (the model will have
seen them), which gives the predicted supported fraction after each added region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CELLS_PER_BLOCK = 4
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Proposal:
    """One proposed HR region: its LR box (half-open) and what it would bring."""

    lr_box: Box
    covers_unsupported_fraction: float
    predicted_supported_fraction_after: float
    summed_rmse: float


def _integral(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.float64)
    out[1:, 1:] = a.cumsum(0).cumsum(1)
    return out


def _window_sums(a: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``a`` over every n x n window (top-left corner index)."""
    s = _integral(a)
    return s[n:, n:] - s[:-n, n:] - s[n:, :-n] + s[:-n, :-n]


def propose(supported: np.ndarray, rmse: np.ndarray, *, block: int, lr_shape: tuple[int, int], box_lr_px: int,
            n: int, existing: Sequence[Box] = ()) -> tuple[list[Proposal], float]:
    """Up to ``n`` proposals on the block map ``supported`` (bool) with ``rmse`` (grey
    levels), for square boxes of ``box_lr_px`` LR px; returns them and the supported
    fraction now. Fewer than ``n`` come back when no free place is left."""
    step = max(block // CELLS_PER_BLOCK, 1)
    rep = block // step
    h, w = int(lr_shape[0]), int(lr_shape[1])
    ch, cw = -(-h // step), -(-w // step)
    # cell areas (LR px) and per-cell maps, the last partial cells with their true area
    rows = np.minimum(step, h - step * np.arange(ch))
    cols = np.minimum(step, w - step * np.arange(cw))
    area = np.outer(rows, cols).astype(np.float64)
    expand = np.ones((rep, rep))
    sup = np.kron(np.asarray(supported, dtype=np.float64), expand)[:ch, :cw] > 0.5
    err = np.kron(np.asarray(rmse, dtype=np.float64), expand)[:ch, :cw]
    blocked = np.zeros((ch, cw), bool)
    for r0, c0, r1, c1 in existing:
        blocked[max(r0 // step, 0):-(-r1 // step), max(c0 // step, 0):-(-c1 // step)] = True
    k = max(int(round(box_lr_px / step)), 1)
    total = float(area.sum())
    now = float((area * sup).sum()) / total
    fraction = now
    out: list[Proposal] = []
    for _ in range(n):
        if k > ch or k > cw:
            break
        gain = _window_sums(area * ~sup, k)
        tie = _window_sums(area * err, k)
        free = _window_sums(blocked.astype(np.float64), k) < 0.5
        # only boxes inside the image: the last window rows/columns must fit in LR px
        free[(np.arange(free.shape[0]) * step + box_lr_px) > h, :] = False
        free[:, (np.arange(free.shape[1]) * step + box_lr_px) > w] = False
        if not free.any():
            break
        score = np.where(free, gain, -np.inf)
        best = score.max()
        cand = np.where(free & (score >= best - 1e-9), tie, -np.inf)
        i, j = np.unravel_index(int(np.argmax(cand)), cand.shape)
        covered = (slice(i, i + k), slice(j, j + k))
        box_area = float(area[covered].sum())
        new = float((area[covered] * ~sup[covered]).sum())
        fraction += new / total
        out.append(Proposal(lr_box=(int(i * step), int(j * step), int(i * step + box_lr_px), int(j * step + box_lr_px)),
                            covers_unsupported_fraction=new / box_area if box_area else 0.0,
                            predicted_supported_fraction_after=min(fraction, 1.0),
                            summed_rmse=float(tie[i, j])))
        sup[covered] = True
        blocked[covered] = True
    return out, now
