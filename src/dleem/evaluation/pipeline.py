"""The file-level evaluation steps: `evaluate_workspace` (`dleem evaluate`) and
`crossval_workspace` (`dleem crossval`).

`evaluate_workspace` opens the workspace, scores the models and bicubic on the independent
tiles of the test areas, reads the cross-validated estimate where there is one, gathers what
the report shows (registration, overview, consistency map, training curves, imaging time)
and writes ``WORKSPACE/report/``. `crossval_workspace` trains one model per fold
(`dleem.evaluation.crossval`), scores it on the held-out area and writes
``WORKSPACE/crossval/crossval.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError
from dleem.evaluation import crossval as cv
from dleem.evaluation.evaluate import (
    EvalData,
    EvalOptions,
    Upscaler,
    evaluate,
    evaluated_regions,
    hr_threshold,
    model_upscaler,
    open_workspace,
    summarize,
)
from dleem.evaluation.report import ReportInputs, write_report
from dleem.evaluation.sampling import sample_tiles
from dleem.progress import ProgressCallback
from dleem.workspace import CrossvalFold, CrossvalRecord, StepRecord, Workspace

log = logging.getLogger(__name__)

OVERVIEW_SIDE = 1200


def _strided(data: Any, max_side: int = OVERVIEW_SIDE) -> tuple[np.ndarray, int]:
    """A strided view of a (possibly lazy) 2-D image, at most ``max_side`` px a side."""
    step = max(1, int(math.ceil(max(data.shape[:2]) / max_side)))
    return np.asarray(data[::step, ::step]), step


def find_dwell_times(ws: EvalData) -> tuple[dict[str, float], str]:
    """Dwell times (µs per pixel) from the images' metadata, where every image has one."""
    from dleem.io import read_image

    def dwell_of(path: str | None, read: Any = read_image) -> float | None:
        if not path or not Path(path).is_file():
            return None
        try:
            meta = getattr(read(path), "metadata", None) or {}
        except Exception:  # noqa: BLE001 - metadata is optional
            return None
        found: list[float] = []

        def walk(obj: Any) -> None:
            if isinstance(obj, dict):
                for key, value in obj.items():
                    if "dwell" in str(key).lower():
                        try:
                            found.append(float(value))
                        except (TypeError, ValueError):
                            pass
                    walk(value)

        walk(meta)
        if not found:
            return None
        value = found[0]
        return value * 1e6 if value < 1e-2 else None  # FEI/Thermo write seconds

    out: dict[str, float] = {}
    lr = dwell_of(ws.manifest.lr_file, lambda _: ws.manifest.read_lr(lazy=True))
    if lr is None:
        return {}, "assumed equal dwell time per pixel (no dwell time in the LR metadata)"
    out["LR"] = lr
    for r in ws.manifest.regions:
        d = dwell_of(r.hr_file)
        if d is None:
            return {}, (f"assumed equal dwell time per pixel (no dwell time in {r.hr_file})")
        out[r.id] = d
    out["HR_full"] = max(out[r.id] for r in ws.manifest.regions)
    return out, "dwell times in the image metadata (whole area at HR: the HR regions' dwell)"


def truth_renderer(truth_json: Path) -> Callable[[tuple[int, int, int, int], int], np.ndarray]:
    """The synthetic truth for a global LR box on the k-times grid (HR beam, no noise)."""
    from dleem.synth import load_truth, render_truth

    truth = load_truth(truth_json)

    def render(box: tuple[int, int, int, int], k: int) -> np.ndarray:
        return render_truth(truth, box, k, blur="hr")

    return render


