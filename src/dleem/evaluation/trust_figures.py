"""The report's trust section: the trust map over the LR overview, the least trusted blocks
(LR | SR), and the consistency in units of the LR noise.

Reads ``TRUST.tif`` + ``TRUST.json`` (`dleem.upscale.trust`) beside the upscaled map; the
report calls `trust_figures` while it builds its folder and `trust_html` for the section.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from dleem.evaluation import figures
from dleem.evaluation.figures import DPI, add_scale_bar, plt

GALLERY = 6


def _save(fig: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return figures._save(fig, path).name


def read_trust(trust_path: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The trust map's planes and its json, or None where there is none."""
    import tifffile

    js = trust_path.with_suffix(".json")
    if not (trust_path.is_file() and js.is_file()):
        return None
    return np.asarray(tifffile.imread(trust_path), dtype=np.float32), json.loads(js.read_text(encoding="utf-8"))


def trust_map_figure(path: Path, planes: np.ndarray, meta: dict, overview: np.ndarray, step: int,
                     lr_px: float, regions: list[list[int]]) -> str:
    """Predicted RMSE over the LR overview, unsupported blocks hatched, HR regions outlined."""
    from matplotlib.patches import Rectangle

    b = int(meta["block_size_lr_px"])
    h, w = (int(v) for v in meta["lr_shape"])
    fig, ax = plt.subplots(figsize=(8, 8 * h / w + 0.8), dpi=DPI)
    lo, hi = np.percentile(overview, [1, 99])
    ext = [0, w * lr_px, h * lr_px, 0]
    ax.imshow(overview, cmap="gray", vmin=lo, vmax=hi, extent=ext, interpolation="nearest")
    bh, bw = planes.shape[1:]
    im = ax.imshow(planes[0], cmap="magma", alpha=0.55, extent=[0, bw * b * lr_px, bh * b * lr_px, 0],
                   interpolation="nearest")
    for i, j in np.argwhere(planes[1] < 0.5):
        ax.add_patch(Rectangle((j * b * lr_px, i * b * lr_px), b * lr_px, b * lr_px, fill=False, hatch="////",
                               edgecolor="cyan", lw=0))
    for r0, c0, r1, c1 in regions:
        ax.add_patch(Rectangle((c0 * lr_px, r0 * lr_px), (c1 - c0) * lr_px, (r1 - r0) * lr_px, fill=False,
                               edgecolor="lime", lw=1.8))
    for n, blk in enumerate(meta.get("least_trusted", [])[:GALLERY], 1):
        r0, c0 = blk["lr_box"][:2]
        ax.text(c0 * lr_px, r0 * lr_px, str(n), color="white", fontsize=9, weight="bold", va="top")
    ax.set_xlim(0, w * lr_px)
    ax.set_ylim(h * lr_px, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    add_scale_bar(ax, w * lr_px, fraction=0.2)
    fig.colorbar(im, ax=ax, fraction=0.04, label="predicted RMSE (LR grey levels)")
    ax.set_title(f"trust map: supported {100 * meta['supported_fraction']:.0f} % of the area\n"
                 "green = HR regions, cyan hatch = unsupported, numbers = least trusted", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def gallery_figure(path: Path, meta: dict, lr: Any, sr: Any, scale: int, lr_px: float) -> str | None:
    """The least trusted blocks, LR (nearest) | SR, with their predicted RMSE."""
    blocks = meta.get("least_trusted", [])[:GALLERY]
    if not blocks:
        return None
    fig, axes = plt.subplots(len(blocks), 2, figsize=(5.2, 2.6 * len(blocks)), dpi=DPI, squeeze=False)
    for n, (blk, (a0, a1)) in enumerate(zip(blocks, axes, strict=True), 1):
        r0, c0, r1, c1 = blk["lr_box"]
        low = np.asarray(lr[r0:r1, c0:c1], dtype=np.float32)
        high = np.asarray(sr[scale * r0:scale * r1, scale * c0:scale * c1], dtype=np.float32)
        vmin, vmax = np.percentile(low, [0.5, 99.5])
        figures.image_panel(a0, low, lr_px, f"{n}: LR rows {r0}:{r1}, cols {c0}:{c1}", vmin, vmax)
        figures.image_panel(a1, high, lr_px / scale,
                            f"SR, RMSE ≈ {blk['predicted_rmse_gl']:.1f}, "
                            f"{'supported' if blk['supported'] else 'UNSUPPORTED'}", vmin, vmax)
    fig.tight_layout()
    return _save(fig, path)


def sigma_figure(path: Path, consistency_path: Path, overview: np.ndarray, step: int, meta: dict,
                 px_um: float) -> str:
    """degrade(SR) - LR in units of the LR noise σ at the signal, smoothed over ~2 LR px and
    rescaled so that a faithful SR still gives unit variance; one symmetric scale, ±5 σ."""
    from scipy import ndimage

    from dleem.io import read_image
    from dleem.trust.noise import NoiseModel

    raw = np.asarray(read_image(consistency_path, lazy=True).data[::step, ::step], dtype=np.float32)
    h, w = min(raw.shape[0], overview.shape[0]), min(raw.shape[1], overview.shape[1])
    raw, ov = raw[:h, :w], overview[:h, :w]
    z = raw / NoiseModel.from_dict(meta["noise_model"]).sigma(ov + raw)
    s = max(2.0 / step, 0.7)  # the strided pixels stay independent: white noise stays white
    delta = np.zeros((33, 33), np.float32)
    delta[16, 16] = 1.0
    gain = float(np.sqrt((ndimage.gaussian_filter(delta, s) ** 2).sum()))  # noise std after smoothing
    zs = ndimage.gaussian_filter(np.where(np.isfinite(z), z, 0.0), s) / gain
    fig, ax = plt.subplots(figsize=(7.5, 7.5 * h / w + 0.6), dpi=DPI)
    im = ax.imshow(zs, cmap="RdBu_r", vmin=-5, vmax=5, interpolation="nearest", extent=[0, w * px_um, h * px_um, 0])
    ax.set_xticks([])
    ax.set_yticks([])
    add_scale_bar(ax, w * px_um, fraction=0.2, color="black")  # the map is white where consistent
    fig.colorbar(im, ax=ax, fraction=0.046, label="(degrade(SR) − LR) / σ, smoothed")
    ax.set_title(f"consistency in units of the LR noise σ ({meta.get('consistency_sigma_gl', 0):.2g} grey "
                 "levels on average)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def trust_figures(out: Path, trust_path: Path | None, *, overview: np.ndarray | None, step: int, lr_px: float,
                  regions: list[list[int]], lr: Any | None, sr_path: Path | None, scale: int,
                  consistency_path: Path | None) -> dict[str, Any] | None:
    """Write the section's figures under ``out/figures``; returns what `trust_html` shows."""
    found = read_trust(trust_path) if trust_path is not None else None
    if found is None:
        return None
    planes, meta = found
    info: dict[str, Any] = {"meta": meta, "path": str(trust_path)}
    if overview is not None:
        info["map"] = "figures/" + trust_map_figure(out / "figures" / "trust_map.png", planes, meta, overview,
                                                    step, lr_px, regions)
        if consistency_path is not None and Path(consistency_path).is_file():
            info["sigma"] = "figures/" + sigma_figure(out / "figures" / "consistency_sigma.png",
                                                      Path(consistency_path), overview, step, meta, lr_px * step)
    if lr is not None and sr_path is not None and Path(sr_path).exists():
        from dleem.io import read_image

        sr = read_image(sr_path, lazy=True).data
        name = gallery_figure(out / "figures" / "trust_gallery.png", meta, lr, sr, scale, lr_px)
        if name:
            info["gallery"] = "figures/" + name
    return info


def summary_line(info: dict[str, Any] | None) -> str:
    """The report summary's sentence on the trust map."""
    if not info:
        return ""
    m = info["meta"]
    return (f"<p><b>Trust</b>: {100 * m['supported_fraction']:.0f} % of the upscaled area is supported "
            f"(its texture lies within what training saw); median predicted RMSE "
            f"{m['predicted_rmse_gl']['median']:.3g} grey levels (<a href='#trust'>trust map</a>).</p>")


def trust_html(info: dict[str, Any] | None) -> str:
    """The trust section of the report."""
    if not info:
        return ("<p class='note'>No trust map (run <code>dleem upscale ... --trust TRUST.tif</code> "
                "with a model trained by this dleem).</p>")
    m = info["meta"]
    cal = m.get("calibration", {})
    parts = [f"<p>{100 * m['supported_fraction']:.1f} % of the area is <b>supported</b>; "
             f"LR noise σ {m.get('consistency_sigma_gl', float('nan')):.3g} grey levels "
             f"(variance = {m['noise_model']['a']:.3g} + {m['noise_model']['b']:.3g} × signal, from "
             f"{html.escape(str(m['noise_model'].get('source')))}). Error calibration on "
             f"{cal.get('n_blocks', 0)} held-out blocks ({html.escape(str(cal.get('source')))}): Spearman "
             f"{cal.get('spearman')}, median |error| {cal.get('median_abs_error_gl')} grey levels. "
             f"How to read it: docs/trust.md.</p>"]
    for key, alt, caption in (
            ("map", "trust map", "Predicted RMSE per block of "
             f"{m['block_size_lr_px']} × {m['block_size_lr_px']} LR px over the LR map. Hatched: "
             "unsupported blocks, whose texture lies beyond the training range: the SR there is an "
             "extrapolation. Numbers: the least trusted blocks, shown below."),
            ("gallery", "least trusted blocks", "The least trusted blocks: LR | SR, side by side."),
            ("sigma", "consistency in sigma", "degrade(SR) − LR divided by the LR noise σ at the signal, "
             "smoothed over about 2 LR px and rescaled so that the noise keeps unit variance: one "
             "symmetric colour scale of ±5 σ. A faithful SR shows speckle of about ±1 σ; coherent "
             "structure beyond ±3 σ is detail the LR detector would have seen differently. In dark "
             "pores the noise is little more than the quantisation (σ ≈ 0.3 grey levels), so a bias "
             "of one grey level already shows.")):
        if info.get(key):
            parts.append(f"<figure class='half'><img src='{info[key]}' alt='{alt}'>"
                         f"<figcaption>{caption}</figcaption></figure>")
    rows = "".join(f"<tr><td>{n}</td><td>{b['lr_box']}</td><td>{b['predicted_rmse_gl']:.2f}</td>"
                   f"<td>{b['novelty']:.2f}</td><td>{b['consistency_chi']:.2f}</td>"
                   f"<td>{'yes' if b['supported'] else 'no'}</td></tr>"
                   for n, b in enumerate(m.get("least_trusted", [])[:GALLERY], 1))
    parts.append("<table><tr><th>#</th><th>LR box [r0, c0, r1, c1]</th><th>predicted RMSE</th>"
                 f"<th>novelty</th><th>consistency χ²/n</th><th>supported</th></tr>{rows}</table>")
    return "<div class='row'>" + "".join(parts) + "</div>"
