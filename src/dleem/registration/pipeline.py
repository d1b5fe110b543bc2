"""The register step: LR and HR files in, a workspace out.

`register_files` reads the LR image and the HR regions, places each region with
`register_region`, and writes into the workspace (`dleem.workspace.Workspace`):

- ``pairs/``: the training pairs and their manifest (`dleem.pairs.make_pairs`);
- ``qc/``: the overview and per-region QC figures (`dleem.registration.qc`);
- ``registration.json``: one entry per HR file, in input order;
- ``manifest.json``: this step under ``steps.register`` (inputs, checksums, parameters).

Databar strips are left out by cropping them from the bottom of each image: cropping
bottom rows keeps every pixel's coordinates, so the maps stay valid for the full files.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError, ParameterError, RegistrationError
from dleem.imaging import check_scale, default_scale
from dleem.io import SEMImage, read_image, sha256_file
from dleem.io.atomic import check_output_dir, files_under, remove_new_files, remove_stale_parts
from dleem.io.read import load_array
from dleem.pairs.manifest import RegionPair, make_pairs
from dleem.progress import ProgressCallback, report
from dleem.registration.register import RegistrationResult, register_region
from dleem.workspace import RegionRegistration, RegistrationRecord, StepRecord, Workspace

log = logging.getLogger(__name__)

#: Above this many times the fitted ratio a scale only interpolates: refused.
MAX_SCALE_OVER_RATIO = 2.0
#: Working memory per image pixel beyond the pixels: the float copies the search and the
#: refinement make.
WORK_BYTES_PER_PX = 16
#: A scale this much above the fitted ratio gets a warning (the targets are interpolated).
WARN_SCALE_OVER_RATIO = 1.05


def _image_part(image: SEMImage, mask_databar: bool) -> tuple[Any, int]:
    """The image without its databar rows (cropping the bottom keeps coordinates)."""
    rows = int(image.databar_rows or 0) if mask_databar else 0
    if rows and rows < image.shape[0]:
        return image.data[: image.shape[0] - rows], rows
    return image.data, 0


def nominal_ratio(lr: SEMImage, hr: SEMImage, ratio: float | None, hr_path: Path) -> tuple[float, str]:
    """The LR / HR pixel-size ratio to start from, and where it came from."""
    if ratio is not None:
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


def _check_parameters(ratio: float | None, scale: int | None, robust: str | None,
                      pixel_sizes: dict[str, float | None], max_iterations: int) -> None:
    """Refuse bad parameter values before any file is read."""
    if ratio is not None and not (math.isfinite(ratio) and ratio > 1.0):
        raise ParameterError("ratio", f"must be > 1 (LR pixel size / HR pixel size), got {ratio}")
    if scale is not None:
        check_scale(scale, "scale")
    if robust not in (None, "huber", "tukey"):
        raise ParameterError("robust", f"must be huber or tukey, got {robust!r}")
    for name, value in pixel_sizes.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ParameterError(name, f"must be a pixel size in µm > 0, got {value}")
    if max_iterations < 1:
        raise ParameterError("max_iterations", f"must be >= 1, got {max_iterations}")


def _hr_advice(message: str) -> str:
    """dleem.io's advice names --page, --scene, --channel; for an HR file they are --hr-*."""
    for name in ("page", "scene", "channel"):
        message = message.replace(f"(--{name} N", f"(--hr-{name} N")
    return message


def _check_scale_against_ratio(scale: int, ratio: float) -> None:
    """A scale far above the measured ratio invents resolution by interpolation."""
    if scale > MAX_SCALE_OVER_RATIO * ratio:
        raise ParameterError("scale", f"{scale} is more than {MAX_SCALE_OVER_RATIO:g} times the "
                             f"fitted ratio {ratio:.3f}: the HR targets would only be interpolated")
    if scale > WARN_SCALE_OVER_RATIO * ratio:
        log.warning("scale %d is above the fitted ratio %.3f: the HR targets are interpolated "
                    "%.2f times beyond the HR pixel size", scale, ratio, scale / ratio)


