"""Consistency map: the SR output degraded back to the LR grid, minus the LR input.

The forward model of the LR acquisition is `dleem.imaging.degrade`: a Gaussian blur of
``lr_blur_sigma_px`` LR pixels (measured at registration, stored in the model config)
followed by integration over each LR pixel, i.e. on the fine grid a blur of
``k * sigma`` fine pixels and a ``k x k`` area mean. Where the SR image could have produced the measurement, the map is
zero up to noise; where the network drew structure that changes what the LR detector
would have seen, the map shows it. Structure that averages out inside an LR pixel is in
the null space of this test and is not flagged (see docs/upscaling.md).

The map is computed tile by tile from the finished SR level 0 with a margin of
``ceil(4 sigma) + 1`` LR pixels (`dleem.imaging.forward_margin_lr_px`), using scipy's ``reflect`` border both in the tile and
for the whole image, so the tiled map equals the whole-image map. References:
consistency/"data-consistency" checks as in Ulyanov et al., *Deep Image Prior* (2018),
and the degradation-consistency view of SR in Bahat & Michaeli, *Explorable
Super-Resolution*, CVPR 2020.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dleem.imaging import degrade, forward_margin_lr_px
from dleem.io.atomic import atomic_write
from dleem.plotting import save_png

TILE = 512
HIST_BINS = 512
PREVIEW_SIDE = 1024


def map_tile(sr: Any, lr: Any, box: tuple[int, int, int, int], scale: int, sigma: float) -> np.ndarray:
    """SR degraded minus LR (float32, LR grey levels) over LR box (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = box
    h, w = lr.shape
    m = forward_margin_lr_px(sigma)
    a0, a1, b0, b1 = max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)
    window = np.asarray(sr[scale * a0:scale * a1, scale * b0:scale * b1])
    low = degrade(window, scale, sigma)[y0 - a0:y1 - a0, x0 - b0:x1 - b0]
    return (low - np.asarray(lr[y0:y1, x0:x1], dtype=np.float32)).astype(np.float32)


def consistency_map(sr: Any, lr: Any, scale: int, sigma_lr_px: float) -> np.ndarray:
    """Whole map in memory (small images, tests): ``degrade(sr) - lr``, float32."""
    return (degrade(np.asarray(sr), scale, sigma_lr_px) - np.asarray(lr, dtype=np.float32)).astype(np.float32)


