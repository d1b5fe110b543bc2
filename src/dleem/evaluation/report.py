"""The evaluation report: one folder, a static HTML page, its PNGs, a local CSS, metrics.json.

Everything the page shows lives in the folder (no network, no CDN): figures made here, the
registration QC figures copied from ``WORKSPACE/qc``, each model's ``curves.png``. The
folder is built under a temporary name and renamed into place, so a reader never sees a
half-written report. metrics.json follows the schema in docs/report.md.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.evaluation import figures
from dleem.evaluation.evaluate import Evaluation, sha256_or_none, summarize
from dleem.evaluation.pores import match_summary
from dleem.evaluation.stats import MIN_TILES, RESAMPLES
from dleem.evaluation.trust_figures import summary_line, trust_figures, trust_html
from dleem.workspace import CrossvalRecord, PairRegion, PairsManifest, RegistrationRecord, Workspace

log = logging.getLogger(__name__)

METRICS_SCHEMA_VERSION = 2
CSS_NAME = "report.css"


@dataclass
class ReportInputs:
    """What the report shows besides the evaluation itself (all optional)."""

    workspace: Workspace
    manifest: PairsManifest
    model_dirs: dict[str, Path] = field(default_factory=dict)
    registration: RegistrationRecord | None = None
    lr_overview: np.ndarray | None = None  # a strided view of the whole LR image
    lr_overview_step: int = 1
    consistency: np.ndarray | None = None  # LR-grid map (SR degraded - LR), strided
    consistency_step: int = 1
    consistency_path: Path | None = None
    sr_path: Path | None = None
    sr_model: str | None = None
    truth_json: Path | None = None
    dwell_us: dict[str, float] = field(default_factory=dict)  # "LR" / region id -> µs per px
    dwell_source: str = "assumed equal dwell time per pixel"
    command: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    crossval: CrossvalRecord | None = None  # the estimate for LR area without HR
    crossval_path: Path | None = None


# ---------------------------------------------------------------------------- numbers


def imaging_time(lr_shape: Sequence[int], lr_pixel_size_um: float | None,
                 regions: Sequence[PairRegion], hr_shapes: dict[str, Sequence[int]],
                 dwell_us: dict[str, float] | None = None) -> dict[str, Any]:
    """Pixels (and time where dwell times are known) imaged vs imaging the whole area at HR.

    The LR map covers ``H x W`` LR pixels of ``p_LR`` µm; imaging that area at the HR pixel
    size ``p_HR`` would take ``H W (p_LR / p_HR)**2`` pixels. What was imaged is the LR map plus
    the HR regions. With equal dwell time per pixel, time is proportional to pixels.
    """
    h, w = lr_shape
    p_lr = lr_pixel_size_um
    p_hr_values = [r.hr_pixel_size_um for r in regions if r.hr_pixel_size_um]
    if not p_hr_values and p_lr:
        p_hr_values = [p_lr / float(r.ratio) for r in regions if r.ratio]
    if not p_lr or not p_hr_values:
        return {"available": False, "reason": "pixel sizes unknown"}
    p_hr = float(min(p_hr_values))
    n_lr = int(h) * int(w)
    area_um2 = n_lr * p_lr**2
    n_hr = {rid: int(np.prod(shape)) for rid, shape in hr_shapes.items()}
    n_full = area_um2 / p_hr**2
    out: dict[str, Any] = {
        "available": True,
        "area_mm2": area_um2 / 1e6,
        "lr_pixel_size_um": p_lr,
        "hr_pixel_size_um": p_hr,
        "lr_pixels": n_lr,
        "hr_pixels": n_hr,
        "full_hr_pixels": n_full,
        "acquired_pixels": n_lr + sum(n_hr.values()),
        "pixel_ratio_full_over_acquired": n_full / (n_lr + sum(n_hr.values())),
        "hr_area_fraction": sum(n_hr[r.id] * (r.hr_pixel_size_um or p_hr) ** 2
                                for r in regions if r.id in n_hr) / area_um2,
    }
    dwell = dwell_us or {}
    if "LR" in dwell and all(rid in dwell for rid in n_hr) and "HR_full" in dwell:
        t_acq = n_lr * dwell["LR"] + sum(n_hr[r] * dwell[r] for r in n_hr)
        t_full = n_full * dwell["HR_full"]
        out.update(time_acquired_h=t_acq / 3.6e9, time_full_h=t_full / 3.6e9,
                   time_saved_fraction=1 - t_acq / t_full, dwell_known=True)
    else:
        out.update(time_saved_fraction=1 - (n_lr + sum(n_hr.values())) / n_full,
                   dwell_known=False)
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isinf(x):
            return "∞"
        if math.isnan(x):
            return "–"
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return html.escape(str(x))


def build_metrics(ev: Evaluation, inputs: ReportInputs, extra: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json document (schema: docs/report.md)."""
    from dleem import __version__

    opt = ev.options
    return {
        "schema": "dleem-metrics",
        "schema_version": METRICS_SCHEMA_VERSION,
        "dleem_version": __version__,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "workspace": str(inputs.workspace.path.resolve()),
        "scale": ev.scale,
        "lr_pixel_size_um": ev.lr_pixel_size_um,
        "fine_pixel_size_um": ev.fine_pixel_size_um,
        "lr_dtype": ev.lr_dtype,
        "settings": {
            "tiles_requested": opt.tiles,
            "tiles": len(ev.tiles),
            "tile_grid": "independent tiles: a grid anchored at LR image pixel (0, 0), cells "
                         "fully inside the evaluated area and fully valid in the HR mask; a "
                         "cap takes a seeded random subset",
            "area": opt.area,
            "regions": ev.regions,
            "interval": f"95 % bootstrap of the median, {RESAMPLES} seeded resamples, regions "
                        f"first, then tiles within them; null with fewer than {MIN_TILES} tiles",
            "pore_matching": "a reference pore is recalled when the method marks >= half of its "
                             "pixels; a method's pore is correct when >= half of its pixels are "
                             "reference pore; edge pores and pores under min_pore_area_px left "
                             "out; size class by equivalent diameter in LR px",
            "psd_ks_pvalue": "two-sample KS on one value per tile (its median pore diameter)",
            "tile_size_px": opt.tile_size,
            "tile_size_um": (opt.tile_size * ev.fine_pixel_size_um
                             if ev.fine_pixel_size_um else None),
            "seed": opt.seed,
            "data_range": ev.data_range,
            "border_px": ev.border_px,
            "ssim": "skimage.metrics.structural_similarity, gaussian_weights, sigma 1.5, "
                    "use_sample_covariance False",
            "psnr": "10 log10(data_range^2 / MSE); null = infinite (identical tiles)",
            "bicubic": "Keys a = -0.5, fine pixel centre at LR (j + 0.5)/k - 0.5, rounded to "
                       "the LR dtype",
            "threshold_method": opt.threshold if isinstance(opt.threshold, str) else "user",
            "threshold": ev.threshold,
            "pores": "dark" if opt.pores_dark else "bright",
            "connectivity": opt.connectivity,
            "min_pore_area_px": opt.min_pore_px,
            "edge_pores": "excluded from pore count and size distribution, included in porosity",
            "local_thickness_tiles": min(opt.thickness_tiles, len(ev.tiles)),
            "local_thickness": "outside the tile is solid and edge pores are left out, so no "
                               "value exceeds the largest disc inside the pore phase",
            "truth_threshold": ev.truth_threshold,
            "truth": "noise-free specimen convolved with the HR beam (dleem.synth.render_truth "
                     "blur='hr'), LR grey scale" if ev.has_truth else None,
        },
        "tiles": [t.as_dict() for t in ev.tiles],
        "methods": summarize(ev),
        "crossval": (None if inputs.crossval is None else {
            "path": str(inputs.crossval_path) if inputs.crossval_path else None,
            "scheme": inputs.crossval.scheme, "note": inputs.crossval.note,
            "estimate": inputs.crossval.estimate}),
        "models": ev.provenance.get("models", {}),
        **extra,
    }