def register_files(
    lr_path: str | PathLike[str],
    hr_paths: Sequence[str | PathLike[str]],
    workspace: Workspace | str | PathLike[str],
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
    lr_page: int | None = None,
    lr_scene: int | None = None,
    lr_channel: int | None = None,
    hr_page: int | None = None,
    hr_scene: int | None = None,
    hr_channel: int | None = None,
    register: Callable[..., RegistrationResult] | None = None,
    progress: ProgressCallback | None = None,
) -> RegistrationRecord:
    """Register HR regions into an LR image and write the workspace.

    Parameters
    ----------
    lr_path : the LR image of the whole area.
    hr_paths : the HR images, each one region of the LR area.
    workspace : output folder (created).
    ratio : nominal LR pixel size / HR pixel size (> 1), refined by the registration;
        default from the files' pixel sizes.
    scale : integer k (2..8) of the training pairs; default ``clamp(round(ratio), 2, 8)`` of
        the first registered region. Warned about above the fitted ratio, refused above twice it.
    rotation_search : search rotations to ±45° instead of ±10°.
    keep_going : a region that cannot be placed is skipped with a warning (status
        "skipped", ``hr_to_lr: null``) instead of stopping with an error.
    robust : "huber" or "tukey" weights in the refinement (charging, dust).
    pixel_size_lr_um, pixel_size_hr_um : override the files' pixel sizes (µm).
    mask_databar : leave the detected databar rows of every image out.
    seed : seeds the placement of the train / validation / test areas.
    split_fractions, guard_lr_px, split_layout : see `dleem.pairs.split_boxes`.
    lr_page, lr_scene, lr_channel : the page of a multi-page LR TIFF, and the scene and
        channel of an LR Zeiss CZI (`dleem.io.read_image`'s ``page``, ``scene``, ``channel``),
        needed only when the file holds several.
    hr_page, hr_scene, hr_channel : the same for every HR file.
    register : the registration function; default `register_region`.
    progress : ``progress(stage, done, total)``; raise `dleem.errors.Cancelled` in it to stop.

    Returns
    -------
    The content of ``registration.json``.

    Raises
    ------
    RegistrationError
        Naming the HR file, when a region cannot be placed and `keep_going` is False.
    InputError
        An image that does not fit in memory, or a float image with NaN or Inf.
    """
    _check_parameters(ratio, scale, robust, {"pixel_size_lr_um": pixel_size_lr_um,
                                             "pixel_size_hr_um": pixel_size_hr_um}, max_iterations)
    if not hr_paths:
        raise DleemError("give at least one HR image")
    register = register or register_region
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    lr_path = Path(lr_path).resolve()
    hr_paths = [Path(p).resolve() for p in hr_paths]
    ws.check_not_output([lr_path, *hr_paths])
    check_output_dir(ws.path, "workspace")
    remove_stale_parts(ws.path, ws.qc_dir, ws.pairs_dir)

    lr_image = read_image(lr_path, pixel_size_um=pixel_size_lr_um, databar="detect",
                          page=lr_page, scene=lr_scene, channel=lr_channel)
    lr_data, lr_databar = _image_part(lr_image, mask_databar)
    lr_array = load_array(lr_data, lr_path, what="the LR map", working_bytes_per_px=WORK_BYTES_PER_PX)
    t_start = time.perf_counter()

    entries: list[RegionRegistration] = []
    placed: list[tuple[int, SEMImage, np.ndarray, RegistrationResult]] = []
    for index, hr_path in enumerate(hr_paths):
        report(progress, "register", index, len(hr_paths))
        try:
            hr_image = read_image(hr_path, pixel_size_um=pixel_size_hr_um, databar="detect",
                                  page=hr_page, scene=hr_scene, channel=hr_channel)
            nominal, source = nominal_ratio(lr_image, hr_image, ratio, hr_path)
            hr_data, hr_databar = _image_part(hr_image, mask_databar)
            hr_array = load_array(hr_data, hr_path, what="an HR region",
                                  working_bytes_per_px=WORK_BYTES_PER_PX)
            result = register(lr_array, hr_array, nominal, rotation_search=rotation_search,
                              robust=robust, max_iterations=max_iterations)
        except DleemError as error:
            message = _hr_advice(error.problem if isinstance(error, InputError)
                                 and error.source == str(hr_path) else str(error))
            if not keep_going:
                raise RegistrationError(f"{hr_path}: {message}") from error
            log.warning("%s: skipped: %s", hr_path, message)
            entries.append(RegionRegistration(file=str(hr_path), status="skipped", message=message))
            continue
        entries.append(result.to_record(
            str(hr_path), ratio_source=source, hr_shape=hr_image.shape,
            hr_pixel_size_um=hr_image.pixel_size_um, hr_pixel_size_source=hr_image.pixel_size_source,
            hr_databar_rows=hr_databar, noise_model=result.noise_model(lr_array)))
        placed.append((index, hr_image, hr_array, result))
    report(progress, "register", len(hr_paths), len(hr_paths))

    record = RegistrationRecord(
        lr_file=str(lr_path), lr_shape=lr_image.shape, lr_dtype=np.dtype(lr_image.dtype).name,
        lr_pixel_size_um=lr_image.pixel_size_um, lr_pixel_size_source=lr_image.pixel_size_source,
        lr_databar_rows=lr_databar, rotation_search=rotation_search, robust=robust,
        seconds=round(time.perf_counter() - t_start, 3), regions=entries,
    )
    if not placed:
        ws.path.mkdir(parents=True, exist_ok=True)
        ws.write_registration(record)
        raise RegistrationError("no HR region could be placed in the LR image (see registration.json)")

    lr_sha = sha256_file(lr_path)
    region_pairs = [_region_pair(index, hr_paths[index], hr_image, hr_array, entries[index], lr_image)
                    for index, hr_image, hr_array, _ in placed]
    k = check_scale(scale, "scale") if scale is not None else default_scale(region_pairs[0].ratio or 1.0)
    _check_scale_against_ratio(k, float(np.median([p.ratio for p in region_pairs])))

    existing = files_under(ws.path)
    try:
        manifest = None
        if pairs:
            blurs = [e.blur_sigma_lr_px for e in entries if e.ok and e.blur_sigma_lr_px is not None]
            manifest = make_pairs(
                lr_array, region_pairs, ws, scale=k, lr_file=str(lr_path), lr_sha256=lr_sha,
                lr_pixel_size_um=lr_image.pixel_size_um,
                lr_blur_sigma_px=float(np.median(blurs)) if blurs else None,
                lr_shape=lr_image.shape, lr_databar_rows=lr_databar,
                lr_plane={"page": lr_page, "scene": lr_scene, "channel": lr_channel},
                fractions=split_fractions, guard=guard_lr_px, layout=split_layout, seed=seed,
                skip_unusable=keep_going, progress=progress,
            )
        if qc:
            from dleem.registration.qc import write_qc_figures

            done = [0]

            def advance() -> None:
                done[0] += 1
                report(progress, "QC figures", done[0], len(placed) + 1)

            write_qc_figures(ws, lr_array, record, [(i, res) for i, _, _, res in placed], manifest,
                             progress=advance)
        ws.write_registration(record)
        ws.record_step("register", StepRecord(
            inputs={"lr": {"file": str(lr_path), "sha256": lr_sha},
                    "hr": [{"file": p.hr_file, "sha256": p.hr_sha256} for p in region_pairs]
                    + [{"file": e.file, "sha256": None} for e in entries if not e.ok]},
            parameters={
                "ratio": ratio, "scale": k, "rotation_search": rotation_search,
                "keep_going": keep_going, "robust": robust,
                "pixel_size_lr_um": pixel_size_lr_um, "pixel_size_hr_um": pixel_size_hr_um,
                "mask_databar": mask_databar, "seed": seed,
                "split_fractions": list(split_fractions), "guard_lr_px": guard_lr_px,
                "split_layout": split_layout, "max_iterations": max_iterations,
                "lr_page": lr_page, "lr_scene": lr_scene, "lr_channel": lr_channel,
                "hr_page": hr_page, "hr_scene": hr_scene, "hr_channel": hr_channel,
            },
            outputs=[Workspace.REGISTRATION, f"{Workspace.PAIRS}/{Workspace.MANIFEST}", f"{Workspace.QC}/"],
            seconds=round(time.perf_counter() - t_start, 3),
        ))
    except BaseException:
        remove_new_files(ws.path, existing)  # a failed step leaves no half workspace
        raise
    return record


def _region_pair(index: int, hr_path: Path, hr_image: SEMImage, hr_array: np.ndarray,
                 entry: RegionRegistration, lr_image: SEMImage) -> RegionPair:
    """What the pairs need of one placed region; its id is its input position (stable)."""
    hr_px = hr_image.pixel_size_um
    if hr_px is None and lr_image.pixel_size_um and entry.ratio:
        hr_px = lr_image.pixel_size_um / entry.ratio
    return RegionPair(
        id=f"HR_{index + 1}", hr=hr_array, hr_to_lr=entry.hr_to_lr,  # type: ignore[arg-type]
        gain=float(entry.gain), offset=float(entry.offset),  # type: ignore[arg-type]
        hr_file=str(hr_path), hr_sha256=sha256_file(hr_path), hr_pixel_size_um=hr_px,
        ratio=entry.ratio,
        quality={"ncc_peak": entry.ncc_peak, "ncc_distinctness": entry.ncc_distinctness,
                 "residual": entry.residual, "iterations": entry.iterations,
                 "blur_sigma_lr_px": entry.blur_sigma_lr_px, "uncertainty": entry.uncertainty,
                 "rotation_deg": entry.rotation_deg},
    )
