"""The training log (CSV) and its curves (PNG), both written atomically."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dleem.io.atomic import atomic_write
from dleem.plotting import save_png

LOG_COLUMNS = (
    "step", "elapsed_s", "phase", "lr", "loss_pixel", "loss_adv", "loss_d",
    "val_psnr_db", "val_ssim", "val_psnr_bicubic_db", "val_ssim_bicubic", "samples_per_s",
    "loss_consistency", "loss_pore",
)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_log(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write the whole log as CSV (one row per logged step; blank where not measured)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in LOG_COLUMNS])
    text = buf.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def plot_curves(path: Path, rows: Sequence[dict[str, Any]], title: str = "") -> Path:
    """Training loss and validation PSNR / SSIM (with the bicubic baseline) against step."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(float(r["step"]), float(r[key])) for r in rows
               if r.get(key) is not None and not (isinstance(r[key], float) and math.isnan(r[key]))]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    ax = axes[0]
    x, y = series("loss_pixel")
    ax.plot(x, y, lw=1, label="pixel loss (train)")
    x, y = series("loss_adv")
    if y:
        ax2 = ax.twinx()
        ax2.plot(x, y, lw=1, color="tab:red", alpha=0.7, label="adversarial (G)")
        ax2.set_ylabel("adversarial loss", color="tab:red")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("pixel loss (normalised units)")
    ax.legend(loc="upper right", fontsize=8)
    for ax, key, name in ((axes[1], "psnr", "PSNR (dB)"), (axes[2], "ssim", "SSIM")):
        x, y = series(f"val_{key}_db" if key == "psnr" else f"val_{key}")
        ax.plot(x, y, "o-", ms=3, label="model (EMA), validation")
        xb, yb = series(f"val_{key}_bicubic_db" if key == "psnr" else f"val_{key}_bicubic")
        if yb:
            ax.axhline(yb[-1], color="gray", ls="--", label="bicubic")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)

    try:
        save_png(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return path
