"""Registration QC figures a person checks at a glance (matplotlib, Agg, PNG).

- ``overview.png``: the LR image (reduced for display) with each HR region's outline (the
  mapped HR boundary, rotated as it is), its label, and the training-pair crop.
- ``HR_i.png`` per region: a checkerboard of the LR crop (bicubic-upsampled) against the
  registered HR target (in the LR grey scale), a zoom of it at full resolution where a
  misregistration shows as broken edges, a colour overlay (LR magenta, HR degraded to
  LR green: grey where they agree), the registration's local residual map and its local
  mean. Structure in the local mean means the distortion is not affine (scan
  non-linearity, drift), which a single affine map cannot follow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from dleem.imaging import bicubic_upsample, degrade
from dleem.plotting import format_um, nice_length, save_png
from dleem.registration.transform import AffineMap
from dleem.workspace import PairsManifest, RegistrationRecord, Workspace

DISPLAY_MAX_PX = 1400


def _figure(width_in: float, height_in: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")


def display_range(image: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    """Grey-level limits for display: robust percentiles, never a zero-width range."""
    finite = np.asarray(image, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    vmin, vmax = np.percentile(finite, [lo, hi])
    if vmax <= vmin:
        vmax = vmin + 1.0
    return float(vmin), float(vmax)


def reduce_for_display(image: np.ndarray, max_px: int = DISPLAY_MAX_PX) -> tuple[np.ndarray, float]:
    """Area-average an image down to at most `max_px` on its longer side; returns the factor."""
    h, w = image.shape
    factor = max(h, w) / max_px
    img = np.asarray(image, dtype=np.float32)
    if factor <= 1.0:
        return img, 1.0
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), factor


def add_scale_bar(ax: Any, pixel_size_um: float | None, width_px: float, *, color: str = "white") -> None:
    """A scale bar in the lower left, in data units of pixels of size `pixel_size_um`."""
    if not pixel_size_um:
        return
    from matplotlib.patches import Rectangle

    length_um = nice_length(0.2 * width_px * pixel_size_um)
    if length_um <= 0:
        return
    length_px = length_um / pixel_size_um
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()  # image axes: y0 is the bottom (larger row)
    span_x, span_y = x1 - x0, y0 - y1
    bx = x0 + 0.04 * span_x
    by = y0 - 0.06 * span_y
    ax.add_patch(Rectangle((bx, by), length_px, 0.012 * span_y, color=color, ec="black", lw=0.5))
    label = format_um(length_um)
    ax.text(bx + length_px / 2, by - 0.015 * span_y, label, color=color, ha="center", va="bottom",
            fontsize=9, fontweight="bold")


def checkerboard(a: np.ndarray, b: np.ndarray, square: int) -> np.ndarray:
    """Alternate squares of `a` and `b` (same shape), `a` in the top-left square."""
    rows = (np.arange(a.shape[0]) // square)[:, None]
    cols = (np.arange(a.shape[1]) // square)[None, :]
    return np.where((rows + cols) % 2 == 0, a, b)


def busiest_window(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (row, col) of the `size` x `size` window with the most edge contrast.

    A checkerboard zoom on a featureless grain interior shows nothing; edges crossing the
    squares are what reveal a misregistration.
    """
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    if h <= size or w <= size:
        return max(0, (h - size) // 2), max(0, (w - size) // 2)
    grad = np.hypot(ndimage.sobel(img, 0), ndimage.sobel(img, 1))
    energy = ndimage.uniform_filter(grad, size, mode="constant")
    half = size // 2
    inner = energy[half : h - size + half + 1, half : w - size + half + 1]
    r, c = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(r), int(c)


def _box_outline(ax: Any, box: Sequence[int], **kwargs: Any) -> None:
    from matplotlib.patches import Rectangle

    r0, c0, r1, c1 = box
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, **kwargs))


