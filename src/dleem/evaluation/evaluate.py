"""Evaluate upscalers on independent tiles of a workspace.

For every tile of the evaluation grid (see `dleem.evaluation.sampling`: the test boxes of
the manifest, or the whole of a held-out region) this computes, on the fine grid, SSIM and
PSNR of each method (bicubic and every model) against the registered HR target (and, on
synthetic data, against the noise-free truth), the pore statistics of each, and the pores
matched one by one against HR and truth (see `dleem.evaluation.pores`). SR is computed from
the LR image around the evaluated area with a halo of the model's receptive field, exactly
as the whole-image upscaling would see it; the training pairs are never read.

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
from dleem.evaluation import metrics, pores, stats
from dleem.evaluation.sampling import EvalTile, sample_tiles
from dleem.io import sha256_file
from dleem.progress import ProgressCallback
from dleem.workspace import PairRegion, PairsManifest, Workspace

log = logging.getLogger(__name__)

#: Tiles whose images are kept for the report's gallery, at these quantiles of HR porosity.
GALLERY_TILES = 6
#: The pore figures' tiles: these quantiles of HR porosity over all tiles of all regions.
PORE_FIGURE_QUANTILES = (0.25, 0.5, 0.75)
#: Stride of the local-thickness pixels kept for the pore-size function (memory bound).
THICKNESS_STRIDE = 2
#: The default evaluation tile side in fine px (at least 9 grid tiles in a demo test area).
TILE_SIZE = 128


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
    """What the user chose; recorded in metrics.json.

    ``tiles`` caps the grid tiles by a seeded random subset (None: all of them); ``area`` is
    "test" (the manifest's test boxes) or "all" (the whole valid area of each region: a
    held-out region in cross-validation); ``regions`` restricts the regions evaluated;
    ``tta`` scores every model averaged over the 8 flips and transposes, as
    ``dleem upscale --tta`` draws the map.
    """

    tiles: int | None = None
    tile_size: int = TILE_SIZE
    seed: int = 0
    threshold: str | float = "otsu"
    pores_dark: bool = True
    connectivity: int = 8
    min_pore_px: int = 4
    border_px: int | None = None  # None: the scale k
    gallery: int = GALLERY_TILES
    thickness_tiles: int = 50  # local thickness on this many tiles (it costs ~0.1 s a tile)
    area: str = "test"
    regions: list[str] | None = None
    tta: bool = False


@dataclass
class MethodResult:
    """Everything measured for one method, one entry per tile in the order of the tiles."""

    name: str
    ssim: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ssim_truth: list[float] = field(default_factory=list)
    psnr_truth: list[float] = field(default_factory=list)
    porosity: list[float] = field(default_factory=list)
    pore_count: list[int] = field(default_factory=list)
    diameters_um: list[np.ndarray] = field(default_factory=list)
    thickness_um: list[np.ndarray | None] = field(default_factory=list)  # None: not computed
    s2: list[np.ndarray] = field(default_factory=list)
    match_hr: list[pores.PoreMatch] = field(default_factory=list)
    match_truth: list[pores.PoreMatch] = field(default_factory=list)


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
    truth_threshold: float | None
    tiles: list[EvalTile]
    methods: dict[str, MethodResult]  # "HR", "bicubic", model names, maybe "truth"
    models: list[str]
    has_truth: bool
    gallery: list[dict[str, Any]]  # images by method, "_tile", "_index", "_quantile"
    pore_tiles: list[dict[str, Any]]
    lr_dtype: str
    regions: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def region_indices(self) -> dict[str, list[int]]:
        """Tile indices by region id, in region order."""
        out: dict[str, list[int]] = {r: [] for r in self.regions}
        for i, t in enumerate(self.tiles):
            out.setdefault(t.region, []).append(i)
        return out


# ---------------------------------------------------------------------------- inputs


def sha256_or_none(path: str | PathLike[str] | None) -> str | None:
    """SHA-256 of a file, None when there is no such file (provenance is best effort)."""
    return sha256_file(path) if path is not None and Path(path).is_file() else None


def model_upscaler(
    model_dir: str | PathLike[str], *, device: str = "cpu", tile: int = 256, batch: int = 4,
    name: str | None = None, pixel_size_um: float | None = None, tta: bool = False,
) -> Upscaler:
    """An `Upscaler` from a model folder (`dleem.models.load_model` + `dleem.upscale`);
    ``tta``: averaged over the 8 flips and transposes."""
    from dleem.models import load_model
    from dleem.upscale import upscale_array

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise InputError(model_dir, "not a model folder (no config.json)")
    model = load_model(model_dir, device="cpu" if device == "auto" else device, tta=tta)

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
        "input_dtype": cfg.normalization.input_dtype,
        "arch": dict(cfg.arch),
        "dleem_version": cfg.dleem_version,
        "tta": bool(tta),
    }
    for key in ("loss", "recipe", "adv_weight", "consistency_weight", "pore_weight", "preset", "steps_done"):
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
    and the HR targets and masks of every region."""

    workspace: Workspace
    manifest: PairsManifest
    lr: Any  # 2-D array (lazy allowed)
    targets: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    truth_json: Path | None

    @property
    def path(self) -> Path:
        return self.workspace.path


