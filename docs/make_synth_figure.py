"""Make docs/synth_example.png: the built-in synthetic sandstone as dleem synth writes it.

Left: the LR map of the whole area with the HR regions outlined (from truth.json's
hr_to_lr); middle: the LR crop under HR region 1; right: HR region 1 itself.

    python docs/make_synth_figure.py [--seed 0] [--size 2048] [--out docs/synth_example.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dleem.io import read_image  # noqa: E402
from dleem.synth import SynthParams, generate  # noqa: E402

HERE = Path(__file__).resolve().parent


def _scalebar(ax, pixel_um: float, width_px: int, length_um: float, color: str = "w") -> None:
    n = length_um / pixel_um
    x0 = 0.05 * width_px
    y0 = 0.94 * width_px
    ax.plot([x0, x0 + n], [y0, y0], color=color, lw=3)
    ax.text(x0 + n / 2, y0 - 0.02 * width_px, f"{length_um:g} µm", color=color,
            ha="center", va="bottom", fontsize=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--out", type=Path, default=HERE / "synth_example.png")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        res = generate(tmp, SynthParams(seed=args.seed, lr_size=args.size))
        lr_img = read_image(Path(tmp) / "LR.tif")
        truth = res.truth
        lr = np.asarray(lr_img.data)
        hr = np.asarray(read_image(Path(tmp) / truth["regions"][0]["file"]).data)

    fig, axes = plt.subplots(1, 3, figsize=(18, 6.6), dpi=110)
    ax = axes[0]
    ax.imshow(lr, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    for i, reg in enumerate(truth["regions"]):
        m = np.array(reg["hr_to_lr"])
        rows, cols = reg["shape"]
        c = np.array([[-0.5, -0.5, 1], [cols - 0.5, -0.5, 1], [cols - 0.5, rows - 0.5, 1],
                      [-0.5, rows - 0.5, 1], [-0.5, -0.5, 1]]) @ m.T
        ax.plot(c[:, 0], c[:, 1], color="yellow", lw=1.5)
        ax.text(c[0, 0], c[0, 1] - 15, f"HR_{i + 1}", color="yellow", fontsize=11)
    _scalebar(ax, truth["lr_pixel_size_um"], lr.shape[1], 200.0)
    ax.set_title(f"LR map {lr.shape[1]}x{lr.shape[0]} px, {truth['lr_pixel_size_um']:g} µm/px "
                 f"(HR regions outlined)")

    reg = truth["regions"][0]
    r0, c0, r1, c1 = reg["lr_box"]
    ax = axes[1]
    ax.imshow(lr[r0:r1, c0:c1], cmap="gray", vmin=0, vmax=255, interpolation="nearest",
              extent=(c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5))
    m = np.array(reg["hr_to_lr"])
    rows, cols = reg["shape"]
    c = np.array([[-0.5, -0.5, 1], [cols - 0.5, -0.5, 1], [cols - 0.5, rows - 0.5, 1],
                  [-0.5, rows - 0.5, 1], [-0.5, -0.5, 1]]) @ m.T
    ax.plot(c[:, 0], c[:, 1], color="yellow", lw=1)
    ax.set_title(f"LR crop under HR_1 ({r1 - r0}x{c1 - c0} LR px)")

    ax = axes[2]
    ax.imshow(hr, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    _scalebar(ax, reg["pixel_size_um"], hr.shape[1], 20.0)
    ax.set_title(f"HR_1 {cols}x{rows} px, {reg['pixel_size_um']:g} µm/px "
                 f"(ratio {truth['ratio']:g}, rotation {reg['rotation_deg']:.2f}°)")
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("dleem synth: procedural sandstone, simulated BSE acquisition "
                 f"(seed {args.seed}; quartz mid grey, K-feldspar brighter, heavy minerals "
                 "bright, clay dark grey, pores black)", fontsize=12)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