def overview_figure(
    lr: np.ndarray,
    regions: Sequence[dict],
    path: str | PathLike[str],
    *,
    pixel_size_um: float | None = None,
    title: str = "",
) -> Path:
    """The LR image with each HR region's mapped outline, label and training-pair crop.

    `regions`: dicts with "label", "hr_to_lr" (`AffineMap` or None), "hr_shape", optional
    "pair_box" (row0, col0, row1, col1) and "status".
    """
    from matplotlib.patches import Polygon

    shown, factor = reduce_for_display(lr)
    h, w = lr.shape
    aspect = h / w
    fig = _figure(9.0, 9.0 * aspect + 0.8)
    ax = fig.add_subplot()
    vmin, vmax = display_range(shown)
    ax.imshow(shown, cmap="gray", vmin=vmin, vmax=vmax, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
              interpolation="antialiased")
    colors = ["#ffcc00", "#00e5ff", "#ff4fd8", "#7CFC00", "#ff8c1a", "#b39dff"]
    skipped = []
    for i, region in enumerate(regions):
        color = colors[i % len(colors)]
        if region.get("hr_to_lr") is None:
            skipped.append(f"{region['label']}: {region.get('status', 'skipped')}")
            continue
        hr_to_lr: AffineMap = region["hr_to_lr"]
        outline = hr_to_lr.corners(tuple(region["hr_shape"]))
        ax.add_patch(Polygon(outline, closed=True, fill=False, ec=color, lw=1.8))
        # the HR image's first row, drawn thicker: the orientation is visible
        ax.plot(outline[:2, 0], outline[:2, 1], color=color, lw=3.5)
        if region.get("pair_box") is not None:
            _box_outline(ax, region["pair_box"], ec=color, lw=1.0, ls="--")
        cx, cy = outline[:, 0].mean(), outline[:, 1].mean()
        ax.text(cx, outline[:, 1].min() - 0.01 * h, region["label"], color=color, ha="center",
                va="bottom", fontsize=11, fontweight="bold",
                bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.5, "lw": 0})
        del cy
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xlabel("LR column (px)")
    ax.set_ylabel("LR row (px)")
    add_scale_bar(ax, pixel_size_um, w)
    note = "solid: HR outline (thick edge = HR first row); dashed: training-pair crop"
    if skipped:
        note += "\nnot placed: " + "; ".join(skipped)
    ax.set_title((title + "\n" if title else "") + note, fontsize=9)
    path = save_png(fig, path)
    return path


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested uncertainty dicts as one level ("param_std.tx")."""
    out: dict = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float, np.floating, np.integer)):
        return format(float(value), spec)
    return str(value)


def region_figure(
    lr_crop: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None,
    scale: int,
    path: str | PathLike[str],
    *,
    label: str = "",
    entry: dict | None = None,
    residual_map: np.ndarray | None = None,
    residual_box: Sequence[int] | None = None,
    pair_box: Sequence[int] | None = None,
    pixel_size_um: float | None = None,
    blur_sigma_lr_px: float | None = None,
) -> Path:
    """Checkerboard, zoom, colour overlay and residual maps of one registered region.

    Parameters
    ----------
    lr_crop : the raw LR crop of the training pair.
    target : the HR target on the fine grid (LR grey scale), ``scale`` x the crop shape.
    mask : validity of the target (fine grid), or None.
    scale : fine pixels per LR pixel.
    entry : the region's registration.json entry as a dict (numbers printed on the figure).
    residual_map : the registration's residual (LR grey levels) on its LR crop grid,
        whose box in the LR image is `residual_box`; `pair_box` is the pair's LR crop.
    pixel_size_um : LR pixel size (µm) for the scale bars.
    """
    entry = entry or {}
    lr = np.asarray(lr_crop, dtype=np.float32)
    up = bicubic_upsample(lr, scale)
    tgt = np.asarray(target, dtype=np.float32)
    if mask is not None:
        tgt = np.where(mask > 0, tgt, np.nan)
    vmin, vmax = display_range(lr)
    h, w = lr.shape

    fig = _figure(16.0, 10.5)
    axes = fig.subplots(2, 3)
    fine_px = None if not pixel_size_um else pixel_size_um / scale

    # (a) checkerboard over the whole crop
    square = max(scale, (min(h, w) // 6) * scale)
    board = checkerboard(up, np.nan_to_num(tgt, nan=vmin), square)
    ax = axes[0, 0]
    ax.imshow(board, cmap="gray", vmin=vmin, vmax=vmax, interpolation="antialiased")
    ax.set_title("checkerboard: LR crop (bicubic) | HR target\n(top-left square is LR)", fontsize=10)
    add_scale_bar(ax, fine_px, board.shape[1])

    # (b) zoom at full resolution: edges must run on across the squares
    zoom_lr = max(8, min(40, h, w))
    zr0, zc0 = busiest_window(lr, zoom_lr)
    zr, zc = zr0 * scale, zc0 * scale
    zs = zoom_lr * scale
    zsquare = max(scale, (zoom_lr // 4) * scale)
    zboard = checkerboard(up[zr:zr + zs, zc:zc + zs], np.nan_to_num(tgt, nan=vmin)[zr:zr + zs, zc:zc + zs], zsquare)
    ax = axes[0, 1]
    ax.imshow(zboard, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(f"zoom: {zoom_lr} x {zoom_lr} LR px with most edges, squares of {zoom_lr // 4} LR px\n"
                 "edges run on across squares when registered", fontsize=10)
    add_scale_bar(ax, fine_px, zs)
    axes[0, 0].add_patch(_square_patch(zc, zr, zs))

    # (c) colour overlay: LR in magenta, HR degraded to LR in green
    degraded = degrade(np.nan_to_num(tgt, nan=float(np.nanmean(tgt))), scale, blur_sigma_lr_px or 0.0)
    a = np.clip((lr - vmin) / (vmax - vmin), 0, 1)
    b = np.clip((degraded - vmin) / (vmax - vmin), 0, 1)
    rgb = np.stack([a, b, a], axis=-1)
    ax = axes[0, 2]
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title("overlay: LR magenta, HR degraded to LR green\n(grey where they agree)", fontsize=10)
    add_scale_bar(ax, pixel_size_um, w)

    # (d) residual map of the registration (LR grid) and (e) its local mean
    if residual_map is None:
        residual_map = lr - degraded
        residual_box = pair_box
        source = "LR - degraded HR (pair crop)"
    else:
        source = "registration residual"
    res = np.asarray(residual_map, dtype=np.float64)
    if residual_box is None:
        residual_box = (0, 0, res.shape[0], res.shape[1])
    rb = residual_box
    extent = (rb[1] - 0.5, rb[1] + res.shape[1] - 0.5, rb[0] + res.shape[0] - 0.5, rb[0] - 0.5)
    lim = float(np.nanpercentile(np.abs(res), 99)) or 1.0
    ax = axes[1, 0]
    im = ax.imshow(res, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=extent, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.85, label="LR grey levels")
    ax.set_title(f"local residual: {source}", fontsize=10)
    if pair_box is not None:
        _box_outline(ax, pair_box, ec="black", lw=1.0, ls="--")
    ax.set_xlabel("LR column (px)")
    ax.set_ylabel("LR row (px)")

    sigma = max(2.0, min(res.shape) / 24)
    finite = np.isfinite(res)
    num = ndimage.gaussian_filter(np.where(finite, res, 0.0), sigma)
    den = ndimage.gaussian_filter(finite.astype(np.float64), sigma)
    local = np.where(den > 0.2, num / np.maximum(den, 1e-9), np.nan)
    llim = float(np.nanpercentile(np.abs(local), 99)) if np.isfinite(local).any() else 1.0
    llim = max(llim, lim / 10)
    ax = axes[1, 1]
    im = ax.imshow(local, cmap="RdBu_r", vmin=-llim, vmax=llim, extent=extent, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.85, label="LR grey levels")
    ax.set_title(f"local mean of the residual (Gaussian σ = {sigma:.1f} LR px)\n"
                 "structure here = distortion that is not affine", fontsize=10)
    if pair_box is not None:
        _box_outline(ax, pair_box, ec="black", lw=1.0, ls="--")
    ax.set_xlabel("LR column (px)")

    # (f) the numbers
    ax = axes[1, 2]
    ax.axis("off")
    unc = entry.get("uncertainty") or {}
    lines = [
        f"{label}  {Path(str(entry.get('file', ''))).name}",
        f"status            {entry.get('status', 'ok')}",
        f"NCC peak          {_fmt(entry.get('ncc_peak'))}",
        f"NCC distinctness  {_fmt(entry.get('ncc_distinctness'))}",
        f"residual          {_fmt(entry.get('residual'))}",
        f"iterations        {_fmt(entry.get('iterations'), '.0f')}",
        f"ratio             {_fmt(entry.get('ratio'), '.5g')}",
        f"rotation (deg)    {_fmt(entry.get('rotation_deg'), '.4g')}",
        f"LR blur σ (px)    {_fmt(entry.get('blur_sigma_lr_px'), '.3g')}",
        f"gain / offset     {_fmt(entry.get('gain'))} / {_fmt(entry.get('offset'))}",
        f"pair crop (LR)    {list(pair_box) if pair_box is not None else 'n/a'}",
        f"scale k           {scale}   target {tgt.shape[0]} x {tgt.shape[1]}",
    ]
    if unc:
        lines.append("uncertainty:")
    for key, value in list(_flatten(unc).items())[:8]:
        lines.append(f"  {key:<20} {_fmt(value, '.3g')}")
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=10,
            transform=ax.transAxes)
    for ax in axes.ravel()[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{label}: registration QC", fontsize=13, fontweight="bold")
    return save_png(fig, path)


def _square_patch(x: int, y: int, size: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), size, size, fill=False, ec="#ffcc00", lw=1.2)


def write_qc_figures(
    workspace: Workspace,
    lr: np.ndarray,
    registration: RegistrationRecord,
    registered: Sequence[tuple[int, Any]],
    manifest: PairsManifest | None,
    *,
    progress: Callable[[], None] | None = None,
) -> list[Path]:
    """Write ``qc/overview.png`` and one ``qc/HR_i.png`` per registered region.

    `registered`: (input index, registration result) per placed region; the pair crops are
    read back from the workspace's pairs folder (as written, so the figure shows them).
    """
    from dleem.io import read_image

    qc_dir = workspace.qc_dir
    pair_by_id = {r.id: r for r in (manifest.regions if manifest else [])}
    results = dict(registered)
    overview = []
    for index, entry in enumerate(registration.regions):
        label = f"HR_{index + 1}"
        pair = pair_by_id.get(label)
        overview.append({
            "label": label, "hr_to_lr": entry.hr_to_lr, "hr_shape": entry.hr_shape,
            "status": entry.status, "pair_box": pair.lr_box if pair else None,
        })
    paths = [overview_figure(lr, overview, qc_dir / "overview.png",
                             pixel_size_um=registration.lr_pixel_size_um,
                             title=Path(registration.lr_file).name)]
    if progress:
        progress()
    keep = {f"HR_{index + 1}.png" for index in results}
    for stale in qc_dir.glob("HR_*.png"):  # figures of an earlier run into this workspace
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    for index, result in results.items():
        label = f"HR_{index + 1}"
        pair = pair_by_id.get(label)
        if pair is None or manifest is None:
            continue
        entry = registration.regions[index]
        paths.append(region_figure(
            np.asarray(read_image(workspace.pair_file(pair.lr)).data),
            np.asarray(read_image(workspace.pair_file(pair.hr)).data),
            np.asarray(read_image(workspace.pair_file(pair.mask)).data), manifest.scale,
            qc_dir / f"{label}.png", label=label, entry=entry.to_dict(),
            residual_map=result.residual_map, residual_box=result.lr_box, pair_box=pair.lr_box,
            pixel_size_um=registration.lr_pixel_size_um, blur_sigma_lr_px=entry.blur_sigma_lr_px,
        ))
        if progress:
            progress()
    return paths