def evaluate_workspace(
    workspace: Workspace | str | PathLike[str],
    models: Sequence[str | PathLike[str]] | Sequence[Upscaler],
    options: EvalOptions | None = None,
    *,
    sr_path: str | PathLike[str] | None = None,
    sr_model: str | None = None,
    consistency_path: str | PathLike[str] | None = None,
    use_truth: bool = True,
    device: str = "cpu",
    command: str | None = None,
    timings_s: dict[str, float] | None = None,
    progress: ProgressCallback | None = None,
    out_dir: str | PathLike[str] | None = None,
    crossval_path: str | PathLike[str] | None = None,
    lr_plane: dict[str, int | None] | None = None,
) -> Path:
    """Evaluate model folders on a workspace and write its report; returns index.html.

    Parameters
    ----------
    workspace : path
        Folder with ``pairs/manifest.json`` (and ``registration.json``, ``qc/``).
    models : paths of model folders, or `Upscaler` objects
    options : EvalOptions
        Tiles, tile size, seed, pore settings.
    sr_path, sr_model : the whole upscaled image and the model that made it (for the report).
    consistency_path : the consistency map of that upscaling (float TIFF on the LR grid).
    use_truth : score against the synthetic truth when ``truth.json`` sits beside the LR file.
    timings_s : seconds of the earlier steps, shown in the report.
    progress : ``progress(stage, done, total)``; raise `dleem.errors.Cancelled` in it to stop
        (the report is built under a temporary name, so nothing is left half-written).
    crossval_path : the cross-validation record to lead the report with (default
        ``WORKSPACE/crossval/crossval.json`` where it exists).
    lr_plane : ``page``, ``scene``, ``channel`` of a multi-page or multi-scene LR file, as
        registered (`dleem.io.read_image`).
    """
    from dleem.io import read_image

    data = open_workspace(workspace, lr_plane=lr_plane)
    ws = data.workspace
    cv_path = Path(crossval_path) if crossval_path is not None else (
        ws.crossval_json if ws.crossval_json.is_file() else None)
    crossval = ws.read_crossval(cv_path) if cv_path is not None else None
    ups: list[Upscaler] = []
    model_dirs: dict[str, Path] = {}
    for m in models:
        if isinstance(m, Upscaler):
            ups.append(m)
            if m.info.get("model_dir"):
                model_dirs[m.name] = Path(m.info["model_dir"])
        else:
            up = model_upscaler(m, device=device, pixel_size_um=data.manifest.lr_pixel_size_um,
                                tta=options.tta)
            ups.append(up)
            model_dirs[up.name] = Path(m)
    if not ups:
        raise InputError(workspace, "no model to evaluate (give --model MODEL_DIR)")
    truth = truth_renderer(data.truth_json) if (use_truth and data.truth_json) else None
    t0 = time.perf_counter()
    ev = evaluate(data, ups, options, truth=truth, progress=progress)

    inputs = ReportInputs(workspace=ws, manifest=data.manifest, model_dirs=model_dirs,
                          truth_json=data.truth_json if truth else None, command=command,
                          timings_s=dict(timings_s or {}), crossval=crossval,
                          crossval_path=cv_path)
    if ws.registration_json.is_file():
        try:
            inputs.registration = ws.read_registration()
        except DleemError as error:
            log.warning("%s; left out of the report", error)
    inputs.lr_overview, inputs.lr_overview_step = _strided(data.lr)
    if consistency_path is not None:
        cpath = Path(consistency_path)
        cimg = read_image(cpath)
        cmap, step = _strided(cimg.data)
        # The raw map is dominated by the LR shot noise; smoothing over ~2 LR px shows the
        # structure (said in the caption).
        from scipy import ndimage

        cmap = np.asarray(cmap, dtype=np.float32)
        finite = np.isfinite(cmap)
        inputs.consistency = np.where(
            finite, ndimage.gaussian_filter(np.where(finite, cmap, 0), max(0.5, 2.0 / step)),
            np.nan)
        inputs.consistency_step = step
        inputs.consistency_path = cpath
    if sr_path is not None:
        inputs.sr_path = Path(sr_path)
        inputs.sr_model = sr_model
    inputs.dwell_us, inputs.dwell_source = find_dwell_times(data)
    index = write_report(ev, inputs, out_dir)
    ws.record_step("evaluate", StepRecord(
        inputs={"models": {name: str(d) for name, d in model_dirs.items()},
                "sr": None if sr_path is None else str(sr_path),
                "consistency": None if consistency_path is None else str(consistency_path),
                "crossval": None if cv_path is None else str(cv_path)},
        parameters=dataclasses.asdict(ev.options),
        outputs=[str(index.parent)], seconds=round(time.perf_counter() - t0, 3)))
    return index