def open_workspace(workspace: Workspace | str | PathLike[str], *,
                   lr_plane: dict[str, int | None] | None = None) -> EvalData:
    """Read the pairs manifest, the whole LR image, and the HR targets and masks.

    ``lr_plane``: ``page``, ``scene``, ``channel`` of a multi-page or multi-scene LR file
    (`dleem.io.read_image`); default the plane recorded at registration.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if not ws.path.is_dir():
        raise InputError(ws.path, "workspace folder not found")
    manifest = ws.read_pairs()
    lr_file = manifest.lr_file
    if not lr_file or not Path(lr_file).is_file():
        raise InputError(lr_file or ws.pairs_manifest_json,
                         "the LR image named in the pairs manifest is missing")
    asked = {k: v for k, v in (lr_plane or {}).items() if v is not None}
    for key, value in asked.items():
        registered = (manifest.lr_plane or {}).get(key)
        if registered is not None and registered != value:
            raise InputError(lr_file, f"the workspace was registered on {key} {registered}, "
                                      f"not {value}")
    lr = manifest.read_lr(**asked).data
    if tuple(lr.shape) != tuple(manifest.lr_shape):
        raise InputError(lr_file, f"shape {tuple(lr.shape)} differs from the manifest's "
                                  f"{tuple(manifest.lr_shape)}")
    targets, masks = {}, {}
    for region in manifest.regions:
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


def hr_threshold(ws: EvalData, tiles: Sequence[EvalTile], options: EvalOptions) -> float:
    """The one global pore threshold, chosen on the HR tiles; refused when it leaves no pore.

    Raises `ParameterError` (``threshold``) when the HR tiles hold no pore pixel at it:
    porosity is then 0 and no pore statistic can be computed, so nothing is.
    """
    hr_values = [ws.targets[t.region][t.fine_box[0]:t.fine_box[2]:4,
                                      t.fine_box[1]:t.fine_box[3]:4].ravel() for t in tiles]
    try:
        threshold = pores.choose_threshold(np.concatenate(hr_values), options.threshold)
    except ValueError as err:
        raise DleemError(f"pore threshold: {err}") from None
    for t in tiles:
        r0, c0, r1, c1 = t.fine_box
        if pores.segment(ws.targets[t.region][r0:r1, c0:c1], threshold,
                         pores_dark=options.pores_dark).any():
            return threshold
    phase = "dark" if options.pores_dark else "bright"
    raise ParameterError("threshold", f"{options.threshold} ({threshold:.4g} grey levels) leaves "
                         f"no pore in the HR of the {len(tiles)} tile{'s' * (len(tiles) != 1)} "
                         f"({phase} pores): porosity "
                         "is 0 there and nothing else is computed; choose another threshold")


def quantile_picks(values: Sequence[float], quantiles: Sequence[float]) -> list[tuple[int, float]]:
    """(index, quantile) of the value nearest each quantile of ``values``, distinct indices."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    picks: list[tuple[int, float]] = []
    used: set[int] = set()
    for q in quantiles:
        rank = int(round(q * (v.size - 1)))
        for step in range(v.size):  # nearest unused rank
            for r in (rank - step, rank + step):
                if 0 <= r < v.size and int(order[r]) not in used:
                    used.add(int(order[r]))
                    picks.append((int(order[r]), float(q)))
                    break
            else:
                continue
            break
    return picks


def gallery_quantiles(n: int) -> list[float]:
    """``n`` evenly spread quantiles: (i + 0.5) / n."""
    return [(i + 0.5) / n for i in range(n)]


def _thickness_indices(n_tiles: int, n_wanted: int) -> set[int]:
    """Evenly spread tile indices (all regions) for the local thickness."""
    if n_wanted <= 0:
        return set()
    return {int(i) for i in np.linspace(0, n_tiles - 1, min(n_wanted, n_tiles)).round()}


