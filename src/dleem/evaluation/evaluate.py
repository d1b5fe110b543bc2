"""Evaluate upscalers on the held-out test tiles of a workspace.

For every random test tile (see `dleem.evaluation.sampling`) this computes, on the fine
grid, SSIM and PSNR of each method (bicubic and every model) against the registered HR
target (and, on synthetic data, against the noise-free truth), and the pore statistics of
each (see `dleem.evaluation.pores`). SR is computed from the LR image around the test tiles
with a halo of the model's receptive field, exactly as the whole-image upscaling would see
it; the training pairs are never read, only the test boxes of the manifest.

The methods are plain callables (an LR window in, its fine-grid image out), so tests can
feed fabricated "models" and the CLI feeds real ones (`model_upscaler`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem import imaging
from dleem.errors import DleemError, InputError, ParameterError
from dleem.evaluation import metrics, pores
from dleem.evaluation.sampling import EvalTile, sample_tiles
from dleem.io import sha256_file
from dleem.workspace import PairsManifest, Workspace

log = logging.getLogger(__name__)

#: Tiles whose images are kept for the report's gallery and segmentation figures.
GALLERY_TILES = 6
#: Stride of the local-thickness pixels kept for the pore-size function (memory bound).
THICKNESS_STRIDE = 2


@dataclass
class Upscaler:
    """A method that maps an LR window to the fine grid.

    Attributes
    ----------
    name : str
        Label in the report and in metrics.json (e.g. ``"model-mae"``).
    predict : callable
        ``predict(lr_window) -> fine`` with ``fine.shape == (k*h, k*w)``, LR dtype.
    halo_lr_px : int
        LR pixels of context the method needs around a window (its receptive field).
    info : dict
        Provenance for the report (model folder, checksums, config summary).
    """

    name: str
    predict: Callable[[np.ndarray], np.ndarray]
    halo_lr_px: int
    info: dict = field(default_factory=dict)


@dataclass
class EvalOptions:
    """What the user chose; recorded in metrics.json."""

    tiles: int = 200
    tile_size: int = 256
    seed: int = 0
    threshold: str | float = "otsu"
    pores_dark: bool = True
    connectivity: int = 8
    min_pore_px: int = 4
    border_px: int | None = None  # None: the scale k
    gallery: int = GALLERY_TILES
    thickness_tiles: int = 50  # local thickness on this many tiles (it costs ~0.1 s a tile)


@dataclass
class MethodResult:
    """Everything measured for one method (or for HR / truth, which have no scores vs HR)."""

    name: str
    ssim: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ssim_truth: list[float] = field(default_factory=list)
    psnr_truth: list[float] = field(default_factory=list)
    porosity: list[float] = field(default_factory=list)
    pore_count: list[int] = field(default_factory=list)
    diameters_um: list[np.ndarray] = field(default_factory=list)
    thickness_um: list[np.ndarray] = field(default_factory=list)
    s2: list[np.ndarray] = field(default_factory=list)

    def pooled_diameters(self) -> np.ndarray:
        return np.concatenate(self.diameters_um) if self.diameters_um else np.zeros(0)

    def pooled_thickness(self) -> np.ndarray:
        return np.concatenate(self.thickness_um) if self.thickness_um else np.zeros(0)

    def mean_s2(self) -> np.ndarray:
        return np.mean(np.stack(self.s2), axis=0) if self.s2 else np.zeros(0)


@dataclass
class Evaluation:
    """The result of `evaluate`: per-method measures, tiles, gallery images, provenance."""

    options: EvalOptions
    scale: int
    fine_pixel_size_um: float | None
    lr_pixel_size_um: float | None
    data_range: float
    border_px: int
    threshold: float
    tiles: list[EvalTile]
    methods: dict[str, MethodResult]  # "HR", "bicubic", model names, maybe "truth"
    models: list[str]
    has_truth: bool
    gallery: list[dict[str, np.ndarray]]
    lr_dtype: str
    provenance: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- inputs


def sha256_or_none(path: str | PathLike[str] | None) -> str | None:
    """SHA-256 of a file, None when there is no such file (provenance is best effort)."""
    return sha256_file(path) if path is not None and Path(path).is_file() else None


def model_upscaler(
    model_dir: str | PathLike[str], *, device: str = "cpu", tile: int = 256, batch: int = 4,
    name: str | None = None, pixel_size_um: float | None = None,
) -> Upscaler:
    """An `Upscaler` from a model folder (`dleem.models.load_model` + `dleem.upscale`)."""
    from dleem.models import load_model
    from dleem.upscale import upscale_array

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise InputError(model_dir, "not a model folder (no config.json)")
    model = load_model(model_dir, device="cpu" if device == "auto" else device)

    def predict(lr: np.ndarray) -> np.ndarray:
        return np.asarray(upscale_array(lr, model, tile=tile, batch=batch, device=device,
                                        pixel_size_um=pixel_size_um))

    cfg = model.config
    info: dict[str, Any] = {
        "model_dir": str(model_dir.resolve()),
        "generator_sha256": sha256_or_none(model_dir / "generator.safetensors"),
        "config_sha256": sha256_or_none(model_dir / "config.json"),
        "scale": int(model.scale),
        "halo_lr_px": int(model.halo_lr_px),
        "arch": dict(cfg.arch),
        "dleem_version": cfg.dleem_version,
    }
    for key in ("loss", "adv_weight", "preset", "steps_done"):
        if cfg.training.get(key) is not None:
            info[key] = cfg.training[key]
    return Upscaler(name or model_dir.name, predict, int(model.halo_lr_px), info)


def bicubic_upscaler(scale: int) -> Upscaler:
    """The baseline: Keys bicubic (a = -0.5) on the same fine-grid convention."""
    return Upscaler(
        "bicubic",
        lambda lr: imaging.bicubic_upsample(lr, scale),
        imaging.BICUBIC_HALO_LR_PX,
        {"method": "Keys cubic convolution, a = -0.5, edge replicated, rounded to the LR dtype"},
    )


def _read_array(path: Path) -> np.ndarray:
    from dleem.io import read_image

    return np.asarray(read_image(path).data)


@dataclass
class EvalData:
    """The parts of a workspace evaluation reads: the pairs manifest, the whole LR image,
    and the HR targets and masks of the regions with test areas."""

    workspace: Workspace
    manifest: PairsManifest
    lr: Any  # 2-D array (lazy allowed)
    targets: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    truth_json: Path | None

    @property
    def path(self) -> Path:
        return self.workspace.path


def open_workspace(workspace: Workspace | str | PathLike[str]) -> EvalData:
    """Read the pairs manifest, the whole LR image, and the HR targets and masks."""
    from dleem.io import read_image

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if not ws.path.is_dir():
        raise InputError(ws.path, "workspace folder not found")
    manifest = ws.read_pairs()
    lr_file = manifest.lr_file
    if not lr_file or not Path(lr_file).is_file():
        raise InputError(lr_file or ws.pairs_manifest_json,
                         "the LR image named in the pairs manifest is missing")
    lr = read_image(lr_file).data
    if tuple(lr.shape) != tuple(manifest.lr_shape):
        raise InputError(lr_file, f"shape {tuple(lr.shape)} differs from the manifest's "
                                  f"{tuple(manifest.lr_shape)}")
    targets, masks = {}, {}
    for region in manifest.regions:
        if not region.splits.test:
            continue
        targets[region.id] = _read_array(ws.pair_file(region.hr)).astype(np.float32)
        masks[region.id] = _read_array(ws.pair_file(region.mask))
    truth = Path(lr_file).parent / "truth.json"
    return EvalData(ws, manifest, lr, targets, masks, truth if truth.is_file() else None)


# ---------------------------------------------------------------------------- windows


def _window(lr_shape: Sequence[int], box: Sequence[int], halo: int) -> tuple[int, ...]:
    """Global LR window (row0, col0, row1, col1) around ``box`` with ``halo``, clipped."""
    r0, c0, r1, c1 = box
    return (max(0, r0 - halo), max(0, c0 - halo),
            min(int(lr_shape[0]), r1 + halo), min(int(lr_shape[1]), c1 + halo))


def _fine_over(method: Upscaler, lr: Any, box: Sequence[int], k: int) -> np.ndarray:
    """Fine-grid image of the global LR ``box`` by ``method``, from a halo'd window."""
    w = _window(lr.shape, box, method.halo_lr_px)
    window = np.asarray(lr[w[0]:w[2], w[1]:w[3]])
    fine = np.asarray(method.predict(window))
    expect = (k * window.shape[0], k * window.shape[1])
    if fine.shape != expect:
        raise DleemError(f"{method.name}: output shape {fine.shape}, expected {expect} "
                         f"(scale {k})")
    dr, dc = box[0] - w[0], box[1] - w[1]
    return fine[k * dr: k * (dr + box[2] - box[0]), k * dc: k * (dc + box[3] - box[1])]


