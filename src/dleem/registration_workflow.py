"""The `dleem register` step as one function: files in, a workspace out.

``register_files`` reads the LR image and the HR regions, places each region with
`dleem.registration.register_region`, and writes into the workspace:

- ``registration.json``: one entry per HR file, in input order (docs/CONTRACTS.md);
- ``qc/``: the overview and per-region QC figures (`dleem.qc`);
- ``pairs/``: the training pairs and their manifest (`dleem.pairs`);
- ``manifest.json``: the workspace manifest (inputs, checksums, parameters, version).

Databar strips are left out by cropping them from the bottom of each image: cropping
bottom rows keeps every pixel's coordinates, so the maps stay valid for the full files.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError, RegistrationError
from dleem.io.atomic import write_json
from dleem.pairs import (
    RegionPair,
    as_matrix,
    default_scale,
    make_pairs,
    map_ratio,
    sha256_file,
)

log = logging.getLogger(__name__)

REGISTRATION_VERSION = 1


def jsonable(value: Any) -> Any:
    """NumPy scalars and arrays (and non-finite floats) made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _read(path: Path, pixel_size_um: float | None) -> Any:
    from dleem.io import read_image

    try:
        return read_image(path, pixel_size_um=pixel_size_um, databar="detect")
    except TypeError:  # an older read_image without databar detection
        return read_image(path, pixel_size_um=pixel_size_um)


def _image_part(image: Any, mask_databar: bool) -> tuple[Any, int]:
    """The image without its databar rows (cropping the bottom keeps coordinates)."""
    rows = int(getattr(image, "databar_rows", 0) or 0) if mask_databar else 0
    if rows and rows < image.shape[0]:
        return image.data[: image.shape[0] - rows], rows
    return image.data, 0


def nominal_ratio(
    lr: Any, hr: Any, ratio: float | None, hr_path: Path
) -> tuple[float, str]:
    """The LR / HR pixel-size ratio to start from, and where it came from."""
    if ratio is not None:
        if not ratio > 1.0:
            raise DleemError(f"--ratio must be > 1 (LR pixel size / HR pixel size), got {ratio}")
        return float(ratio), "user"
    if lr.pixel_size_um and hr.pixel_size_um:
        value = lr.pixel_size_um / hr.pixel_size_um
        if not value > 1.0:
            raise InputError(
                hr_path,
                f"pixel size {hr.pixel_size_um:g} µm is not smaller than the LR pixel size "
                f"{lr.pixel_size_um:g} µm (give --ratio or --pixel-size-lr/--pixel-size-hr)",
            )
        return float(value), "pixel_size"
    missing = "LR" if not lr.pixel_size_um else "HR"
    raise InputError(
        hr_path if missing == "HR" else lr.path,
        "no pixel size in the file's metadata: give --ratio R (LR pixel size / HR pixel size) "
        "or --pixel-size-lr and --pixel-size-hr",
    )


def _entry_ok(hr_path: Path, result: Any, ratio_source: str, hr_image: Any, databar: int) -> dict:
    hr_to_lr = as_matrix(result.hr_to_lr)
    ratio = getattr(result, "ratio", None)
    rotation = getattr(result, "rotation_deg", None)
    if ratio is None:
        ratio = map_ratio(hr_to_lr)
    return jsonable({
        "file": str(hr_path),
        "status": "ok",
        "hr_to_lr": hr_to_lr.tolist(),
        "ncc_peak": result.ncc_peak,
        "ncc_distinctness": result.ncc_distinctness,
        "residual": result.residual,
        "iterations": result.iterations,
        "blur_sigma_lr_px": result.blur_sigma_lr_px,
        "uncertainty": dict(result.uncertainty or {}),
        "gain": result.gain,
        "offset": result.offset,
        "ratio": ratio,
        "ratio_source": ratio_source,
        "rotation_deg": rotation,
        "lr_box": list(getattr(result, "lr_box", []) or []),
        "hr_shape": list(hr_image.shape),
        "hr_pixel_size_um": hr_image.pixel_size_um,
        "hr_pixel_size_source": hr_image.pixel_size_source,
        "hr_databar_rows": databar,
        "message": "",
    })


def _entry_failed(hr_path: Path, status: str, message: str) -> dict:
    return {
        "file": str(hr_path),
        "status": status,
        "hr_to_lr": None,
        "ncc_peak": None,
        "ncc_distinctness": None,
        "residual": None,
        "iterations": None,
        "blur_sigma_lr_px": None,
        "uncertainty": None,
        "gain": None,
        "offset": None,
        "ratio": None,
        "rotation_deg": None,
        "message": message,
    }


