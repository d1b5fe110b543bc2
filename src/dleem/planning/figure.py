"""``plan.png``: the proposed HR regions over the LR overview, with the existing ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

OVERVIEW_SIDE = 1024


def overview(lr: Any, side: int = OVERVIEW_SIDE) -> tuple[np.ndarray, int]:
    """A strided preview of a (lazy) LR image no larger than ``side`` and its step."""
    step = max(1, -(-max(lr.shape) // side))
    return np.asarray(lr[::step, ::step], dtype=np.float32), step


def draw_plan(path: Path, lr: Any, unsupported: np.ndarray, block: int, existing: Sequence[Sequence[int]],
              proposals: Sequence[Sequence[int]], curve: Sequence[float]) -> Path:
    """Overview + unsupported blocks (hatched red) + regions, and the supported-fraction curve."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from dleem.plotting import save_png

    img, step = overview(lr)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.6), gridspec_kw={"width_ratios": [1.6, 1]})
    lo, hi = np.percentile(img, [1, 99])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    for i, j in np.argwhere(unsupported):
        ax.add_patch(Rectangle((j * block / step - 0.5, i * block / step - 0.5), block / step, block / step,
                               fill=False, hatch="///", edgecolor="tab:red", lw=0, alpha=0.6))
    for r0, c0, r1, c1 in existing:
        ax.add_patch(Rectangle((c0 / step - 0.5, r0 / step - 0.5), (c1 - c0) / step, (r1 - r0) / step,
                               fill=False, edgecolor="tab:cyan", lw=1.5))
    for n, (r0, c0, r1, c1) in enumerate(proposals, 1):
        ax.add_patch(Rectangle((c0 / step - 0.5, r0 / step - 0.5), (c1 - c0) / step, (r1 - r0) / step,
                               fill=False, edgecolor="yellow", lw=2, ls="--"))
        ax.text(c0 / step, r0 / step, f" {n}", color="yellow", va="top", fontsize=11, weight="bold")
    ax.set_title("HR regions: cyan existing, yellow proposed (1 = first); red hatch = unsupported", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax2.plot(range(len(curve)), [100 * c for c in curve], "o-")
    ax2.set_xlabel("HR regions added")
    ax2.set_ylabel("predicted supported area [%]")
    ax2.set_ylim(0, 100)
    ax2.set_xticks(range(len(curve)))
    ax2.grid(alpha=0.3)
    ax2.set_title("how many HR regions are enough?", fontsize=9)
    fig.tight_layout()
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)
    return path