# ---------------------------------------------------------------------------- evaluate


def evaluate(
    ws: EvalData,
    upscalers: Sequence[Upscaler],
    options: EvalOptions | None = None,
    *,
    truth: Callable[[tuple[int, int, int, int], int], np.ndarray] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Score ``upscalers`` and bicubic on random held-out tiles of ``ws``.

    Parameters
    ----------
    ws : EvalData
        From `open_workspace`.
    upscalers : sequence of Upscaler
        The models (bicubic is added here).
    options : EvalOptions
    truth : callable, optional
        ``truth((r0, c0, r1, c1), k)`` renders the noise-free specimen for a global LR box on
        the k-times grid, in the LR grey scale (synthetic data only).
    progress : callable, optional
        ``progress(stage, done, total)``.
    """
    opt = options or EvalOptions()
    man = ws.manifest
    k = man.scale
    lr_dtype = np.dtype(man.lr_dtype)
    data_range = imaging.dtype_range(lr_dtype) or (man.lr_stats.max - man.lr_stats.min) or 1.0
    border = k if opt.border_px is None else int(opt.border_px)
    if border * 2 >= opt.tile_size:
        raise ParameterError("tile_size", f"{opt.tile_size} is too small for a {border}-px border")
    for up in upscalers:
        if up.name in ("HR", "bicubic", "truth", "LR"):
            raise DleemError(f"model name {up.name!r} is reserved; rename the model folder")
    names = [u.name for u in upscalers]
    if len(set(names)) != len(names):
        raise DleemError(f"two models share a name: {names}")
    regions = [r for r in man.regions if r.id in ws.targets]
    tiles = sample_tiles(regions, ws.masks, scale=k, tile_size=opt.tile_size,
                         n_tiles=opt.tiles, seed=opt.seed)
    fine_px = man.lr_pixel_size_fine_um
    px_um = fine_px if fine_px else 1.0

    # One global threshold, chosen on the HR tiles (all tiles, every 4th pixel).
    by_region: dict[str, list[EvalTile]] = {}
    for t in tiles:
        by_region.setdefault(t.region, []).append(t)
    hr_values = []
    for t in tiles:
        r0, c0, r1, c1 = t.fine_box
        hr_values.append(ws.targets[t.region][r0:r1:4, c0:c1:4].ravel())
    try:
        threshold = pores.choose_threshold(np.concatenate(hr_values), opt.threshold)
    except ValueError as err:
        raise DleemError(f"pore threshold: {err}") from None

    methods = [bicubic_upscaler(k), *upscalers]
    results = {n: MethodResult(n) for n in ["HR", *[m.name for m in methods]]}
    if truth is not None:
        results["truth"] = MethodResult("truth")
    gallery: list[dict[str, np.ndarray]] = []
    gallery_ids = {id(t) for t in tiles[: opt.gallery]}
    tile_index = {id(t): i for i, t in enumerate(tiles)}  # tiles are in random order
    region_by_id = {r.id: r for r in regions}
    done = 0
    for rid, rtiles in by_region.items():
        reg = region_by_id[rid]
        or0, oc0 = reg.lr_box[0], reg.lr_box[1]
        ub = (min(t.row for t in rtiles), min(t.col for t in rtiles),
              max(t.row + t.size_lr for t in rtiles), max(t.col + t.size_lr for t in rtiles))
        gbox = (or0 + ub[0], oc0 + ub[1], or0 + ub[2], oc0 + ub[3])
        fine = {}
        for m in methods:
            if progress:
                progress(f"upscaling test area of {rid} with {m.name}", 0, 1)
            fine[m.name] = _fine_over(m, ws.lr, gbox, k)
        truth_img = None
        if truth is not None:
            truth_img = np.asarray(truth(gbox, k), dtype=np.float64)
            if truth_img.shape != fine["bicubic"].shape:
                raise DleemError(f"truth renderer gave {truth_img.shape}, "
                                 f"expected {fine['bicubic'].shape}")
        for t in rtiles:
            fr0, fc0, fr1, fc1 = t.fine_box
            hr = ws.targets[rid][fr0:fr1, fc0:fc1]
            lr0, lc0 = k * ub[0], k * ub[1]
            sl = (slice(fr0 - lr0, fr1 - lr0), slice(fc0 - lc0, fc1 - lc0))
            images = {"HR": hr}
            images.update({n: f[sl] for n, f in fine.items()})
            if truth_img is not None:
                images["truth"] = truth_img[sl]
            for name, img in images.items():
                res = results[name]
                if name not in ("HR",):
                    s = metrics.score_tile(img, hr, data_range=data_range, border=border)
                    res.ssim.append(s.ssim)
                    res.psnr.append(s.psnr)
                if truth_img is not None and name not in ("truth",):
                    s = metrics.score_tile(img, images["truth"], data_range=data_range,
                                           border=border)
                    res.ssim_truth.append(s.ssim)
                    res.psnr_truth.append(s.psnr)
                mask = pores.segment(img, threshold, pores_dark=opt.pores_dark)
                ps = pores.pore_stats(mask, px_um, connectivity=opt.connectivity,
                                      min_area_px=opt.min_pore_px)
                res.porosity.append(ps.porosity)
                res.pore_count.append(ps.count)
                res.diameters_um.append(ps.diameters_um)
                if tile_index[id(t)] < opt.thickness_tiles:
                    lt = pores.local_thickness(mask)
                    sub = lt[::THICKNESS_STRIDE, ::THICKNESS_STRIDE]
                    res.thickness_um.append(sub[sub > 0] * px_um)
                res.s2.append(pores.two_point_correlation(mask))
            if id(t) in gallery_ids:
                lr_tile = np.asarray(ws.lr[or0 + t.row: or0 + t.row + t.size_lr,
                                           oc0 + t.col: oc0 + t.col + t.size_lr])
                gallery.append({"LR": lr_tile, **{n: np.asarray(v) for n, v in images.items()},
                                "_tile": t})  # type: ignore[dict-item]
            done += 1
            if progress:
                progress("scoring tiles", done, len(tiles))
    # Gallery in the random order of the tiles.
    gallery.sort(key=lambda g: tile_index[id(g["_tile"])])
    return Evaluation(
        options=opt, scale=k, fine_pixel_size_um=fine_px,
        lr_pixel_size_um=man.lr_pixel_size_um, data_range=data_range, border_px=border,
        threshold=threshold, tiles=tiles, methods=results, models=[u.name for u in upscalers],
        has_truth=truth is not None, gallery=gallery, lr_dtype=lr_dtype.name,
        provenance={"models": {u.name: u.info for u in upscalers}},
    )


# ---------------------------------------------------------------------------- summary


def _json_float(x: float | None) -> float | None:
    """JSON has no infinity: non-finite numbers become null (documented in docs/report.md)."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def summarize(ev: Evaluation) -> dict[str, Any]:
    """The per-method numbers of metrics.json (see docs/report.md for the schema)."""
    hr = ev.methods["HR"]
    hr_d, hr_t = hr.pooled_diameters(), hr.pooled_thickness()
    # Pores at least one LR pixel in area: the part of the PSD the LR image resolves.
    px = ev.fine_pixel_size_um or 1.0
    d_lr = 2.0 * math.sqrt(ev.scale**2 / math.pi) * px
    hr_big = hr_d[hr_d >= d_lr]
    hr_s2 = hr.mean_s2()
    out: dict[str, Any] = {}
    for name, res in ev.methods.items():
        d, t = res.pooled_diameters(), res.pooled_thickness()
        entry: dict[str, Any] = {
            "porosity": {"per_tile": [float(p) for p in res.porosity],
                         "median": metrics.finite_median(res.porosity),
                         "mean": float(np.mean(res.porosity)) if res.porosity else None},
            "pore_count": {"per_tile": [int(c) for c in res.pore_count],
                           "total": int(sum(res.pore_count)),
                           "median": metrics.finite_median(res.pore_count)},
            "psd_equivalent_diameter_um": {
                "n": int(d.size),
                "n_lr_resolved": int(np.count_nonzero(d >= d_lr)),
                "median": metrics.finite_median(d),
                "mean": float(d.mean()) if d.size else None,
            },
            "pore_size_function_um": {
                "median": metrics.finite_median(t),
                "mean": float(t.mean()) if t.size else None,
            },
            "two_point_correlation": [float(v) for v in res.mean_s2()],
        }
        if name != "HR":
            entry["ssim"] = {"per_tile": [_json_float(v) for v in res.ssim],
                             "median": _json_float(metrics.finite_median(res.ssim))}
            entry["psnr_db"] = {"per_tile": [_json_float(v) for v in res.psnr],
                                "median": _json_float(metrics.finite_median(res.psnr))}
            dd = pores.distribution_distances(d, hr_d)
            td = pores.distribution_distances(t, hr_t)
            s2 = res.mean_s2()
            big = pores.distribution_distances(d[d >= d_lr], hr_big)
            entry["vs_HR"] = {
                "psd_wasserstein_um": dd.wasserstein,
                "psd_ks_statistic": dd.ks_statistic,
                "psd_ks_pvalue": dd.ks_pvalue,
                "psd_min_diameter_lr_pixel_um": d_lr,
                "psd_wasserstein_um_lr_resolved": big.wasserstein,
                "psd_ks_statistic_lr_resolved": big.ks_statistic,
                "pore_size_function_wasserstein_um": td.wasserstein,
                "pore_size_function_ks_statistic": td.ks_statistic,
                "two_point_correlation_rmse": (float(np.sqrt(np.mean((s2 - hr_s2) ** 2)))
                                               if s2.size and hr_s2.size else None),
                "porosity_abs_error_median": metrics.finite_median(
                    np.abs(np.asarray(res.porosity) - np.asarray(hr.porosity))),
            }
        if res.ssim_truth:
            entry["vs_truth"] = {
                "ssim": {"per_tile": [_json_float(v) for v in res.ssim_truth],
                         "median": _json_float(metrics.finite_median(res.ssim_truth))},
                "psnr_db": {"per_tile": [_json_float(v) for v in res.psnr_truth],
                            "median": _json_float(metrics.finite_median(res.psnr_truth))},
            }
        out[name] = entry
    return out
