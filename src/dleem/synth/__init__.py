"""Synthetic SEM acquisitions of a procedural sandstone, with an exact ground truth.

The built-in default data of dleem. One call writes what a microscope would: an LR map
of the whole area and HR regions inside it (OME-TIFFs with the pixel size), plus
``truth.json`` with the exact HR -> LR affine map of every region and everything
needed to re-render the noise-free specimen anywhere::

    from dleem.synth import SynthParams, generate, render_truth
    result = generate("synthetic", SynthParams(seed=1, ratio=4.17))
    truth = result.truth                       # the dict written to truth.json
    target = render_truth("synthetic/truth.json", lr_box=(100, 200, 164, 264), scale=4)

Conventions (as everywhere in dleem): x = column, y = row, pixel centres on integers;
``regions[i]["hr_to_lr"]`` maps HR pixel (x, y, 1) to LR pixel coordinates.

Grey scales: an image's value (fraction of full scale) is ``offset + gain * S`` with S
the BSE signal (0-1) of the specimen blurred by that image's beam; DN = value * (2**bits - 1).
`render_truth` returns the specimen in the **LR** grey scale (LR gain and offset),
without noise, as float32 DN.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dleem.errors import DleemError, InputError, ParameterError
from dleem.io.atomic import write_json
from dleem.synth.acquisition import (
    RegionSpec,
    SynthParams,
    acquire,
    add_databar,
    hr_pixel_to_phys,
    lr_pixel_to_phys,
    plan_regions,
    specimen_extent,
)
from dleem.synth.region import acquire_region
from dleem.synth.specimen import Specimen, SpecimenParams, build_specimen, render

__all__ = [
    "acquire_region",
    "SpecimenParams",
    "SynthParams",
    "SynthResult",
    "generate",
    "load_truth",
    "render_truth",
    "render_image",
    "specimen_from_truth",
    "render_specimen",
]

log = logging.getLogger(__name__)
TRUTH_VERSION = 1


@dataclass
class SynthResult:
    """What `generate` made: images (NumPy), the truth dict and the files written."""

    lr: np.ndarray
    hr: list[np.ndarray]
    truth: dict
    files: list[Path] = field(default_factory=list)


def generate(
    out_dir: str | PathLike[str] | None = None,
    params: SynthParams | None = None,
    *,
    force: bool = False,
    **overrides: Any,
) -> SynthResult:
    """Simulate an LR map and HR regions of a procedural sandstone.

    Parameters
    ----------
    out_dir : path, optional
        Folder to write ``LR.tif``, ``HR_1.tif`` ... and ``truth.json`` into (created);
        None: return the arrays only.
    params : SynthParams, optional
        All parameters (defaults: ratio 4, LR 2048 px at 0.5 µm, two 1024 px HR regions).
    force : bool
        Overwrite the ``LR.tif``, ``HR_i.tif`` and ``truth.json`` already in `out_dir`
        (refused without it).
    **overrides
        Fields of `SynthParams` to change, e.g. ``seed=3, ratio=6.5``.

    Returns
    -------
    SynthResult

    Raises
    ------
    ParameterError
        A value that is not a finite number, or out of its range; images that would not
        fit in the available memory or on the disk (checked before any work).
    InputError
        `out_dir` is a file, cannot be written, or already holds the files (no `force`).
    """
    params = SynthParams.from_dict({**(params or SynthParams()).to_dict(), **overrides})
    check_numbers(params)
    params.validate()
    _check_size(params, None if out_dir is None else Path(out_dir))
    if out_dir is not None:
        _check_output(Path(out_dir), params, force)
    with _Progress(params) as bar:
        return _generate(out_dir, params, bar)


#: Above this many detected electrons per pixel no SEM image exists (and Poisson sampling fails).
MAX_DOSE = 1e9
#: Bytes per rendered pixel while an image is made: the float64 signal, its fine-grid
#: supersampling tile, the noisy copy.
RENDER_BYTES_PER_PX = 24


def check_numbers(params: SynthParams) -> None:
    """Refuse every number that is not finite, or outside its range, before any work."""
    def finite(name: str, value: Any) -> None:
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParameterError(name, f"must be a finite number, got {value!r}")

    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None or isinstance(value, (bool, str)) or f.name == "specimen":
            continue
        finite(f.name, value)
    for f in dataclasses.fields(params.specimen):
        value = getattr(params.specimen, f.name)
        if isinstance(value, dict):
            for key, v in value.items():
                finite(f"specimen.{f.name}.{key}", v)
        elif value is not None and not isinstance(value, (bool, str)):
            finite(f"specimen.{f.name}", value)
    for name in ("lr_dose", "hr_dose"):
        if not 0 < getattr(params, name) <= MAX_DOSE:
            raise ParameterError(name, f"must be > 0 and at most {MAX_DOSE:g} electrons per pixel, "
                                       f"got {getattr(params, name)}")
    for name in ("read_noise", "line_noise", "charging", "jitter", "databar_rows"):
        if getattr(params, name) < 0:
            raise ParameterError(name, f"must be >= 0, got {getattr(params, name)}")
    if not params.specimen.grain_size_um > 0:
        raise ParameterError("specimen.grain_size_um", f"must be > 0, got {params.specimen.grain_size_um}")


def _check_size(params: SynthParams, out: Path | None) -> None:
    """The images must fit in memory while rendered, and on the disk once written."""
    from dleem.io.resources import check_disk, check_memory

    rows, cols = params.lr_shape_
    hr_rows, hr_cols = params.hr_shape_
    largest = max(rows * cols, hr_rows * hr_cols)
    where = out if out is not None else "synth"
    check_memory(where, largest * RENDER_BYTES_PER_PX, f"images of {rows} x {cols} px (LR) and "
                 f"{hr_rows} x {hr_cols} px (HR)", "choose a smaller LR or HR size")
    if out is not None:
        nbytes = (rows * cols + params.regions * hr_rows * hr_cols) * params.bits // 8
        check_disk(out, nbytes, f"{1 + params.regions} images", "choose a smaller size or another folder")


def _output_names(params: SynthParams) -> list[str]:
    return ["LR.tif", *(f"HR_{i + 1}.tif" for i in range(params.regions)), "truth.json"]


def _extra_regions(out: Path, params: SynthParams) -> list[str]:
    """HR files of an earlier, larger synth in ``out``: left beside the new truth.json they
    would pass for regions of this specimen (the demo globs ``HR_*.tif``)."""
    found = [p.name for p in out.glob("HR_*.tif") if p.stem[3:].isdigit()]
    return sorted((n for n in found if int(n[3:-4]) > params.regions), key=lambda n: int(n[3:-4]))


def _check_output(out: Path, params: SynthParams, force: bool) -> None:
    """A folder that can be written, holding no earlier LR/HR/truth unless ``force``."""
    from dleem.io.atomic import check_output_dir, remove_stale_parts

    check_output_dir(out, "synth output")
    if not out.is_dir():
        return
    remove_stale_parts(out)
    there = [name for name in _output_names(params) if (out / name).exists()]
    there += _extra_regions(out, params)
    folders = [name for name in there if (out / name).is_dir()]
    if folders:
        raise InputError(out / folders[0], "is a folder where synth writes a file; choose another folder")
    if there and not force:
        raise InputError(out, f"already holds {', '.join(there)}; choose another folder, or force "
                              "(--force) to overwrite them")


class _Progress:
    """Progress over the rendered pixels (LR then HR), on the shared display."""

    def __init__(self, params: SynthParams) -> None:
        from dleem.progress import make_progress

        rows, cols = params.lr_shape_
        hr_rows, hr_cols = params.hr_shape_
        self.total = rows * cols + params.regions * hr_rows * hr_cols
        self.bar = make_progress()
        self.task = None

    def __enter__(self) -> _Progress:
        from rich.errors import LiveError

        try:
            self.bar.__enter__()
        except LiveError:  # a caller's display is already live: stay quiet
            self.bar = None
            return self
        self.task = self.bar.add_task("synth: rendering", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=n)


def _generate(out_dir: str | PathLike[str] | None, params: SynthParams, bar: _Progress) -> SynthResult:
    t0 = time.perf_counter()
    regions = plan_regions(params)
    spec = build_specimen(params.specimen, params.seed, specimen_extent(params))
    log.debug("synth: specimen of %d grains in %.1f s", spec.n_grains, time.perf_counter() - t0)
    t0 = time.perf_counter()
    lr_sig = render(spec, lr_pixel_to_phys(params), params.lr_shape_,
                    blur_sigma_px=params.lr_blur_sigma_px, supersample=params.lr_supersample,
                    on_tile=bar.advance)
    log.debug("synth: LR rendered in %.1f s", time.perf_counter() - t0)
    lr = acquire(lr_sig, dose=params.lr_dose, gain=params.lr_gain, offset=params.lr_offset,
                 bits=params.bits, noise=params.noise, read_noise=params.read_noise,
                 line_noise=params.line_noise, charging=params.charging,
                 rng=np.random.default_rng([params.seed, 7500]))
    del lr_sig
    log.debug("synth: LR acquired in %.1f s", time.perf_counter() - t0)
    t0 = time.perf_counter()
    hrs = []
    for i, reg in enumerate(regions):
        sig = render(spec, reg.hr_to_phys, reg.shape, blur_sigma_px=reg.blur_sigma_px,
                     supersample=params.hr_supersample, on_tile=bar.advance)
        hrs.append(acquire(sig, dose=reg.dose, gain=reg.gain, offset=reg.offset,
                           bits=params.bits, noise=params.noise, read_noise=params.read_noise,
                           line_noise=params.line_noise, charging=params.charging,
                           rng=np.random.default_rng([params.seed, 7501 + i])))
    if params.databar_rows > 0:
        hfw = params.lr_shape_[1] * params.lr_pixel_size_um
        lr = add_databar(lr, params.databar_rows, _databar_text(hfw, "LR"))
        hrs = [add_databar(h, params.databar_rows,
                           _databar_text(h.shape[1] * r.pixel_size_um, r.file))
               for h, r in zip(hrs, regions, strict=True)]
    log.debug("synth: %d HR regions in %.1f s", len(hrs), time.perf_counter() - t0)
    truth = _truth_dict(params, regions, spec, lr.shape, [h.shape for h in hrs])
    files: list[Path] = []
    if out_dir is not None:
        t0 = time.perf_counter()
        files = _write_all(Path(out_dir), params, regions, lr, hrs, truth)
        log.debug("synth: written in %.1f s", time.perf_counter() - t0)
    return SynthResult(lr=lr, hr=hrs, truth=truth, files=files)


def _databar_text(hfw_um: float, name: str) -> str:
    return f"HV 15.00 kV  WD 10.0 mm  HFW {hfw_um:.1f} um  BSED  {name}  dleem synth"


def _truth_dict(
    params: SynthParams,
    regions: list[RegionSpec],
    spec: Specimen,
    lr_file_shape: tuple[int, ...],
    hr_file_shapes: list[tuple[int, ...]],
) -> dict:
    from dleem import __version__

    p_lr = params.lr_pixel_size_um
    regs = []
    for reg, shape in zip(regions, hr_file_shapes, strict=True):
        m = reg.hr_to_lr(p_lr)
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        rows, cols = reg.shape
        corners = np.array([[-0.5, -0.5, 1], [cols - 0.5, -0.5, 1],
                            [cols - 0.5, rows - 0.5, 1], [-0.5, rows - 0.5, 1]]) @ m.T
        lo = np.floor(corners.min(0) + 0.5).astype(int)
        hi = np.ceil(corners.max(0) + 0.5).astype(int)
        regs.append({
            "file": reg.file,
            "shape": [int(shape[0]), int(shape[1])],
            "image_shape": [int(rows), int(cols)],
            "pixel_size_um": reg.pixel_size_um,
            "hr_to_lr": m.tolist(),
            "lr_to_hr": inv.tolist(),
            "lr_box": [int(lo[1]), int(lo[0]), int(hi[1]), int(hi[0])],
            "centre_um": list(reg.centre_um),
            "centre_lr": [reg.centre_um[0] / p_lr, reg.centre_um[1] / p_lr],
            "rotation_deg": reg.rotation_deg,
            "scale_error": reg.scale_error,
            "shear": reg.shear,
            "drift_px": list(reg.drift_px),
            "blur_sigma_px": reg.blur_sigma_px,
            "dose": reg.dose,
            "gain": reg.gain,
            "offset": reg.offset,
            "read_noise": params.read_noise if params.noise else 0.0,
            "line_noise": params.line_noise if params.noise else 0.0,
            "databar_rows": params.databar_rows,
        })
    return {
        "version": TRUTH_VERSION,
        "generator": f"dleem.synth (dleem {__version__})",
        "seed": params.seed,
        "ratio": params.ratio,
        "lr_file": "LR.tif",
        "lr_pixel_size_um": p_lr,
        "hr_pixel_size_um": params.hr_pixel_size_um,
        "lr_shape": [int(lr_file_shape[0]), int(lr_file_shape[1])],
        "lr_image_shape": list(params.lr_shape_),
        "bits": params.bits,
        "dtype": "uint8" if params.bits == 8 else "uint16",
        "noise": params.noise,
        "lr_blur_sigma_px": params.lr_blur_sigma_px,
        "lr_dose": params.lr_dose,
        "lr_gain": params.lr_gain,
        "lr_offset": params.lr_offset,
        "read_noise": params.read_noise if params.noise else 0.0,
        "line_noise": params.line_noise if params.noise else 0.0,
        "charging": params.charging if params.noise else 0.0,
        "databar_rows": params.databar_rows,
        "grey_scale": "value = offset + gain * S (S: BSE signal 0-1 of the beam-blurred "
                      "specimen, area-averaged per pixel); DN = value * (2**bits - 1)",
        "geometry": "x = column, y = row, pixel centres on integers; LR pixel (x, y) centre "
                    "at physical (p_LR x, p_LR y) um; hr_to_lr maps HR (x, y, 1) to LR (x, y)",
        "specimen": {"seed": spec.seed, "extent_um": list(spec.extent_um),
                     "n_grains": spec.n_grains, "params": spec.params.to_dict()},
        "params": params.to_dict(),
        "regions": regs,
    }


def _write_all(out: Path, params: SynthParams, regions: list[RegionSpec], lr: np.ndarray,
               hrs: list[np.ndarray], truth: dict) -> list[Path]:
    from dleem.io import write_image

    out.mkdir(parents=True, exist_ok=True)
    files = [write_image(out / "LR.tif", lr, pixel_size_um=params.lr_pixel_size_um)]
    for reg, img in zip(regions, hrs, strict=True):
        files.append(write_image(out / reg.file, img, pixel_size_um=reg.pixel_size_um))
    files.append(write_json(out / "truth.json", truth, indent=1))
    for name in _extra_regions(out, params):  # only there with force: _check_output refused
        (out / name).unlink()
    return files




# --------------------------------------------------------------------------- truth


def load_truth(truth: str | PathLike[str] | dict) -> dict:
    """Read ``truth.json`` (or pass a dict through), checking it is one of ours."""
    if isinstance(truth, dict):
        data = truth
        src = "truth"
    else:
        src = str(truth)
        try:
            data = json.loads(Path(truth).read_text())
        except FileNotFoundError:
            raise InputError(src, "no such file") from None
        except (OSError, ValueError) as e:
            raise InputError(src, f"not a readable truth.json ({e})") from None
    if not isinstance(data, dict) or "params" not in data or "regions" not in data:
        raise InputError(src, "not a dleem synth truth.json (no 'params' / 'regions')")
    return data


def specimen_from_truth(truth: str | PathLike[str] | dict) -> tuple[SynthParams, Specimen]:
    """Re-create the parameters and the specimen of a synthetic acquisition."""
    data = load_truth(truth)
    params = SynthParams.from_dict(data["params"])
    spec = build_specimen(params.specimen, data["specimen"]["seed"],
                          tuple(data["specimen"]["extent_um"]))
    return params, spec


def render_specimen(
    truth: str | PathLike[str] | dict,
    lr_pixel_coords: np.ndarray,
    shape: tuple[int, int],
    *,
    blur_um: float = 0.0,
    blur_px: float | None = None,
    supersample: int | None = None,
) -> np.ndarray:
    """Noise-free BSE signal (0-1) on any affine grid given in LR pixel coordinates.

    Parameters
    ----------
    truth : path or dict
    lr_pixel_coords : (2, 3) array
        Affine map from the output grid's pixel coordinates to LR pixel coordinates
        (e.g. a region's ``hr_to_lr``).
    shape : (rows, cols)
    blur_um : float
        Gaussian beam sigma in µm (0: the specimen with its own soft edges only).
    blur_px : float, optional
        Gaussian beam sigma in pixels of the output grid (overrides `blur_um`).
    """
    params, spec = specimen_from_truth(truth)
    m = params.lr_pixel_size_um * np.asarray(lr_pixel_coords, float).reshape(2, 3)
    p_out = math.sqrt(abs(np.linalg.det(m[:, :2])))
    sigma = blur_px if blur_px is not None else blur_um / p_out
    return render(spec, m, shape, blur_sigma_px=sigma, supersample=supersample)


def render_truth(
    truth: str | PathLike[str] | dict,
    lr_box: tuple[int, int, int, int],
    scale: int = 4,
    *,
    blur: Literal["none", "hr", "lr"] | float = "none",
    region: int = 0,
    supersample: int = 4,
) -> np.ndarray:
    """The noise-free specimen on a grid `scale` times finer than the LR grid.

    Parameters
    ----------
    truth : path to truth.json, or its dict
    lr_box : (row0, col0, row1, col1)
        Half-open window in LR pixels (may extend past the LR image; the specimen
        exists there too, up to a margin).
    scale : int
        k: fine pixel j covers LR pixel floor(j / k); its centre is at LR coordinate
        ``(j + 0.5) / k - 0.5``. Output shape ``(k (row1 - row0), k (col1 - col0))``.
    blur : "none", "hr", "lr" or float
        "none": the specimen only (its soft edges, no beam) - the ideal target;
        "hr": convolved with HR region `region`'s beam (what a perfect, noise-free HR
        acquisition resampled onto this grid shows); "lr": with the LR beam; a float:
        a Gaussian sigma in µm.
    region : int
        Which region's beam for ``blur="hr"``.
    supersample : int
        Point samples per fine pixel per axis (area integration).

    Returns
    -------
    float32 array in the LR grey scale (LR gain and offset applied, DN of the LR dtype,
    not rounded).
    """
    data = load_truth(truth)
    params = SynthParams.from_dict(data["params"])
    r0, c0, r1, c1 = (int(v) for v in lr_box)
    k = int(scale)
    if k < 1 or r1 <= r0 or c1 <= c0:
        raise DleemError(f"bad lr_box {lr_box} or scale {scale}")
    if blur == "none":
        blur_um = 0.0
    elif blur == "hr":
        reg = data["regions"][region]
        # The beam sigma is in pixels of the HR scan as it really was (scale error included).
        p_hr = data["lr_pixel_size_um"] * math.sqrt(abs(np.linalg.det(np.array(reg["hr_to_lr"])[:, :2])))
        blur_um = reg["blur_sigma_px"] * p_hr
    elif blur == "lr":
        blur_um = data["lr_blur_sigma_px"] * data["lr_pixel_size_um"]
    elif isinstance(blur, (int, float)):
        blur_um = float(blur)
    else:
        raise DleemError(f"blur must be 'none', 'hr', 'lr' or a sigma in um, got {blur!r}")
    grid = np.array([[1 / k, 0, c0 + 0.5 / k - 0.5], [0, 1 / k, r0 + 0.5 / k - 0.5]])
    sig = render_specimen(data, grid, (k * (r1 - r0), k * (c1 - c0)), blur_um=blur_um,
                          supersample=supersample)
    vmax = 2 ** params.bits - 1
    return ((params.lr_offset + params.lr_gain * sig) * vmax).astype(np.float32)


def render_image(truth: str | PathLike[str] | dict, which: str | int = "LR") -> np.ndarray:
    """Noise-free version of an image of the acquisition, in its own grey scale (float32 DN).

    `which` is ``"LR"`` or a region index (0-based). No databar.
    """
    data = load_truth(truth)
    params, spec = specimen_from_truth(data)
    vmax = 2 ** params.bits - 1
    if which == "LR":
        sig = render(spec, lr_pixel_to_phys(params), params.lr_shape_,
                     blur_sigma_px=params.lr_blur_sigma_px, supersample=params.lr_supersample)
        return ((params.lr_offset + params.lr_gain * sig) * vmax).astype(np.float32)
    reg = data["regions"][int(which)]
    m = hr_pixel_to_phys(tuple(reg["image_shape"]), reg["pixel_size_um"], tuple(reg["centre_um"]),
                         reg["rotation_deg"], reg["scale_error"], reg["shear"],
                         tuple(reg["drift_px"]))
    sig = render(spec, m, tuple(reg["image_shape"]), blur_sigma_px=reg["blur_sigma_px"],
                 supersample=params.hr_supersample)
    return ((reg["offset"] + reg["gain"] * sig) * vmax).astype(np.float32)