def register_files(
    lr_path: str | PathLike[str],
    hr_paths: Sequence[str | PathLike[str]],
    workspace: str | PathLike[str],
    *,
    ratio: float | None = None,
    scale: int | None = None,
    rotation_search: bool = False,
    keep_going: bool = False,
    robust: str | None = None,
    pixel_size_lr_um: float | None = None,
    pixel_size_hr_um: float | None = None,
    mask_databar: bool = True,
    seed: int | None = 0,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    guard_lr_px: int = 8,
    split_layout: str = "band",
    max_iterations: int = 50,
    qc: bool = True,
    pairs: bool = True,
    register_region: Any = None,
) -> dict[str, Any]:
    """Register HR regions into an LR image and write the workspace.

    Parameters
    ----------
    lr_path : the LR image of the whole area.
    hr_paths : the HR images, each one region of the LR area.
    workspace : output folder (created).
    ratio : nominal LR pixel size / HR pixel size (> 1), refined by the registration;
        default from the files' pixel sizes.
    scale : integer k of the training pairs; default min(8, round(ratio)) of the first
        registered region.
    rotation_search : search rotations to ±45° instead of ±10°.
    keep_going : a region that cannot be placed is skipped with a warning (status
        "skipped", ``hr_to_lr: null``) instead of stopping with an error.
    robust : "huber" or "tukey" weights in the refinement (charging, dust).
    pixel_size_lr_um, pixel_size_hr_um : override the files' pixel sizes (µm).
    mask_databar : leave the detected databar rows of every image out.
    seed : seeds the placement of the train / validation / test areas.
    split_fractions, guard_lr_px, split_layout : see `dleem.pairs.split_boxes`.
    register_region : the registration function (tests inject a known one); default
        `dleem.registration.register_region`.

    Returns
    -------
    The content of ``registration.json``.

    Raises
    ------
    RegistrationError
        Naming the HR file, when a region cannot be placed and `keep_going` is False.
    """
    from dleem import __version__
    from dleem.progress import make_progress

    if register_region is None:
        from dleem.registration import register_region
    if robust not in (None, "huber", "tukey"):
        raise DleemError(f"--robust must be huber or tukey, got {robust!r}")
    if scale is not None and not 1 <= int(scale) <= 16:
        raise DleemError(f"--scale must be an integer from 1 to 16, got {scale}")
    if not hr_paths:
        raise DleemError("give at least one HR image")
    lr_path = Path(lr_path).resolve()
    hr_paths = [Path(p).resolve() for p in hr_paths]
    workspace = Path(workspace)
    ws = workspace.resolve()
    outputs = {ws / "registration.json", ws / "manifest.json"}
    for p in [lr_path, *hr_paths]:
        if p in outputs or p.parent in (ws / "pairs", ws / "qc"):
            raise InputError(p, "an input lies where the workspace writes its outputs; choose another -o")

    lr_image = _read(lr_path, pixel_size_lr_um)
    lr_data, lr_databar = _image_part(lr_image, mask_databar)
    lr_array = np.asarray(lr_data)
    t_start = time.perf_counter()

    entries: list[dict] = []
    registered: list[tuple[int, Any, Any, Any]] = []  # (index, hr image, hr array, result)
    with make_progress() as progress:
        task = progress.add_task("register", total=len(hr_paths))
        for index, hr_path in enumerate(hr_paths):
            progress.update(task, description=f"register {hr_path.name}")
            try:
                hr_image = _read(hr_path, pixel_size_hr_um)
                nominal, source = nominal_ratio(lr_image, hr_image, ratio, hr_path)
                hr_data, hr_databar = _image_part(hr_image, mask_databar)
                hr_array = np.asarray(hr_data)
                kwargs: dict[str, Any] = {"rotation_search": rotation_search, "max_iterations": max_iterations}
                if robust is not None:
                    kwargs["robust"] = robust
                result = register_region(lr_array, hr_array, nominal, **kwargs)
            except DleemError as error:
                message = str(error)
                if isinstance(error, InputError) and error.source == str(hr_path):
                    message = error.problem
                if not keep_going:
                    raise RegistrationError(f"{hr_path}: {message}") from error
                log.warning("%s: skipped: %s", hr_path, message)
                entries.append(_entry_failed(hr_path, "skipped", message))
                progress.advance(task)
                continue
            entries.append(_entry_ok(hr_path, result, source, hr_image, hr_databar))
            registered.append((index, hr_image, hr_array, result))
            progress.advance(task)
        elapsed = time.perf_counter() - t_start

        registration = {
            "version": REGISTRATION_VERSION,
            "lr_file": str(lr_path),
            "lr_shape": list(lr_image.shape),
            "lr_dtype": np.dtype(lr_image.dtype).name,
            "lr_pixel_size_um": lr_image.pixel_size_um,
            "lr_pixel_size_source": lr_image.pixel_size_source,
            "lr_databar_rows": lr_databar,
            "rotation_search": rotation_search,
            "robust": robust,
            "dleem_version": __version__,
            "seconds": round(elapsed, 3),
            "regions": entries,
        }
        workspace.mkdir(parents=True, exist_ok=True)
        write_json(workspace / "registration.json", jsonable(registration))
        if not registered:
            raise RegistrationError("no HR region could be placed in the LR image (see registration.json)")

        lr_sha = sha256_file(lr_path)
        region_pairs = []
        for index, hr_image, hr_array, result in registered:
            entry = entries[index]
            hr_px = hr_image.pixel_size_um
            if hr_px is None and lr_image.pixel_size_um:
                hr_px = lr_image.pixel_size_um / entry["ratio"]
            region_pairs.append(RegionPair(
                id=f"HR_{index + 1}",  # by input position: stable, independent of names
                hr=hr_array,
                hr_to_lr=result.hr_to_lr,
                gain=float(result.gain),
                offset=float(result.offset),
                hr_file=str(hr_paths[index]),
                hr_sha256=sha256_file(hr_paths[index]),
                hr_pixel_size_um=hr_px,
                ratio=entry["ratio"],
                quality={key: entry[key] for key in (
                    "ncc_peak", "ncc_distinctness", "residual", "iterations",
                    "blur_sigma_lr_px", "uncertainty", "rotation_deg")},
            ))
        blurs = [e["blur_sigma_lr_px"] for e in entries if e["status"] == "ok" and e["blur_sigma_lr_px"] is not None]
        k = int(scale) if scale is not None else default_scale(region_pairs[0].ratio or 1.0)

        manifest = None
        if pairs:
            task = progress.add_task("training pairs", total=len(region_pairs))
            manifest = make_pairs(
                lr_array, region_pairs, workspace / "pairs",
                scale=k, lr_file=str(lr_path), lr_sha256=lr_sha,
                lr_pixel_size_um=lr_image.pixel_size_um,
                lr_blur_sigma_px=float(np.median(blurs)) if blurs else None,
                fractions=split_fractions, guard=guard_lr_px, layout=split_layout, seed=seed,
                skip_unusable=keep_going,
                progress=lambda: progress.advance(task),
            )
            manifest["lr_shape"] = list(lr_image.shape)
            manifest["lr_databar_rows"] = lr_databar
            write_json(workspace / "pairs" / "manifest.json", manifest)

        if qc:
            from dleem import qc as qc_figures

            task = progress.add_task("QC figures", total=len(registered) + 1)
            qc_figures.write_qc_figures(
                workspace / "qc", lr_array, registration, registered, manifest,
                pairs_dir=workspace / "pairs", pixel_size_um=lr_image.pixel_size_um,
                progress=lambda: progress.advance(task),
            )

    _write_workspace_manifest(
        workspace, lr_path, lr_sha, hr_paths, region_pairs,
        parameters={
            "ratio": ratio, "scale": k, "rotation_search": rotation_search,
            "keep_going": keep_going, "robust": robust,
            "pixel_size_lr_um": pixel_size_lr_um, "pixel_size_hr_um": pixel_size_hr_um,
            "mask_databar": mask_databar, "seed": seed,
            "split_fractions": list(split_fractions), "guard_lr_px": guard_lr_px,
            "split_layout": split_layout, "max_iterations": max_iterations,
        },
        version=__version__,
    )
    return registration


def _write_workspace_manifest(
    workspace: Path,
    lr_path: Path,
    lr_sha: str,
    hr_paths: Sequence[Path],
    region_pairs: Sequence[RegionPair],
    *,
    parameters: dict,
    version: str,
) -> None:
    """Record this step in ``WORKSPACE/manifest.json`` (other steps add their own key)."""
    path = workspace / "manifest.json"
    manifest: dict[str, Any] = {}
    if path.exists():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
    shas = {p.hr_file: p.hr_sha256 for p in region_pairs}
    manifest.setdefault("version", 1)
    manifest["dleem_version"] = version
    steps = manifest.setdefault("steps", {})
    steps["register"] = jsonable({
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dleem_version": version,
        "inputs": {
            "lr": {"file": str(lr_path), "sha256": lr_sha},
            "hr": [{"file": str(p), "sha256": shas.get(str(p)) or (sha256_file(p) if p.exists() else None)}
                   for p in hr_paths],
        },
        "parameters": parameters,
        "outputs": ["registration.json", "pairs/manifest.json", "qc/"],
    })
    write_json(path, manifest)
