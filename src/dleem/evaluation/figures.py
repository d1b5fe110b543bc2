"""Figures of the report (matplotlib, Agg): every image gets a scale bar in µm.

Display convention: all panels of one tile share one grey window (the 0.5 and 99.5
percentiles of its HR tile), so a brighter or darker SR is seen as such; LR is drawn with
nearest-neighbour pixels over the same physical extent as the fine-grid panels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from dleem.plotting import format_um, nice_length, save_png  # noqa: E402

DPI = 100
REF_COLOR = "black"
BICUBIC_COLOR = "#d95f02"
TRUTH_COLOR = "#7570b3"
MODEL_COLORS = ("#1b9e77", "#1f78b4", "#e7298a", "#66a61e", "#a6761d", "#e6ab02")


def method_color(name: str, models: Sequence[str]) -> str:
    """One colour per method, the same in every figure."""
    if name == "HR":
        return REF_COLOR
    if name == "bicubic":
        return BICUBIC_COLOR
    if name == "truth":
        return TRUTH_COLOR
    return MODEL_COLORS[list(models).index(name) % len(MODEL_COLORS)] if name in models else "grey"


def add_scale_bar(ax, width_um: float, *, fraction: float = 0.25, color: str = "white") -> None:
    """A scale bar in the lower-left corner of an image axis whose x extent is in µm."""
    length = nice_length(width_um * fraction)
    if length <= 0:
        return
    x0, y_img = ax.get_xlim(), ax.get_ylim()
    height = abs(y_img[0] - y_img[1])
    left = min(x0) + 0.05 * width_um
    bottom = max(y_img) - 0.07 * height
    outline = [patheffects.withStroke(linewidth=3, foreground="black")]
    ax.plot([left, left + length], [bottom, bottom], color=color, linewidth=3,
            solid_capstyle="butt", path_effects=outline)
    ax.text(left + length / 2, bottom - 0.03 * height, format_um(length), color=color,
            ha="center", va="bottom", fontsize=9, fontweight="bold", path_effects=outline)


def _extent(shape: tuple[int, ...], px_um: float) -> list[float]:
    return [0, shape[1] * px_um, shape[0] * px_um, 0]


def image_panel(ax, img: np.ndarray, px_um: float, title: str, vmin: float, vmax: float,
                *, cmap: str = "gray") -> None:
    """One image with its physical extent, a title and a scale bar."""
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
              extent=_extent(img.shape, px_um))
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    add_scale_bar(ax, img.shape[1] * px_um)


def gallery_figure(path: Path, tile: dict, order: Sequence[str], fine_px_um: float,
                   lr_px_um: float, titles: dict[str, str]) -> Path:
    """LR | bicubic | SR ... | HR (| truth) of one tile at the same physical scale."""
    hr = tile["HR"]
    vmin, vmax = np.percentile(hr, [0.5, 99.5])
    n = len(order)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), dpi=DPI, squeeze=False)
    for ax, name in zip(axes[0], order, strict=True):
        px = lr_px_um if name == "LR" else fine_px_um
        image_panel(ax, tile[name], px, titles.get(name, name), vmin, vmax)
    fig.tight_layout(pad=0.4)
    return _save(fig, path)


def pores_figure(path: Path, tile: dict, order: Sequence[str], threshold: float, px_um: float,
                 pores_dark: bool, titles: dict[str, str]) -> Path:
    """Pore masks (blue) over the grey image, one panel per method, same tile."""
    hr = tile["HR"]
    vmin, vmax = np.percentile(hr, [0.5, 99.5])
    overlay = ListedColormap([(0, 0, 0, 0), (0.1, 0.45, 1.0, 0.6)])
    n = len(order)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), dpi=DPI, squeeze=False)
    for ax, name in zip(axes[0], order, strict=True):
        img = tile[name]
        mask = img <= threshold if pores_dark else img > threshold
        image_panel(ax, img, px_um, f"{titles.get(name, name)}: {100 * mask.mean():.1f} %",
                    vmin, vmax)
        ax.imshow(mask.astype(float), cmap=overlay, vmin=0, vmax=1, interpolation="nearest",
                  extent=_extent(img.shape, px_um))
        add_scale_bar(ax, img.shape[1] * px_um)
    fig.tight_layout(pad=0.4)
    return _save(fig, path)


REGION_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                 "#da8bc3", "#8c8c8c")


def region_colors(regions: Sequence[str]) -> dict[str, str]:
    """One colour per region, the same in every histogram."""
    return {r: REGION_COLORS[i % len(REGION_COLORS)] for i, r in enumerate(regions)}


def area_bins(areas_px: np.ndarray, n: int = 24) -> np.ndarray:
    """Histogram edges at half-integer areas, about log-spaced: every bin holds at least one
    possible (integer) pore area, so discrete areas leave no comb of empty bins."""
    a = np.asarray(areas_px, dtype=np.float64)
    lo, hi = (max(1.0, float(a.min())), float(a.max())) if a.size else (1.0, 2.0)
    edges = np.unique(np.round(np.geomspace(lo, max(hi, lo + 1) + 1, n)))
    return np.append(edges, edges[-1] + 1) - 0.5


def region_histogram_figure(path: Path, values: dict[str, dict[str, np.ndarray]],
                            colors: dict[str, str], xlabel: str, titles: dict[str, str],
                            *, bins: np.ndarray | None = None, log_x: bool = False) -> Path:
    """One panel per method; each a histogram stacked by region, with each region's median
    (dashed) in its colour. ``values``: method -> region -> values."""
    names = list(values)
    finite = np.concatenate([np.asarray(v, np.float64) for per in values.values()
                             for v in per.values()] or [np.zeros(0)])
    finite = finite[np.isfinite(finite)]
    if bins is None:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), dpi=DPI,
                             squeeze=False, sharex=True, sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        per = values[name]
        data = [np.asarray([x for x in np.asarray(v, np.float64) if np.isfinite(x)])
                for v in per.values()]
        labels = [f"{r} (n={d.size}, median {np.median(d):.3g})" if d.size else f"{r} (n=0)"
                  for r, d in zip(per, data, strict=True)]
        ax.hist(data, bins=bins, stacked=True, color=[colors[r] for r in per], label=labels)
        for r, d in zip(per, data, strict=True):
            if d.size:
                ax.axvline(float(np.median(d)), color=colors[r], linestyle="--", linewidth=1.2)
        ax.set_title(titles.get(name, name), fontsize=10)
        ax.set_xlabel(xlabel)
        if log_x:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel("count")
    fig.tight_layout()
    return _save(fig, path)


def recall_figure(path: Path, classes: dict[str, list[dict]], precision: dict[str, float | None],
                  colors: dict[str, str], titles: dict[str, str], reference: str) -> Path:
    """Pore recall per size class (equivalent diameter in LR px) for each method, and each
    method's precision, on one page."""
    fig, (ax_r, ax_p) = plt.subplots(1, 2, figsize=(10.0, 3.6), dpi=DPI,
                                     gridspec_kw={"width_ratios": [3, 1]})
    first = next(iter(classes.values()))
    labels = [f"{c['min_lr_px']:g}–{c['max_lr_px']:g}" if c["max_lr_px"] is not None
              else f"≥ {c['min_lr_px']:g}" for c in first]
    x = np.arange(len(labels))
    for name, cl in classes.items():
        y = [np.nan if c["recall"] is None else c["recall"] for c in cl]
        ax_r.plot(x, y, marker="o", color=colors[name], label=titles.get(name, name))
    for xi, c in zip(x, first, strict=True):
        ax_r.annotate(f"n={c['n']}", (xi, 0.02), ha="center", fontsize=7, color="grey")
    ax_r.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    ax_r.set_xticks(x, labels)
    ax_r.set_ylim(0, 1.05)
    ax_r.set_xlabel("equivalent diameter of the reference pore (LR px)")
    ax_r.set_ylabel(f"recall of {reference} pores")
    ax_r.legend(fontsize=8, frameon=False, loc="lower right")
    names = list(precision)
    ax_p.bar(range(len(names)), [np.nan if precision[n] is None else precision[n] for n in names],
             color=[colors[n] for n in names])
    ax_p.set_xticks(range(len(names)), [titles.get(n, n) for n in names], rotation=20,
                    fontsize=8)
    ax_p.set_ylim(0, 1.05)
    ax_p.set_ylabel("precision")
    for ax in (ax_r, ax_p):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def psd_figure(path: Path, diameters: dict[str, np.ndarray], thickness: dict[str, np.ndarray],
               s2: dict[str, np.ndarray], colors: dict[str, str], px_um: float,
               titles: dict[str, str]) -> Path:
    """Cumulative pore-size distributions overlaid: equivalent diameter, local thickness, and
    S2(r). (The histograms, by region, are `region_histogram_figure`.)"""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(15.0, 3.9), dpi=DPI)
    ax_c, ax_t, ax_s = axes

    def style(name: str) -> dict:
        return {"color": colors[name], "linewidth": 1.8,
                "linestyle": ":" if name == "truth" else "-"}

    for name, d in diameters.items():
        if d.size:
            xs = np.sort(d)
            ax_c.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post",
                      label=f"{titles.get(name, name)} (n={d.size})", **style(name))
    ax_c.set_xlabel("equivalent diameter (µm)")
    ax_c.set_ylabel("fraction of pores ≤ diameter")
    ax_c.set_title("cumulative pore-size distribution", fontsize=10)
    for name, t in thickness.items():
        if t.size:
            xs = np.sort(t)  # every value is one pore pixel: the curve is area-weighted
            ax_t.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post",
                      label=titles.get(name, name), **style(name))
    ax_t.set_xlabel("local thickness (µm)")
    ax_t.set_ylabel("fraction of pore area ≤ thickness")
    ax_t.set_title("pore-size function (local thickness, edge pores left out)", fontsize=10)
    for ax in (ax_c, ax_t):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    for name, curve in s2.items():
        if curve.size:
            ax_s.plot(np.arange(curve.size) * px_um, curve, label=titles.get(name, name),
                      **style(name))
    ax_s.set_xlabel("distance r (µm)")
    ax_s.set_ylabel("S2(r)")
    ax_s.set_title("two-point correlation of the pore phase", fontsize=10)
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, framealpha=0.85, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def map_figure(path: Path, img: np.ndarray, px_um: float, title: str, *, cmap: str = "gray",
               label: str | None = None, boxes: Sequence[tuple[Sequence[int], str, str]] = (),
               outlines: Sequence[tuple[np.ndarray, str, str]] = (),
               max_side: int = 1200, symmetric: bool = False) -> Path:
    """A whole-area image (LR overview, consistency map) with optional boxes and a colour bar.

    ``boxes`` are (row0, col0, row1, col1) in pixels of ``img`` with a colour and a label;
    ``outlines`` are (N, 2) arrays of (x, y) pixel coordinates.
    """
    step = max(1, int(math.ceil(max(img.shape) / max_side)))
    view = np.asarray(img[::step, ::step], dtype=np.float64)
    finite = view[np.isfinite(view)]
    if symmetric:
        lim = float(np.percentile(np.abs(finite), 99.5)) if finite.size else 1.0
        vmin, vmax = -lim, lim
    else:
        vmin, vmax = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0, 1))
    h, w = img.shape[:2]
    aspect = h / w
    fig, ax = plt.subplots(figsize=(7.5, 7.5 * aspect + 0.6), dpi=DPI)
    im = ax.imshow(view, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                   extent=[0, w * px_um, h * px_um, 0])
    labelled = set()
    for box, color, text in boxes:
        r0, c0, r1, c1 = box
        thin = color == "white"
        ax.add_patch(plt.Rectangle((c0 * px_um, r0 * px_um), (c1 - c0) * px_um,
                                   (r1 - r0) * px_um, fill=False, edgecolor=color,
                                   linewidth=0.6 if thin else 1.6, alpha=0.6 if thin else 1.0,
                                   label=text if text not in labelled else None))
        labelled.add(text)
    for xy, color, text in outlines:
        closed = np.vstack([xy, xy[:1]]) * px_um
        ax.plot(closed[:, 0], closed[:, 1], color=color, linewidth=1.2,
                label=text if text not in labelled else None)
        labelled.add(text)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    add_scale_bar(ax, w * px_um, fraction=0.2)
    if labelled:
        ax.legend(fontsize=8, loc="upper right", framealpha=0.8)
    if label is not None:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label=label)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    try:
        return save_png(fig, path, dpi=DPI)
    finally:
        plt.close(fig)