def evaluate(
    ws: EvalData,
    upscalers: Sequence[Upscaler],
    options: EvalOptions | None = None,
    *,
    truth: Callable[[tuple[int, int, int, int], int], np.ndarray] | None = None,
    progress: ProgressCallback | None = None,
) -> Evaluation:
    """Score ``upscalers`` and bicubic on the independent tiles of ``ws``.

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
        where = up.info.get("model_dir") or up.name
        if up.info.get("scale") not in (None, k):
            raise InputError(where, f"the model upscales by {up.info['scale']}, the workspace's "
                                    f"pairs by {k}: evaluate a model trained on this workspace")
        if up.info.get("input_dtype") not in (None, man.lr_dtype):
            raise InputError(where, f"the model was trained on {up.info['input_dtype']} images, "
                                    f"the LR map {man.lr_file} is {man.lr_dtype}")
    names = [u.name for u in upscalers]
    if len(set(names)) != len(names):
        raise DleemError(f"two models share a name: {names}")
    regions = evaluated_regions(man, ws, opt)
    tiles = sample_tiles(regions, ws.masks, scale=k, tile_size=opt.tile_size,
                         n_tiles=opt.tiles, seed=opt.seed, area=opt.area)
    fine_px = man.lr_pixel_size_fine_um
    px_um = fine_px if fine_px else 1.0
    threshold = hr_threshold(ws, tiles, opt)

    # Gallery and pore figures: tiles at stated quantiles of HR porosity over all regions.
    hr_por = [pores.porosity(pores.segment(ws.targets[t.region][t.fine_box[0]:t.fine_box[2],
                                                                  t.fine_box[1]:t.fine_box[3]],
                                           threshold, pores_dark=opt.pores_dark))
              for t in tiles]
    gallery_at = quantile_picks(hr_por, gallery_quantiles(opt.gallery)) if opt.gallery > 0 else []
    pores_at = quantile_picks(hr_por, PORE_FIGURE_QUANTILES)
    keep_images = {i for i, _ in gallery_at} | {i for i, _ in pores_at}
    thick_at = _thickness_indices(len(tiles), opt.thickness_tiles)

    methods = [bicubic_upscaler(k), *upscalers]
    results = {n: MethodResult(n) for n in ["HR", *[m.name for m in methods]]}
    if truth is not None:
        results["truth"] = MethodResult("truth")
    by_region: dict[str, list[int]] = {}
    for i, t in enumerate(tiles):
        by_region.setdefault(t.region, []).append(i)

    # Upscale (and render the truth of) each region's evaluated area once.
    fine: dict[str, dict[str, np.ndarray]] = {}
    origin: dict[str, tuple[int, int]] = {}
    for rid, idx in by_region.items():
        rt = [tiles[i] for i in idx]
        gbox = (min(t.lr_box[0] for t in rt), min(t.lr_box[1] for t in rt),
                max(t.lr_box[2] for t in rt), max(t.lr_box[3] for t in rt))
        origin[rid] = (gbox[0], gbox[1])
        fine[rid] = {}
        for m in methods:
            if progress:
                progress(f"upscaling {opt.area} area of {rid} with {m.name}", 0, 1)
            fine[rid][m.name] = _fine_over(m, ws.lr, gbox, k)
        if truth is not None:
            img = np.asarray(truth(gbox, k), dtype=np.float64)
            if img.shape != fine[rid]["bicubic"].shape:
                raise DleemError(f"truth renderer gave {img.shape}, "
                                 f"expected {fine[rid]['bicubic'].shape}")
            fine[rid]["truth"] = img

    def tile_images(i: int) -> dict[str, np.ndarray]:
        t = tiles[i]
        fr0, fc0, fr1, fc1 = t.fine_box
        images = {"HR": ws.targets[t.region][fr0:fr1, fc0:fc1]}
        o0, o1 = origin[t.region]
        r0, c0 = k * (t.lr_box[0] - o0), k * (t.lr_box[1] - o1)
        sl = (slice(r0, r0 + fr1 - fr0), slice(c0, c0 + fc1 - fc0))
        images.update({n: f[sl] for n, f in fine[t.region].items()})
        return images

    truth_threshold = None
    if truth is not None:  # chosen on the truth over the area evaluated, as HR's on HR
        tv = np.concatenate([tile_images(i)["truth"][::4, ::4].ravel() for i in range(len(tiles))])
        try:
            truth_threshold = pores.choose_threshold(
                tv, opt.threshold if isinstance(opt.threshold, str) else threshold)
        except ValueError as err:
            raise DleemError(f"truth pore threshold: {err}") from None

    seg = {"connectivity": opt.connectivity, "min_area_px": opt.min_pore_px}
    kept: dict[int, dict[str, np.ndarray]] = {}
    for i in range(len(tiles)):
        images = tile_images(i)
        hr = images["HR"]
        masks = {n: pores.segment(img, threshold, pores_dark=opt.pores_dark)
                 for n, img in images.items()}
        truth_masks = ({n: pores.segment(img, truth_threshold, pores_dark=opt.pores_dark)
                        for n, img in images.items()} if truth_threshold is not None else {})
        for name, img in images.items():
            res = results[name]
            if name != "HR":
                s = metrics.score_tile(img, hr, data_range=data_range, border=border)
                res.ssim.append(s.ssim)
                res.psnr.append(s.psnr)
                res.match_hr.append(pores.match_pores(masks[name], masks["HR"], **seg))
            if truth_masks and name != "truth":
                s = metrics.score_tile(img, images["truth"], data_range=data_range, border=border)
                res.ssim_truth.append(s.ssim)
                res.psnr_truth.append(s.psnr)
                res.match_truth.append(pores.match_pores(truth_masks[name], truth_masks["truth"],
                                                         **seg))
            ps = pores.pore_stats(masks[name], px_um, **seg)
            res.porosity.append(ps.porosity)
            res.pore_count.append(ps.count)
            res.diameters_um.append(ps.diameters_um)
            if i in thick_at:
                lt = pores.local_thickness(pores.remove_edge_pores(masks[name], **seg))
                sub = lt[::THICKNESS_STRIDE, ::THICKNESS_STRIDE]
                res.thickness_um.append(sub[sub > 0] * px_um)
            else:
                res.thickness_um.append(None)
            res.s2.append(pores.two_point_correlation(masks[name]))
        if i in keep_images:
            t = tiles[i]
            lr_tile = np.asarray(ws.lr[t.lr_box[0]:t.lr_box[2], t.lr_box[1]:t.lr_box[3]])
            kept[i] = {"LR": lr_tile, **{n: np.asarray(v) for n, v in images.items()}}
        if progress:
            progress("scoring tiles", i + 1, len(tiles))

    def figure_tiles(picks: list[tuple[int, float]]) -> list[dict[str, Any]]:
        return [{**kept[i], "_tile": tiles[i], "_index": i, "_quantile": q,
                 "_porosity": hr_por[i]} for i, q in sorted(picks, key=lambda p: p[1])]

    return Evaluation(
        options=opt, scale=k, fine_pixel_size_um=fine_px,
        lr_pixel_size_um=man.lr_pixel_size_um, data_range=data_range, border_px=border,
        threshold=threshold, truth_threshold=truth_threshold, tiles=tiles, methods=results,
        models=[u.name for u in upscalers], has_truth=truth is not None,
        gallery=figure_tiles(gallery_at), pore_tiles=figure_tiles(pores_at),
        lr_dtype=lr_dtype.name, regions=[r.id for r in regions],
        provenance={"models": {u.name: u.info for u in upscalers}},
    )


def evaluated_regions(man: PairsManifest, ws: EvalData, opt: EvalOptions) -> list[PairRegion]:
    """The regions evaluated: ``opt.regions`` (or all), those with an area to evaluate."""
    chosen = list(man.regions)
    if opt.regions is not None:
        known = {r.id for r in chosen}
        for rid in opt.regions:
            if rid not in known:
                raise ParameterError("regions", f"no region {rid!r} in the pairs manifest "
                                                f"(regions: {', '.join(sorted(known))})")
        chosen = [r for r in chosen if r.id in set(opt.regions)]
    if opt.area == "test":
        chosen = [r for r in chosen if r.splits.test]
    if not chosen:
        raise InputError(ws.workspace.pairs_manifest_json,
                         "no region to evaluate (no region has a test area)")
    return chosen


# ---------------------------------------------------------------------------- summary


def _json_float(x: float | None) -> float | None:
    """JSON has no infinity: non-finite numbers become null (documented in docs/report.md)."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def _scores(values: list[float], groups: dict[str, list[int]], seed: int) -> dict[str, Any]:
    """Per-tile values, median and the region-first bootstrap interval (docs/report.md)."""
    summary = stats.median_summary({r: [values[i] for i in idx] for r, idx in groups.items()},
                                   seed=seed)
    ci = summary["ci95"]
    return {"per_tile": [_json_float(values[i]) for idx in groups.values() for i in idx],
            "median": _json_float(summary["median"]),
            "ci95": None if ci is None else [_json_float(ci[0]), _json_float(ci[1])],
            "n_tiles": summary["n_tiles"]}