# ---------------------------------------------------------------------------- HTML


def _img(src: str, alt: str, caption: str, cls: str = "") -> str:
    return (f'<figure class="{cls}"><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _titles(ev: Evaluation) -> dict[str, str]:
    t = {"LR": "LR (measured)", "bicubic": "bicubic", "HR": "HR (measured)",
         "truth": "truth (noise-free)"}
    for m in ev.models:
        t[m] = f"SR: {m}"
    return t


def _with_ci(score: dict | None, digits: int = 3, unit: str = "") -> str:
    """``median [lo, hi]`` of a scores entry, or the reason there is no interval."""
    if not score or score.get("median") is None:
        return "–"
    text = f"{score['median']:.{digits}f}{unit}"
    ci = score.get("ci95")
    if ci and ci[0] is not None and ci[1] is not None:
        return text + f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    n = score.get("n_tiles")
    return text + (f" (no interval: {n} tile{'s' if n != 1 else ''} &lt; {MIN_TILES})"
                   if n is not None and n < MIN_TILES else "")


def _verdict(metrics_doc: dict, models: Sequence[str]) -> list[str]:
    """Plain sentences comparing each model with bicubic (no adjectives, just the numbers)."""
    meth = metrics_doc["methods"]
    b = meth["bicubic"]
    lines = []
    for m in models:
        e = meth[m]
        parts = []
        for key, label, unit in (("ssim", "SSIM", ""), ("psnr_db", "PSNR", " dB")):
            sm, bm = e[key]["median"], b[key]["median"]
            if sm is None or bm is None:
                continue
            word = "above" if sm > bm else "below" if sm < bm else "equal to"
            parts.append(f"median {label} {_with_ci(e[key], unit=unit)} ({word} bicubic's "
                         f"{_with_ci(b[key], unit=unit)})")
        vs, vb = e["vs_HR"], b["vs_HR"]
        if vs.get("pore_recall") is not None and vb.get("pore_recall") is not None:
            parts.append(f"pores recalled {vs['pore_recall']:.2f} (bicubic "
                         f"{vb['pore_recall']:.2f}), precision {_fmt(vs['pore_precision'])} "
                         f"(bicubic {_fmt(vb['pore_precision'])})")
        rs, rb = vs.get("resolved_pore_size_lr_px"), vb.get("resolved_pore_size_lr_px")
        parts.append(f"resolved pore size {_fmt(rs)} LR px (bicubic {_fmt(rb)})")
        lines.append(f"<b>{html.escape(m)}</b>: " + "; ".join(parts) + ".")
    return lines


def _crossval_line(cv: CrossvalRecord) -> str:
    """The report's first line: the cross-validated estimate for LR area without HR."""
    est = cv.estimate
    parts = []
    for method, label in (("model", "SR"), ("bicubic", "bicubic")):
        e = est[method]
        ref = "vs_truth" if e.get("vs_truth") else "vs_HR"
        against = "the truth" if ref == "vs_truth" else "HR"
        parts.append(f"{label}: SSIM {_with_ci(e[ref]['ssim'])}, PSNR "
                     f"{_with_ci(e[ref]['psnr_db'], 2, ' dB')} against {against}")
    trained = ", ".join(sorted({f.held_out for f in cv.folds}))
    return (f"<p class='lead'><b>The quality to expect where no HR was acquired</b> "
            f"(cross-validated, {html.escape(cv.scheme)} over {html.escape(trained)}; median "
            f"[95 % interval]): " + "; ".join(parts) + ".</p>"
            + (f"<p class='note'>{html.escape(cv.note)}</p>" if cv.note else ""))


def _summary_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    opt = ev.options
    px = ev.fine_pixel_size_um
    tile_um = f"{opt.tile_size * px:.3g} µm" if px else f"{opt.tile_size} px"
    summary = []
    if inputs.crossval is not None:
        summary.append(_crossval_line(inputs.crossval))
    else:
        summary.append("<p class='note'>No cross-validation in this workspace (run <code>dleem "
                       "crossval</code>): the numbers below are for the test areas inside the "
                       "HR regions, which are not the quality to expect elsewhere.</p>")
    per_region = ", ".join(f"{html.escape(r)}: {len(i)}" for r, i in ev.region_indices().items())
    summary += [
        f"<p><b>In-region test areas</b>: {len(ev.tiles)} independent tiles of {opt.tile_size} × "
        f"{opt.tile_size} fine-grid px ({tile_um} square, {ev.scale}× the LR grid) on a grid "
        f"over the <b>test areas</b> of the pairs manifest, which training never reads "
        f"({per_region}). Every method is scored against the registered HR image on the same "
        "tiles; medians with 95 % intervals, the region as the unit.</p>",
        "<ul>" + "".join(f"<li>{s}</li>" for s in _verdict(doc, ev.models)) + "</ul>",
    ]
    notes = [f"{html.escape(r)} has {len(i)} tile{'s' if len(i) != 1 else ''}: no interval "
             f"(fewer than {MIN_TILES})" for r, i in ev.region_indices().items()
             if len(i) < MIN_TILES]
    if notes:
        summary.append("<p class='note'>" + "; ".join(notes) + ".</p>")
    if inputs.sr_path is not None:
        summary.append(f"<p>The whole LR area was upscaled with <b>{html.escape(inputs.sr_model or '?')}"
                       f"</b>: <code>{html.escape(str(inputs.sr_path))}</code>.</p>")
    summary.append(summary_line(figs.get("trust")))
    return "".join(summary)


def _numbers_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    titles = _titles(ev)
    meth = doc["methods"]
    names = ["bicubic", *ev.models] + (["truth"] if ev.has_truth else [])
    rows = []
    for n in ["HR", *names]:
        e = meth[n]
        vs = e.get("vs_HR", {})
        vt = e.get("vs_truth", {})
        rows.append([
            html.escape(titles.get(n, n)),
            _with_ci(e.get("ssim")), _with_ci(e.get("psnr_db"), 2),
            _with_ci(vt.get("ssim")) if ev.has_truth else "",
            _with_ci(vt.get("psnr_db"), 2) if ev.has_truth else "",
            _with_ci(e["porosity"]), _fmt(e["pore_count"]["total"]),
            _fmt(vs.get("pore_precision")), _fmt(vs.get("pore_recall")),
            _fmt(vs.get("pore_merges")), _fmt(vs.get("pore_splits")),
            _fmt(vs.get("resolved_pore_size_lr_px")),
            _fmt(e["psd_equivalent_diameter_um"]["median"]),
            _fmt(vs.get("psd_wasserstein_um")),
            _fmt(e["pore_size_function_um"]["median"]),
            _fmt(vs.get("two_point_correlation_rmse")),
        ])
    header = ["method", "SSIM vs HR<br>median [95 %]", "PSNR vs HR (dB)<br>median [95 %]",
              "SSIM vs truth" if ev.has_truth else "", "PSNR vs truth<br>(dB)" if ev.has_truth else "",
              "porosity<br>median [95 %]", "pores<br>(all tiles)", "pore<br>precision",
              "pore<br>recall", "merges", "splits", "resolved pore<br>size (LR px)",
              "median pore<br>diameter (µm)", "PSD Wasserstein<br>to HR (µm)",
              "local thickness<br>median (µm)", "S2 RMSE<br>to HR"]
    if not ev.has_truth:
        header = [h for i, h in enumerate(header) if i not in (3, 4)]
        rows = [[c for i, c in enumerate(r) if i not in (3, 4)] for r in rows]
    region_rows = []
    for rid in ev.regions:
        for n in ["HR", *names]:
            e = meth[n]["per_region"].get(rid)
            if e is None:
                continue
            vs = e.get("vs_HR", {})
            region_rows.append([html.escape(rid), html.escape(titles.get(n, n)), str(e["n_tiles"]),
                                _with_ci(e.get("ssim")), _with_ci(e.get("psnr_db"), 2),
                                _with_ci(e["porosity"]), _fmt(vs.get("pore_recall")),
                                _fmt(vs.get("pore_precision"))])
    recall_rows = []
    for n in names:
        vs = meth[n].get("vs_HR", {})
        recall_rows.append([html.escape(titles.get(n, n))]
                           + [_fmt(c["recall"], 2) + f" <span class='sha'>n={c['n']}</span>"
                              for c in vs.get("pore_recall_by_size", [])]
                           + [_fmt(vs.get("pore_precision"), 2)])
    classes = meth["bicubic"]["vs_HR"]["pore_recall_by_size"]
    class_head = [f"{c['min_lr_px']:g}–{c['max_lr_px']:g}" if c["max_lr_px"] is not None
                  else f"≥ {c['min_lr_px']:g}" for c in classes]
    return (_table(header, rows, "numbers")
            + "<h3>Per region (in-region test areas)</h3>"
            + _table(["region", "method", "tiles", "SSIM vs HR", "PSNR vs HR (dB)", "porosity",
                      "pore recall", "pore precision"], region_rows, "numbers")
            + "<h3>Recall of HR pores by equivalent diameter (LR px)</h3>"
            + _table(["method", *class_head, "precision"], recall_rows, "numbers")
            + "<p class='note'>Per-tile values are in <code>metrics.json</code> "
              "(schema in dleem's docs/report.md). How each number is computed: "
              "<a href='#methods'>below</a>.</p>")


def _gallery_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    g = "".join(_img(p, f"tile {i + 1}", cap, "wide") for i, (p, cap) in enumerate(figs["gallery"]))
    return ("<p>Tiles at evenly spread quantiles of HR porosity over all tiles of all regions "
            "(stated under each), every panel at the same physical scale (scale bar on each) and "
            "the same grey window (0.5–99.5 percentiles of the HR tile). LR is drawn with its own, "
            "coarser pixels.</p>" + g)


def _quality_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    return (_img(figs["hist_ssim"], "SSIM histograms",
                 "SSIM of each tile against HR (1 = identical), one panel per method, stacked "
                 "and coloured by region; dashed: each region's median.", "wide")
            + _img(figs["hist_psnr"], "PSNR histograms",
                   "PSNR of each tile against HR (dB), one panel per method, coloured by "
                   "region; dashed: each region's median.", "wide"))


def _pores_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    opt = ev.options
    p = "".join(_img(pp, "pore segmentation", cap, "wide") for pp, cap in figs["pores"])
    return (
        f"<p>One threshold, {_fmt(ev.threshold, 4)} grey levels "
        f"({html.escape(str(opt.threshold if isinstance(opt.threshold, str) else 'user'))} on "
        f"the HR tiles), applied alike to every image; pores are the "
        f"{'dark' if opt.pores_dark else 'bright'} phase (blue).</p>" + p
        + _img(figs["recall"], "pore recall by size",
               "Left: the fraction of HR pores (not cut by the tile edge) that each method marks "
               "at least half of, by equivalent diameter in LR px (n: HR pores in the class; "
               "dotted: 0.8, the level that defines the resolved pore size). Right: precision, "
               "the fraction of the method's pores that are at least half HR pore.", "wide")
        + _img(figs["psd_hist"], "pore-size histograms by region",
               "Equivalent diameters of the pores not cut by the tile edge, one panel per "
               "image, stacked and coloured by region; bins at the discrete pore areas (fine "
               "px), so no bin is empty for want of a possible area.", "wide")
        + _img(figs["psd"], "pore-size distributions",
               "Left: cumulative equivalent-diameter distribution, pooled over all tiles. "
               "Middle: local thickness (pore-size function), cumulative by pore area, with the "
               "edge pores left out so no pore is extended by the tile edge. Right: two-point "
               "correlation S2(r) of the pore phase, mean over tiles; S2(0) = porosity.", "wide"))


def _consistency_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    whole = []
    if figs.get("consistency"):
        whole.append(_img(figs["consistency"], "consistency map",
                          "Consistency map: the SR image degraded back to the LR grid (the LR "
                          "blur and pixel integration) minus the measured LR, in grey levels, "
                          "smoothed with a Gaussian of σ = 2 LR px to suppress the LR noise. "
                          "Near zero where SR agrees with the measurement; structure here is "
                          "detail the network drew that the LR detector would have seen "
                          "differently.", "half"))
    if figs.get("consistency_summary"):
        whole.append(_img(figs["consistency_summary"], "consistency summary",
                          "Consistency summary written by dleem upscale.", "half"))
    if not whole:
        whole.append("<p class='note'>No consistency map was given (run <code>dleem upscale "
                     "--consistency PATH</code> and pass it to <code>dleem evaluate "
                     "--consistency PATH</code>).</p>")
    return "<div class='row'>" + "".join(whole) + "</div>"


def _registration_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    reg_html = []
    if figs.get("overview"):
        reg_html.append(_img(figs["overview"], "overview",
                             "The LR map with the registered HR regions (outlines), their test "
                             "areas (red), validation (yellow) and training (green) boxes, and "
                             "the evaluation tiles (white).", "half"))
    if inputs.registration:
        rows = [[html.escape(Path(r.file).name), html.escape(r.status), _fmt(r.ncc_peak),
                 _fmt(r.ncc_distinctness), _fmt(r.residual), _fmt(r.blur_sigma_lr_px),
                 _fmt(r.gain), _fmt(r.offset)] for r in inputs.registration.regions]
        reg_html.append(_table(["HR file", "status", "NCC peak", "peak distinctness",
                                "residual", "LR blur σ (LR px)", "gain", "offset"], rows))
    qc = "".join(_img(q, "registration QC", f"Registration QC (dleem register): "
                      f"{html.escape(Path(q).name)}", "wide") for q in figs["qc"])
    if not (reg_html or qc):
        return "<p class='note'>No registration figures in the workspace.</p>"
    return "<div class='row'>" + "".join(reg_html) + "</div>" + qc


def _training_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    tr = "".join(_img(c, f"training curves {m}", f"Training curves of <b>{html.escape(m)}</b>.",
                      "half") for m, c in figs["curves"])
    return "<div class='row'>" + (tr or "<p class='note'>No curves.png in the model folders.</p>") \
        + "</div>"


#: The report's sections in page order: (anchor, heading, navigation label, builder).
SECTIONS = (
    ("summary", "Summary", "Summary", _summary_html),
    ("numbers", "All numbers", "Numbers", _numbers_html),
    ("gallery", "In-region test tiles: LR | bicubic | SR | HR", "Tiles", _gallery_html),
    ("quality", "SSIM and PSNR over the in-region test tiles, by region", "SSIM/PSNR", _quality_html),
    ("pores", "Pores", "Pores", _pores_html),
    ("consistency", "Upscaled area: consistency with the measurement", "Consistency",
     _consistency_html),
    ("trust", "Upscaled area: where it can be trusted", "Trust",
     lambda ev, inputs, doc, figs: trust_html(figs.get("trust"))),
    ("registration", "Registration", "Registration", _registration_html),
    ("training", "Training", "Training", _training_html),
    ("time", "Imaging time saved", "Time",
     lambda ev, inputs, doc, figs: _time_html(doc.get("imaging_time", {}), inputs.dwell_source)),
    ("methods", "How the numbers are computed", "Methods",
     lambda ev, inputs, doc, figs: _methods_html(ev)),
    ("provenance", "Inputs and version", "Inputs",
     lambda ev, inputs, doc, figs: _provenance_html(doc, inputs)),
)


def render_html(ev: Evaluation, inputs: ReportInputs, doc: dict, figs: dict[str, Any]) -> str:
    """The page. ``figs`` maps section keys to relative image paths made for this report."""
    from dleem import __version__

    sections = "".join(_section(key, title, build(ev, inputs, doc, figs))
                       for key, title, _, build in SECTIONS)
    nav = "".join(f"<a href='#{key}'>{label}</a>" for key, _, label, _ in SECTIONS)
    stamp = html.escape(doc["created_utc"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dleem evaluation report</title>
<link rel="stylesheet" href="{CSS_NAME}">
</head>
<body>
<header>
<h1>dleem evaluation report</h1>
<p class="sub">Workspace <code>{html.escape(str(inputs.workspace.path))}</code> · dleem {html.escape(__version__)} · {stamp}</p>
<nav>{nav}</nav>
</header>
<main>
{sections}
</main>
<footer>Made by dleem {html.escape(__version__)}. This folder is self-contained: it opens offline.</footer>
</body>
</html>
"""


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{title}</h2>{body}</section>\n'


def _time_html(t: dict, dwell_source: str) -> str:
    if not t.get("available"):
        return f"<p class='note'>Not computed: {html.escape(t.get('reason', 'unknown'))}.</p>"
    rows = [
        ["area of the LR map", f"{t['area_mm2']:.4g} mm²"],
        ["LR pixel size / HR pixel size", f"{t['lr_pixel_size_um']:.4g} µm / {t['hr_pixel_size_um']:.4g} µm"],
        ["pixels imaged (LR map + HR regions)",
         f"{t['lr_pixels']:,} + {sum(t['hr_pixels'].values()):,} = {t['acquired_pixels']:,}"],
        ["pixels to image the whole area at HR", f"{t['full_hr_pixels']:,.0f}"],
        ["share of the area imaged at HR", f"{100 * t['hr_area_fraction']:.2f} %"],
        ["imaging time saved", f"<b>{100 * t['time_saved_fraction']:.1f} %</b> "
                               f"({t['pixel_ratio_full_over_acquired']:.1f}× fewer pixels)"],
    ]
    if t.get("dwell_known"):
        rows.append(["time imaged / time for all at HR",
                     f"{_duration(t['time_acquired_h'] * 3600)} / "
                     f"{_duration(t['time_full_h'] * 3600)}"])
    note = ("<p class='note'>Time basis: " + html.escape(dwell_source) + ". "
            + ("" if t.get("dwell_known") else
               "With equal dwell time per pixel, time is proportional to pixels; stage moves, "
               "focusing and overheads are not counted. For example, at 1 µs per pixel the "
               f"whole area at HR would take {_duration(t['full_hr_pixels'] * 1e-6)} against "
               f"{_duration(t['acquired_pixels'] * 1e-6)} imaged.") + "</p>")
    return _table(["", ""], rows, "kv") + note


def _duration(seconds: float) -> str:
    """Seconds, minutes or hours, whichever reads best."""
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _methods_html(ev: Evaluation) -> str:
    opt = ev.options
    px = ev.fine_pixel_size_um
    items = [
        ("Fine grid", f"k = {ev.scale}: LR pixel i covers fine pixels k·i … k·i+k−1; fine pixel "
                      "j has its centre at LR coordinate (j + 0.5)/k − 0.5"
                      + (f"; fine pixel {px:.4g} µm." if px else ".")),
        ("Test tiles", f"{opt.tile_size} px squares on a grid anchored at LR pixel (0, 0), "
                       "each fully inside a test box of the pairs manifest and fully valid in "
                       "the HR mask, so no pixel is counted twice and no tile touches a training "
                       "or validation box"
                       + (f"; a seeded (seed {opt.seed}) random subset of {opt.tiles}"
                          if opt.tiles else "") + "."),
        ("Intervals", f"95 % intervals of the median from {RESAMPLES} seeded bootstrap "
                      "resamples, regions first, then tiles within them (the region is the "
                      f"unit); none where fewer than {MIN_TILES} tiles."),
        ("HR", "the registered HR image resampled onto the fine grid and mapped to the LR grey "
               "scale with the fitted gain and offset (pairs/HR_i_hr.tif)."),
        ("SR", "the model applied to the LR image around the test tiles with a halo of its "
               "receptive field, so the tiles are exactly what upscaling the whole image gives."),
        ("Bicubic", "Keys cubic convolution (a = −0.5) on the same grid convention, rounded and "
                    "clipped to the LR dtype."),
        ("SSIM", "scikit-image structural_similarity, Gaussian window σ = 1.5, population "
                 "covariance (Wang et al. 2004), data range "
                 f"{ev.data_range:g} (the full range of {ev.lr_dtype}); {ev.border_px} px cut "
                 "from each tile side first (the 'shave' convention)."),
        ("PSNR", f"10·log10(range² / MSE), range {ev.data_range:g}, same border cut; identical "
                 "tiles give ∞ (null in metrics.json)."),
        ("Pore segmentation", f"one global threshold ({opt.threshold if isinstance(opt.threshold, str) else 'user value'}, "
                              f"{_fmt(ev.threshold, 4)}) chosen on all HR tiles and applied "
                              f"alike; pores = {'dark' if opt.pores_dark else 'bright'} phase."),
        ("Porosity", "pore pixels / tile pixels, pores cut by the tile edge included."),
        ("Pores and PSD", f"{opt.connectivity}-connected components of at least "
                          f"{opt.min_pore_px} px; pores touching the tile edge are excluded from "
                          "count, size distribution and matching. Equivalent diameter "
                          "2·√(area/π) in µm."),
        ("Pore matching", "an HR pore is recalled when the method marks at least half of its "
                          "pixels as pore; a method's pore is correct when at least half of its "
                          "pixels are HR pore (precision: correct / the method's pores). Merge: "
                          "a method's pore holding at least half of two or more recalled HR "
                          "pores; split: an HR pore holding at least half of two or more of the "
                          "method's pores. Size classes by equivalent diameter in LR px, "
                          "2·√(area/π)/k; resolved pore size: the lowest class boundary from "
                          "which every class with at least 20 HR pores has recall ≥ 0.8."),
        ("Local thickness", "at each pore pixel the diameter of the largest disc inside the "
                            "pore phase covering it (Hildebrand & Rüegsegger 1997), Euclidean "
                            "distance transforms, radii in 1/4 px steps up to 8 px and 4 % steps "
                            "beyond, outside the tile taken as solid and the edge pores left "
                            f"out, on {min(opt.thickness_tiles, len(ev.tiles))} evenly spread "
                            "tiles."),
        ("Two-point correlation", "S2(r) from the FFT autocorrelation of the pore indicator, "
                                  "zero-padded and normalised by pairs per lag, radially "
                                  "averaged; RMSE to HR's mean curve."),
        ("Distances", "scipy.stats.wasserstein_distance (µm) and ks_2samp (statistic, "
                      "descriptive: pooled pores are not independent, so no p-value on them; "
                      "metrics.json's psd_ks_pvalue compares one median diameter per tile) "
                      "between the pooled distributions of a method and of HR; also for the pores of "
                      "at least one LR pixel in area (equivalent diameter ≥ "
                      f"{_fmt(2 * math.sqrt(ev.scale ** 2 / math.pi) * (px or 1.0), 3)} µm), the "
                      "part of the distribution the LR image itself resolves."),
    ]
    if ev.has_truth:
        items.append(("Truth", "synthetic data only: the noise-free specimen seen through the HR "
                               "beam (dleem.synth.render_truth, blur='hr'), rendered on the fine "
                               "grid in the LR grey scale."))
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _provenance_html(doc: dict, inputs: ReportInputs) -> str:
    rows = [["dleem version", html.escape(doc["dleem_version"])],
            ["created (UTC)", html.escape(doc["created_utc"])]]
    if inputs.command:
        rows.append(["command", f"<code>{html.escape(inputs.command)}</code>"])
    for item in doc.get("inputs", []):
        rows.append([html.escape(item["role"]),
                     f"<code>{html.escape(str(item['path']))}</code><br>"
                     f"<span class='sha'>sha256 {html.escape(str(item.get('sha256')))}</span>"])
    for name, info in doc.get("models", {}).items():
        rows.append([f"model {html.escape(name)}",
                     f"<code>{html.escape(str(info.get('model_dir')))}</code><br>"
                     f"<span class='sha'>generator sha256 {html.escape(str(info.get('generator_sha256')))}"
                     "</span>"])
    if inputs.timings_s:
        rows.append(["timings (this machine)", timings_html(inputs.timings_s)])
    return _table(["", ""], rows, "kv")


def timings_html(timings: dict[str, float]) -> str:
    """The timings row (a marked span, so the workflow can update it after evaluation)."""
    text = ", ".join(f"{html.escape(k)} {v:.0f} s" for k, v in timings.items())
    total = sum(timings.values())
    return f'<span id="timings">{text} (total {total / 60:.1f} min)</span><!--timings-->'


# ---------------------------------------------------------------------------- write


def _hr_shapes(regions: Sequence[PairRegion],
               registration: RegistrationRecord | None) -> dict[str, tuple[int, int]]:
    """HR image shapes by region id: as registered, else the region's extent in HR px."""
    registered = {r.file: r.hr_shape for r in (registration.regions if registration else [])
                  if r.hr_shape is not None}
    shapes = {}
    for r in regions:
        if r.hr_file in registered:
            shapes[r.id] = registered[r.hr_file]
        else:
            r0, c0, r1, c1 = r.lr_box
            ratio = float(r.ratio or 1.0)
            shapes[r.id] = (int((r1 - r0) * ratio), int((c1 - c0) * ratio))
    return shapes


def _inputs_list(inputs: ReportInputs) -> list[dict[str, Any]]:
    man = inputs.manifest
    items = [{"role": "LR image", "path": man.lr_file, "sha256": man.lr_sha256}]
    for r in man.regions:
        items.append({"role": f"HR image {r.id}", "path": r.hr_file, "sha256": r.hr_sha256})
    ws = inputs.workspace
    for role, path in (("pairs manifest", ws.pairs_manifest_json),
                       ("registration.json", ws.registration_json),
                       ("synthetic truth.json", inputs.truth_json),
                       ("consistency map", inputs.consistency_path),
                       ("upscaled image", inputs.sr_path)):
        if path is not None and Path(path).is_file():
            items.append({"role": role, "path": str(path), "sha256": sha256_or_none(path)})
    return items


def _overview(path: Path, ev: Evaluation, inputs: ReportInputs, lr_px: float) -> None:
    """The LR map around the HR regions: outlines, split boxes, evaluation tiles."""
    man = inputs.manifest
    s = inputs.lr_overview_step
    boxes, outlines = [], []
    lo = np.array([np.inf, np.inf])
    hi = np.array([-np.inf, -np.inf])
    shapes = _hr_shapes(man.regions, inputs.registration)
    for r in man.regions:
        br0, bc0, br1, bc1 = r.lr_box
        lo = np.minimum(lo, [br0, bc0])
        hi = np.maximum(hi, [br1, bc1])
        for split, color in (("train", "#4daf4a"), ("val", "#ffd92f"), ("test", "#e41a1c")):
            for b in r.splits.of(split):
                boxes.append((list(r.global_box(b)), color, f"{split} area"))
        outlines.append((r.hr_to_lr.corners(shapes[r.id]) + 0.5, "#00bfff", "HR region"))
    for t in ev.tiles:
        boxes.append((list(t.lr_box), "white", "evaluation tile"))
    # Crop to the regions with a margin (the registration QC shows the whole map).
    h, w = (np.array(inputs.lr_overview.shape[:2]) * s).tolist()
    margin = 0.15 * float(max(hi - lo)) if np.all(np.isfinite(lo)) else 0.0
    y0 = int(max(0, lo[0] - margin) // s) if margin else 0
    x0 = int(max(0, lo[1] - margin) // s) if margin else 0
    y1 = int(min(h, hi[0] + margin) // s) + 1 if margin else inputs.lr_overview.shape[0]
    x1 = int(min(w, hi[1] + margin) // s) + 1 if margin else inputs.lr_overview.shape[1]
    view = inputs.lr_overview[y0:y1, x0:x1]
    oy, ox = y0 * s, x0 * s
    boxes = [([(b[0] - oy) / s, (b[1] - ox) / s, (b[2] - oy) / s, (b[3] - ox) / s], c, t)
             for b, c, t in boxes]
    outlines = [(np.column_stack([(xy[:, 0] - ox) / s, (xy[:, 1] - oy) / s]), c, t)
                for xy, c, t in outlines]
    figures.map_figure(path, view, lr_px * s,
                       f"LR map around the HR regions (rows {oy}–{oy + view.shape[0] * s}, "
                       f"columns {ox}–{ox + view.shape[1] * s}): splits and evaluation tiles",
                       boxes=boxes, outlines=outlines)


def _pooled(arrays: Sequence[np.ndarray | None]) -> np.ndarray:
    parts = [a for a in arrays if a is not None]
    return np.concatenate(parts) if parts else np.zeros(0)


def summarize_vs_hr(ev: Evaluation, name: str) -> dict[str, Any]:
    """A method's pooled pore matching against HR (as in metrics.json ``vs_HR``)."""
    return match_summary(ev.methods[name].match_hr, ev.scale)


def _tile_caption(g: dict, n_tiles: int) -> str:
    """What a figure tile is, truly: its quantile of HR porosity, its porosity, its place."""
    t = g["_tile"]
    r0, c0, r1, c1 = t.lr_box
    return (f"Tile at the {100 * g['_quantile']:.0f}th percentile of HR porosity over all "
            f"{n_tiles} tiles of all regions (HR porosity {100 * g['_porosity']:.1f} %): region "
            f"{html.escape(t.region)}, LR rows {r0}–{r1}, columns {c0}–{c1}.")


def write_report(ev: Evaluation, inputs: ReportInputs, out_dir: str | PathLike[str] | None = None,
                 ) -> Path:
    """Write ``index.html``, ``metrics.json``, ``report.css`` and the figures.

    Parameters
    ----------
    ev : Evaluation
        From `dleem.evaluation.evaluate.evaluate`.
    inputs : ReportInputs
        Workspace facts and optional whole-area images.
    out_dir : path, optional
        Default ``WORKSPACE/report``; replaced as a whole (built under a temporary name).

    Returns
    -------
    Path of index.html.
    """
    out = Path(out_dir) if out_dir is not None else inputs.workspace.report_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_contents(ev, inputs, tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("report: %s (%d tiles, %d models)", out / "index.html", len(ev.tiles),
             len(ev.models))
    return out / "index.html"


def _write_contents(ev: Evaluation, inputs: ReportInputs, out: Path) -> dict:
    titles = _titles(ev)
    names = ["bicubic", *ev.models] + (["truth"] if ev.has_truth else [])
    colors = {n: figures.method_color(n, ev.models) for n in ["HR", *names]}
    px = ev.fine_pixel_size_um or 1.0
    lr_px = ev.lr_pixel_size_um or float(ev.scale)
    figs: dict[str, Any] = {"gallery": [], "pores": [], "qc": [], "curves": []}
    fig_dir = out / "figures"

    order = ["LR", "bicubic", *ev.models, "HR"] + (["truth"] if ev.has_truth else [])
    n_all = len(ev.tiles)
    for i, g in enumerate(ev.gallery):
        name = f"figures/tile_{i + 1:02d}.png"
        figures.gallery_figure(out / name, g, order, px, lr_px, titles)
        figs["gallery"].append((name, _tile_caption(g, n_all)))
    for j, g in enumerate(ev.pore_tiles):
        name = f"figures/pores_{j + 1:02d}.png"
        figures.pores_figure(out / name, g, ["bicubic", *ev.models, "HR"],
                             ev.threshold, px, ev.options.pores_dark, titles)
        figs["pores"].append((name, "Pore segmentation (blue: pores; title: porosity of the "
                                    "tile). " + _tile_caption(g, n_all)))
    groups = ev.region_indices()
    rcolors = figures.region_colors(ev.regions)
    for key, label in (("ssim", "SSIM against HR"), ("psnr", "PSNR against HR (dB)")):
        values = {n: {r: np.asarray([getattr(ev.methods[n], key)[i] for i in idx])
                      for r, idx in groups.items()} for n in ["bicubic", *ev.models]}
        figs[f"hist_{key}"] = f"figures/hist_{key}.png"
        figures.region_histogram_figure(out / figs[f"hist_{key}"], values, rcolors, label, titles)
    psd_names = ["HR", *names]
    diam = {n: {r: np.concatenate([ev.methods[n].diameters_um[i] for i in idx] or [np.zeros(0)])
                for r, idx in groups.items()} for n in psd_names}
    all_areas = np.concatenate([np.pi * (d / (2 * px)) ** 2 for per in diam.values()
                                for d in per.values()] or [np.zeros(0)])
    area_edges = figures.area_bins(np.rint(all_areas))
    figs["psd_hist"] = "figures/psd_by_region.png"
    figures.region_histogram_figure(out / figs["psd_hist"], diam, rcolors,
                                    "equivalent diameter (µm)", titles,
                                    bins=2 * np.sqrt(area_edges / np.pi) * px, log_x=True)
    figs["recall"] = "figures/pore_recall.png"
    rec_names = ["bicubic", *ev.models]
    summary = {n: summarize_vs_hr(ev, n) for n in rec_names}
    figures.recall_figure(out / figs["recall"], {n: summary[n]["pore_recall_by_size"]
                                                 for n in rec_names},
                          {n: summary[n]["pore_precision"] for n in rec_names}, colors, titles,
                          "HR")
    figs["psd"] = "figures/psd.png"
    figures.psd_figure(out / figs["psd"],
                       {n: _pooled(ev.methods[n].diameters_um) for n in psd_names},
                       {n: _pooled(ev.methods[n].thickness_um) for n in psd_names},
                       {n: np.mean(np.stack(ev.methods[n].s2), axis=0) for n in psd_names},
                       colors, px, titles)

    man = inputs.manifest
    if inputs.lr_overview is not None:
        figs["overview"] = "figures/overview.png"
        _overview(out / figs["overview"], ev, inputs, lr_px)
    if inputs.consistency is not None:
        figs["consistency"] = "figures/consistency.png"
        figures.map_figure(out / figs["consistency"], inputs.consistency,
                           lr_px * inputs.consistency_step,
                           f"consistency map ({html.escape(inputs.sr_model or 'SR')}): "
                           "degraded SR − LR", cmap="RdBu_r", label="grey levels",
                           symmetric=True)
    if inputs.consistency_path is not None:
        summ = Path(inputs.consistency_path)
        summ = summ.with_name(summ.name.split(".")[0] + "_summary.png")
        if summ.is_file():
            shutil.copy2(summ, fig_dir / "consistency_summary.png")
            figs["consistency_summary"] = "figures/consistency_summary.png"
    figs["trust"] = trust_figures(
        out, inputs.workspace.trust_path, overview=inputs.lr_overview, step=inputs.lr_overview_step,
        lr_px=lr_px, regions=[list(r.lr_box) for r in man.regions], lr=man.read_lr(lazy=True).data,
        sr_path=inputs.sr_path, scale=ev.scale, consistency_path=inputs.consistency_path)
    qc_dir = inputs.workspace.qc_dir
    if qc_dir.is_dir():
        (out / "qc").mkdir(exist_ok=True)
        for q in sorted(qc_dir.glob("*.png")):
            shutil.copy2(q, out / "qc" / q.name)
            figs["qc"].append(f"qc/{q.name}")
    for m, d in inputs.model_dirs.items():
        c = Path(d) / "curves.png"
        if c.is_file():
            (out / "training").mkdir(exist_ok=True)
            shutil.copy2(c, out / "training" / f"{m}.png")
            figs["curves"].append((m, f"training/{m}.png"))

    extra = {"imaging_time": imaging_time(man.lr_shape, man.lr_pixel_size_um, man.regions,
                                          _hr_shapes(man.regions, inputs.registration),
                                          inputs.dwell_us),
             "inputs": _inputs_list(inputs)}
    if inputs.sr_path is not None:
        extra["upscaled"] = {"path": str(inputs.sr_path), "model": inputs.sr_model}
    if inputs.timings_s:
        extra["timings_s"] = inputs.timings_s
    doc = build_metrics(ev, inputs, extra)
    page = render_html(ev, inputs, doc, figs)
    css = resources.files("dleem.evaluation").joinpath(CSS_NAME).read_text(encoding="utf-8")
    (out / CSS_NAME).write_text(css, encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    (out / "index.html").write_text(page, encoding="utf-8")
    return doc
