"""`evaluate_workspace`: what `dleem evaluate` does, as one API call.

Opens the workspace, scores the models and bicubic on random held-out tiles, gathers what
the report shows (registration, overview, consistency map, training curves, imaging time)
and writes ``WORKSPACE/report/``.
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
from dleem.evaluation.evaluate import (
    EvalData,
    EvalOptions,
    Upscaler,
    evaluate,
    model_upscaler,
    open_workspace,
)
from dleem.evaluation.report import ReportInputs, write_report
from dleem.progress import ProgressCallback
from dleem.workspace import StepRecord, Workspace

log = logging.getLogger(__name__)

OVERVIEW_SIDE = 1200


def _strided(data: Any, max_side: int = OVERVIEW_SIDE) -> tuple[np.ndarray, int]:
    """A strided view of a (possibly lazy) 2-D image, at most ``max_side`` px a side."""
    step = max(1, int(math.ceil(max(data.shape[:2]) / max_side)))
    return np.asarray(data[::step, ::step]), step


def find_dwell_times(ws: EvalData) -> tuple[dict[str, float], str]:
    """Dwell times (µs per pixel) from the images' metadata, where every image has one."""
    from dleem.io import read_image

    def dwell_of(path: str | None) -> float | None:
        if not path or not Path(path).is_file():
            return None
        try:
            meta = getattr(read_image(path), "metadata", None) or {}
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
    lr = dwell_of(ws.manifest.lr_file)
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
    """
    from dleem.io import read_image

    data = open_workspace(workspace)
    ws = data.workspace
    ups: list[Upscaler] = []
    model_dirs: dict[str, Path] = {}
    for m in models:
        if isinstance(m, Upscaler):
            ups.append(m)
            if m.info.get("model_dir"):
                model_dirs[m.name] = Path(m.info["model_dir"])
        else:
            up = model_upscaler(m, device=device, pixel_size_um=data.manifest.lr_pixel_size_um)
            ups.append(up)
            model_dirs[up.name] = Path(m)
    if not ups:
        raise InputError(workspace, "no model to evaluate (give --model MODEL_DIR)")
    truth = truth_renderer(data.truth_json) if (use_truth and data.truth_json) else None
    t0 = time.perf_counter()
    ev = evaluate(data, ups, options, truth=truth, progress=progress)

    inputs = ReportInputs(workspace=ws, manifest=data.manifest, model_dirs=model_dirs,
                          truth_json=data.truth_json if truth else None, command=command,
                          timings_s=dict(timings_s or {}))
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
                "consistency": None if consistency_path is None else str(consistency_path)},
        parameters=dataclasses.asdict(ev.options),
        outputs=[str(index.parent)], seconds=round(time.perf_counter() - t0, 3)))
    return index