def _pooled(arrays: list[np.ndarray | None], idx: list[int]) -> np.ndarray:
    parts = [arrays[i] for i in idx if arrays[i] is not None]
    return np.concatenate(parts) if parts else np.zeros(0)


def _tile_medians(arrays: list[np.ndarray], idx: list[int]) -> np.ndarray:
    return np.asarray([np.median(arrays[i]) for i in idx if arrays[i].size])


def _entry(ev: Evaluation, name: str, groups: dict[str, list[int]]) -> dict[str, Any]:
    """The statistics of one method over the tiles of ``groups`` (region id -> indices)."""
    res, hr = ev.methods[name], ev.methods["HR"]
    seed = ev.options.seed
    idx = [i for ii in groups.values() for i in ii]
    d, t = _pooled(res.diameters_um, idx), _pooled(res.thickness_um, idx)
    px = ev.fine_pixel_size_um or 1.0
    # Pores at least one LR pixel in area: the part of the PSD the LR image resolves.
    d_lr = 2.0 * math.sqrt(ev.scale**2 / math.pi) * px
    porosity = _scores(res.porosity, groups, seed)
    entry: dict[str, Any] = {
        "n_tiles": len(idx),
        "porosity": {**porosity,
                     "mean": float(np.mean([res.porosity[i] for i in idx])) if idx else None},
        "pore_count": {"per_tile": [int(res.pore_count[i]) for i in idx],
                       "total": int(sum(res.pore_count[i] for i in idx)),
                       "median": metrics.finite_median([res.pore_count[i] for i in idx])},
        "psd_equivalent_diameter_um": {
            "n": int(d.size), "n_lr_resolved": int(np.count_nonzero(d >= d_lr)),
            "median": metrics.finite_median(d), "mean": float(d.mean()) if d.size else None},
        "pore_size_function_um": {
            "median": metrics.finite_median(t), "mean": float(t.mean()) if t.size else None,
            "max": float(t.max()) if t.size else None},
        "two_point_correlation": ([float(v) for v in np.mean([res.s2[i] for i in idx], axis=0)]
                                  if idx else []),
    }
    if name == "HR":
        return entry
    entry["ssim"] = _scores(res.ssim, groups, seed)
    entry["psnr_db"] = _scores(res.psnr, groups, seed)
    hr_d, hr_t = _pooled(hr.diameters_um, idx), _pooled(hr.thickness_um, idx)
    dd = pores.distribution_distances(d, hr_d)
    td = pores.distribution_distances(t, hr_t)
    big = pores.distribution_distances(d[d >= d_lr], hr_d[hr_d >= d_lr])
    s2 = np.asarray(entry["two_point_correlation"])
    hr_s2 = np.mean([hr.s2[i] for i in idx], axis=0) if idx else np.zeros(0)
    entry["vs_HR"] = {
        "psd_wasserstein_um": dd.wasserstein,
        "psd_ks_statistic": dd.ks_statistic,
        "psd_ks_pvalue": pores.ks_pvalue(_tile_medians(res.diameters_um, idx),
                                         _tile_medians(hr.diameters_um, idx)),
        "psd_min_diameter_lr_pixel_um": d_lr,
        "psd_wasserstein_um_lr_resolved": big.wasserstein,
        "psd_ks_statistic_lr_resolved": big.ks_statistic,
        "pore_size_function_wasserstein_um": td.wasserstein,
        "pore_size_function_ks_statistic": td.ks_statistic,
        "two_point_correlation_rmse": (float(np.sqrt(np.mean((s2 - hr_s2) ** 2)))
                                       if s2.size and hr_s2.size else None),
        "porosity_abs_error_median": metrics.finite_median(
            np.abs(np.asarray([res.porosity[i] - hr.porosity[i] for i in idx]))),
        **pores.match_summary([res.match_hr[i] for i in idx], ev.scale),
    }
    if res.ssim_truth:
        entry["vs_truth"] = {
            "ssim": _scores(res.ssim_truth, groups, seed),
            "psnr_db": _scores(res.psnr_truth, groups, seed),
            **pores.match_summary([res.match_truth[i] for i in idx], ev.scale),
        }
    return entry


def summarize(ev: Evaluation) -> dict[str, Any]:
    """The per-method numbers of metrics.json (see docs/report.md for the schema): pooled
    over all regions (intervals with the region as the unit), and ``per_region``."""
    groups = {r: i for r, i in ev.region_indices().items() if i}
    out: dict[str, Any] = {}
    for name in ev.methods:
        entry = _entry(ev, name, groups)
        entry["per_region"] = {r: _entry(ev, name, {r: i}) for r, i in groups.items()}
        out[name] = entry
    return out