def crossval_workspace(
    workspace: Workspace | str | PathLike[str],
    train_options: Any,
    options: EvalOptions | None = None,
    *,
    folds: int = 3,
    out_dir: str | PathLike[str] | None = None,
    use_truth: bool = True,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> CrossvalRecord:
    """Cross-validate on a workspace: one model per fold, scored on the held-out area.

    Parameters
    ----------
    workspace : path or Workspace
        With ``pairs/manifest.json``.
    train_options : dleem.training.TrainOptions
        Every fold trains with these (the budget the final model gets).
    options : EvalOptions
        Tile size, cap, seed (also of the bootstrap), pore settings; ``area`` and
        ``regions`` are set per fold.
    folds : int
        Blocks of the spatial k-fold when the workspace has one region.
    out_dir : path
        Default ``WORKSPACE/crossval``: ``crossval.json`` and one model folder per fold.
    use_truth : score against the synthetic truth when ``truth.json`` sits beside the LR file.
    progress : ``progress(stage, done, total)`` of every fold's training and scoring; raise
        `dleem.errors.Cancelled` in it to stop (finished folds keep their models; crossval.json
        is written only at the end).

    Raises
    ------
    DleemError
        Before any training: no region, a held-out area too small for one tile, a threshold
        that leaves no pore in the HR, bad training options.
    """
    from dleem.training import train
    from dleem.training.trust import fold_held_out as trust_fold
    from dleem.training.trust import refit_workspace_models

    data = open_workspace(workspace)
    ws = data.workspace
    man = data.manifest
    base = options or EvalOptions()
    scheme, plan, note = cv.plan_folds(man, folds, where=str(ws.pairs_manifest_json))
    train_options = dataclasses.replace(train_options)
    train_options.validate()
    out = Path(out_dir) if out_dir is not None else ws.crossval_dir
    # Every check before the first fold trains: tiles, threshold, split of each fold.
    fold_data: list[tuple[cv.Fold, EvalData, EvalOptions]] = []
    all_tiles = []
    for fold in plan:
        if fold.block is None:
            fd, fopt = data, dataclasses.replace(base, area="all", regions=[fold.region])
        else:
            fd = dataclasses.replace(data, manifest=cv.fold_manifest(man, fold, ws))
            fopt = dataclasses.replace(base, area="test", regions=[fold.region])
        regions = evaluated_regions(fd.manifest, fd, fopt)
        all_tiles += sample_tiles(regions, fd.masks, scale=man.scale, tile_size=fopt.tile_size,
                                  n_tiles=fopt.tiles, seed=fopt.seed, area=fopt.area)
        fold_data.append((fold, fd, fopt))
    hr_threshold(data, all_tiles, base)
    truth = truth_renderer(data.truth_json) if (use_truth and data.truth_json) else None
    t0 = time.perf_counter()
    records: list[CrossvalFold] = []
    held: list[Any] = []  # each fold's held-out blocks, for the trust calibration
    for n, (fold, fd, fopt) in enumerate(fold_data, start=1):
        log.info("crossval fold %d/%d: hold out %s, train on %s", n, len(plan), fold.held_out,
                 ", ".join(fold.trained_on))
        tf = time.perf_counter()
        model_dir = out / fold.name
        if fold.block is None:
            train(ws, model_dir, train_options, regions=fold.trained_on, progress=progress)
        else:
            fold_ws = Workspace(out / f"{fold.name}-pairs")
            fold_ws.pairs_dir.mkdir(parents=True, exist_ok=True)
            fold_ws.write_pairs(fd.manifest)
            train(fold_ws, model_dir, train_options, progress=progress)
        held.append(trust_fold(fold_ws if fold.block is not None else ws, model_dir,
                               None if fold.block is not None else fold.held_out))
        up = model_upscaler(model_dir, device=device, name="model",
                            pixel_size_um=man.lr_pixel_size_um, tta=fopt.tta)
        ev = evaluate(fd, [up], fopt, truth=truth, progress=progress)
        entries = summarize(ev)
        records.append(CrossvalFold(
            held_out=fold.held_out, trained_on=fold.trained_on, model_dir=str(model_dir),
            metrics={"model": entries["model"], "bicubic": entries["bicubic"]},
            held_out_box=fold.block, seconds=round(time.perf_counter() - tf, 3)))
        if progress:
            progress("crossval folds", n, len(plan))
    refit_workspace_models(ws, held)
    record = CrossvalRecord(
        folds=records,
        estimate=cv.estimate([(f.held_out, f.metrics) for f in records], seed=base.seed),
        scheme=scheme, note=note,
        settings={"folds": len(plan), "train": train_options.to_dict(),
                  "evaluate": dataclasses.asdict(dataclasses.replace(base, regions=None)),
                  "truth": truth is not None,
                  "interval": "95 % bootstrap of the median over all held-out tiles, 2000 "
                              "seeded resamples, held-out units first, then tiles within them"})
    path = ws.write_crossval(record, out / ws.CROSSVAL_RECORD)
    ws.record_step("crossval", StepRecord(
        inputs={"pairs_manifest": str(ws.pairs_manifest_json)},
        parameters={"scheme": scheme, "folds": len(plan), "train": train_options.to_dict(),
                    "evaluate": dataclasses.asdict(dataclasses.replace(base, regions=None))},
        outputs=[str(path), *(f.model_dir for f in records)],
        seconds=round(time.perf_counter() - t0, 3)))
    return record