@dataclass
class Summary:
    """Streaming statistics of the map: moments, a histogram and a preview image."""

    hist_range: float
    shape: tuple[int, int]
    factor: int
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    preview: np.ndarray | None = None
    noise_var_total: float = 0.0  # sum of the LR noise variance at degrade(SR), when a noise model is given

    def __post_init__(self) -> None:
        ph, pw = -(-self.shape[0] // self.factor), -(-self.shape[1] // self.factor)
        self.preview = np.zeros((ph, pw), np.float32)

    def add(self, box: tuple[int, int, int, int], d: np.ndarray) -> None:
        d64 = d.astype(np.float64)
        self.n += d.size
        self.total += float(d64.sum())
        self.total_sq += float((d64 * d64).sum())
        self.lo, self.hi = min(self.lo, float(d.min())), max(self.hi, float(d.max()))
        r = self.hist_range
        self.hist += np.histogram(np.clip(d, -r, r), bins=HIST_BINS, range=(-r, r))[0]
        f = self.factor
        y0, _, x0, _ = box
        ph, pw = -(-d.shape[0] // f), -(-d.shape[1] // f)
        pad = np.pad(d, ((0, ph * f - d.shape[0]), (0, pw * f - d.shape[1])), mode="edge")
        blocks = pad.reshape(ph, f, pw, f).transpose(0, 2, 1, 3).reshape(ph, pw, f * f)
        pick = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2)[..., 0]
        self.preview[y0 // f:y0 // f + ph, x0 // f:x0 // f + pw] = pick  # type: ignore[index]

    def percentile_abs(self, q: float) -> float:
        """|d| percentile from the histogram (bin resolution 2 * range / bins)."""
        edges = np.linspace(-self.hist_range, self.hist_range, HIST_BINS + 1)
        centres = np.abs(0.5 * (edges[1:] + edges[:-1]))
        order = np.argsort(centres)
        c = np.cumsum(self.hist[order])
        idx = min(int(np.searchsorted(c, q / 100.0 * c[-1])), len(order) - 1)
        return float(centres[order][idx])

    def as_dict(self) -> dict[str, float]:
        mean = self.total / max(self.n, 1)
        rms = math.sqrt(self.total_sq / max(self.n, 1))
        out = {"mean": mean, "rms": rms, "min": self.lo, "max": self.hi,
               "p50_abs": self.percentile_abs(50), "p99_abs": self.percentile_abs(99)}
        if self.noise_var_total > 0:  # the LR noise sigma: a faithful SR gives rms / sigma near 1
            sigma = math.sqrt(self.noise_var_total / max(self.n, 1))
            out.update(noise_sigma_gl=sigma, rms_in_sigma=rms / sigma)
        return out


def tiles(shape: tuple[int, int], tile: int = TILE) -> Iterator[tuple[int, int, int, int]]:
    h, w = shape
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            yield y0, min(y0 + tile, h), x0, min(x0 + tile, w)


def write_consistency(
    path: Path, sr: Any, lr: Any, *, scale: int, sigma_lr_px: float, dtype_max: float,
    lr_pixel_size_um: float | None, png_path: Path | None = None, tile: int = TILE, noise: Any = None,
) -> dict[str, Any]:
    """Stream the map into a float32 OME-TIFF at ``path`` (atomic) and draw the summary PNG.

    The TIFF follows `dleem.io.write`'s layout rule: strips up to `STRIP_MAX_PIXELS` (ImageJ
    opens it without Bio-Formats), tiles above, the LR pixel size as OME ``PhysicalSizeX/Y``
    and as resolution tags in cm. Returns the summary statistics (LR grey levels) and the
    files written; with ``noise`` (a `dleem.trust.noise.NoiseModel`) also the LR noise
    sigma at the signal degrade(SR) (``noise_sigma_gl``) and the RMS in its units.
    """

    import tifffile

    from dleem.io.write import needs_bigtiff, ome_pixel_size, resolution_options, tiff_layout

    h, w = lr.shape
    factor = 1
    while max(h, w) / factor > PREVIEW_SIDE and factor < tile:
        factor *= 2
    summary = Summary(hist_range=0.25 * dtype_max, shape=(h, w), factor=factor)

    layout = tiff_layout((h, w), np.float32)

    def add(box: tuple[int, int, int, int], d: np.ndarray) -> None:
        summary.add(box, d)
        if noise is not None:
            y0, y1, x0, x1 = box
            signal = d + np.asarray(lr[y0:y1, x0:x1], dtype=np.float32)
            summary.noise_var_total += float(noise.variance(signal).sum(dtype=np.float64))

    def tiled() -> Iterator[np.ndarray]:
        for box in tiles((h, w), tile):
            d = map_tile(sr, lr, box, scale, sigma_lr_px)
            add(box, d)
            yield d

    def strips() -> Iterator[np.ndarray]:
        rows = layout["rowsperstrip"]
        band_rows = max(rows, tile // rows * rows)  # a band of whole strips, about one tile high
        for r0 in range(0, h, band_rows):
            r1 = min(r0 + band_rows, h)
            band = np.empty((r1 - r0, w), np.float32)
            for c0 in range(0, w, tile):  # tile by tile: memory of one band + one window
                box = (r0, r1, c0, min(c0 + tile, w))
                d = map_tile(sr, lr, box, scale, sigma_lr_px)
                add(box, d)
                band[:, box[2]:box[3]] = d
            for s0 in range(0, r1 - r0, rows):
                yield band[s0:s0 + rows]

    metadata: dict[str, Any] = {"axes": "YX", **ome_pixel_size(lr_pixel_size_um), "Description":
                                "dleem consistency map: degrade(SR) - LR in LR grey levels"}

    def write(tmp: str) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=needs_bigtiff([(h, w)], np.float32), ome=True) as tw:
            if "tile" in layout:
                tw.write(tiled(), shape=(h, w), dtype=np.float32, tile=(tile, tile), metadata=metadata,
                         photometric="minisblack", **resolution_options(lr_pixel_size_um))
            else:
                tw.write(strips(), shape=(h, w), dtype=np.float32, metadata=metadata,
                         photometric="minisblack", **layout, **resolution_options(lr_pixel_size_um))

    atomic_write(path, write)
    stats = summary.as_dict()
    png = png_path or path.with_name(path.name.split(".")[0] + "_summary.png")
    draw_summary(png, summary, stats, sigma_lr_px=sigma_lr_px, scale=scale, dtype_max=dtype_max)
    return {"map": str(path), "summary_png": str(png), **stats}


def draw_summary(path: Path, summary: Summary, stats: dict[str, float], *, sigma_lr_px: float,
                 scale: int, dtype_max: float) -> None:
    """Map preview (largest |d| per block) + histogram + the numbers, as one PNG (atomic)."""

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    preview = summary.preview
    lim = max(stats["p99_abs"] * 2, 1e-6 * dtype_max)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    im = ax0.imshow(preview, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax0.set_title(f"degrade(SR) - LR (max |d| per {summary.factor}x{summary.factor} LR px)", fontsize=9)
    ax0.set_xticks([])
    ax0.set_yticks([])
    fig.colorbar(im, ax=ax0, fraction=0.046, label="LR grey levels")
    r = summary.hist_range
    edges = np.linspace(-r, r, HIST_BINS + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    counts = np.where(summary.hist > 0, summary.hist, np.nan)
    ax1.step(centres, counts, where="mid", lw=1)
    ax1.set_yscale("log")
    span = min(r, max(abs(stats["min"]), abs(stats["max"]), lim) * 1.1)
    ax1.set_xlim(-span, span)
    ax1.axvline(0, color="0.6", lw=0.8)
    ax1.set_xlabel("degrade(SR) - LR [LR grey levels]")
    ax1.set_ylabel("LR pixels")
    text = (f"mean {stats['mean']:.3g}   RMS {stats['rms']:.3g}   min {stats['min']:.3g}   "
            f"max {stats['max']:.3g}\n"
            f"median |d| {stats['p50_abs']:.3g}   99% |d| {stats['p99_abs']:.3g}   "
            f"(blur σ {sigma_lr_px:g} LR px, x{scale})")
    if "noise_sigma_gl" in stats:
        text += f"\nLR noise σ {stats['noise_sigma_gl']:.3g} grey levels: RMS = {stats['rms_in_sigma']:.2f} σ"
    ax1.set_title(text, fontsize=8, loc="left", family="monospace")
    fig.tight_layout()
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)
