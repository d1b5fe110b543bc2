"""Figure for docs/upscaling.md: what the consistency map shows, on the synthetic sandstone.

The exact specimen is rendered on a grid 4x finer than the LR grid (`dleem.synth`), the
LR measurement is made from it with the same forward model the map uses (Gaussian blur
of ``lr_blur_sigma_px`` LR px, k x k integration, 8-bit rounding), and three "SR" images
are checked against it: the truth itself, the truth with invented particles, and the
truth with an invented texture that averages out inside each LR pixel (the null space of
the test). Writes docs/upscale_consistency.png.

Run: ``python docs/make_upscale_figure.py`` (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dleem.imaging import degrade  # noqa: E402
from dleem.synth import generate, render_truth  # noqa: E402
from dleem.upscale.consistency import consistency_map  # noqa: E402

K, SIGMA, SIDE = 4, 0.8, 96
OUT = Path(__file__).resolve().parent / "upscale_consistency.png"


def main() -> None:
    synth = generate(None, seed=3, lr_size=256, hr_size=128, regions=1)
    truth = render_truth(synth.truth, (80, 80, 80 + SIDE, 80 + SIDE), K, blur="none")
    lr = np.clip(np.rint(degrade(truth, K, SIGMA)), 0, 255).astype(np.uint8)

    particles = truth.copy()
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
    for cy, cx, r in ((90, 110, 7), (250, 300, 5), (300, 90, 9)):
        particles[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 250.0
    texture = truth.copy()
    checker = np.where((yy // 2 + xx // 2) % 2 == 0, 60.0, -60.0).astype(np.float32)
    texture[200:330, 200:330] += checker[200:330, 200:330]  # zero mean in every 4x4 block

    cases = [("SR = the truth", truth), ("SR + invented particles", particles),
             ("SR + invented fine texture", texture)]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for col, (name, sr) in enumerate(cases):
        d = consistency_map(sr, lr, K, SIGMA)
        axes[0, col].imshow(np.clip(sr, 0, 255), cmap="gray", vmin=0, vmax=255)
        axes[0, col].set_title(name, fontsize=10)
        im = axes[1, col].imshow(d, cmap="RdBu_r", vmin=-20, vmax=20)
        axes[1, col].set_title(f"degrade(SR) - LR: max |d| = {np.abs(d).max():.1f}", fontsize=10)
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, label="LR grey levels (8-bit)")
    fig.suptitle("Consistency map: particles the LR detector would have seen are flagged; "
                 "texture that averages out inside an LR pixel is not", fontsize=11)
    fig.savefig(OUT, dpi=80, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
