"""Upscale an array or a file: the checks, the run, the work store and the outputs.

- `upscale_array`: an image in memory (NumPy, zarr, dask, a torch tensor, a nested list)
  in, NumPy out.
- `upscale_file`: a file in, OME-TIFF or OME-Zarr out, streamed tile by tile with
  bounded memory, resumable, with an optional consistency map. `dleem upscale` calls it.
- `check_input`: what both refuse and what they warn about.

Every argument and the output path are checked before any work starts; a failure
during the work leaves nothing under the final name, keeps the finished tiles where
``resume`` can use them, and discards them when resuming cannot help.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError, ParameterError
from dleem.imaging import dtype_max
from dleem.io.atomic import check_output_folder, make_folder
from dleem.io.resources import free_disk
from dleem.progress import ProgressCallback, report
from dleem.upscale.tiling import MIN_TILE, Tile, TileGrid, prepare

log = logging.getLogger("dleem.upscale")

PIXEL_SIZE_TOLERANCE = 0.10
MEAN_TOLERANCE_STD = 1.5  # image mean vs training mean, in training pixel std
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: errno values after which resuming cannot help: the output cannot be written there at all.
_FINAL_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                 errno.ENAMETOOLONG}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_RESUME = "rerun with resume (dleem upscale --resume)"


# -- model and input checks -------------------------------------------------------------
def _load(model: Any, device: Any, tta: bool = False) -> Any:
    """A model folder is loaded; a loaded model is moved to ``device`` (in place); with
    ``tta`` either is averaged over the 8 flips and transposes."""
    from dleem.models import load_model, with_ensemble

    if isinstance(model, (str, PathLike)):
        model = load_model(model, device=str(device))
    return prepare(with_ensemble(model) if tta else model, device)


def _norm(model: Any) -> dict[str, Any]:
    """The model's normalisation as a dict (a `dleem.imaging.Normalization` or a mapping)."""
    norm = getattr(getattr(model, "config", None), "normalization", None)
    if hasattr(norm, "to_dict"):
        return dict(norm.to_dict())
    return dict(norm) if isinstance(norm, Mapping) else {}


def check_input(model: Any, dtype: Any, shape: tuple[int, ...], *, pixel_size_um: float | None = None,
                source: Any = "input", sample: np.ndarray | None = None) -> list[str]:
    """Refuse what cannot work, warn about what may work badly; returns the warnings.

    Errors (`InputError` naming ``source``): not 2-D; empty; an image dtype other than the
    model's ``normalization.input_dtype`` (the normalisation maps raw / dtype_max, so a
    uint16 image through a uint8 model would be 257x off-scale, and the reverse 1/257);
    NaN or Inf in ``sample`` (a float image: the network would spread them over a tile).
    Warnings: the pixel size differs from the model's LR training pixel size by > 10 %
    (the network learned features of a given size in pixels); the image's grey-level
    mean (from ``sample``) lies > 1.5 training pixel std away from the training mean.
    """
    warnings: list[str] = []
    if len(shape) != 2:
        raise InputError(source, f"expected a 2-D grey image, got shape {tuple(shape)}")
    if min(shape) < 1:
        raise InputError(source, f"empty image of shape {tuple(shape)}")
    norm = _norm(model)
    want = norm.get("input_dtype")
    have = np.dtype(dtype)
    if want is not None and np.dtype(want) != have:
        raise InputError(source, f"image dtype {have.name} does not match the model's training dtype "
                         f"{np.dtype(want).name} (intensities would be off-scale); convert the image "
                         f"or train a model on {have.name} data")
    if sample is not None and sample.dtype.kind == "f" and not np.isfinite(sample).all():
        raise InputError(source, "contains NaN or Inf values: replace them before upscaling")
    cfg = getattr(model, "config", None)
    train_px = getattr(cfg, "lr_pixel_size_um", None)
    if pixel_size_um and train_px:
        rel = abs(pixel_size_um / train_px - 1.0)
        if rel > PIXEL_SIZE_TOLERANCE:
            warnings.append(f"{source}: pixel size {pixel_size_um:.4g} µm differs by {rel:.0%} from the "
                            f"model's training LR pixel size {train_px:.4g} µm; features will not "
                            f"have the size the network learned")
    elif not pixel_size_um and train_px:
        log.info("%s: no pixel size given or in the metadata; assuming the model's %.4g µm", source, train_px)
    if sample is not None and sample.size and {"mean", "std", "dtype_max"} <= set(norm):
        mean = float(np.mean(sample, dtype=np.float64)) / float(norm["dtype_max"])
        z = abs(mean - float(norm["mean"])) / float(norm["std"])
        if z > MEAN_TOLERANCE_STD:
            warnings.append(f"{source}: mean grey level {mean:.3f} (of full scale) is {z:.1f} training std "
                            f"from the training image's {float(norm['mean']):.3f}: different contrast?")
    for w in warnings:
        log.warning("%s", w)
    return warnings


def _sample(lr: Any, grid: int = 4, size: int = 64) -> np.ndarray:
    """``grid`` x ``grid`` windows of ``size`` px spread over a (lazy) image, concatenated:
    a cheap statistic that never decodes a whole large file (a strided read would)."""
    if len(lr.shape) != 2:
        return np.empty(0)
    h, w = lr.shape
    parts = []
    for i in range(grid):
        for j in range(grid):
            y = (h - min(size, h)) * i // max(grid - 1, 1)
            x = (w - min(size, w)) * j // max(grid - 1, 1)
            parts.append(np.asarray(lr[y:y + size, x:x + size]).ravel())
    return np.concatenate(parts)


def _check_options(*, tile: Any, batch: Any, precision: Any, pixel_size_um: Any = None,
                   ngff: Any = None) -> None:
    """`ParameterError` for the first option that cannot work (before any work)."""
    for name, value, low, unit in (("tile", tile, MIN_TILE, " LR pixels"), ("batch", batch, 1, "")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ParameterError(name, f"must be an integer, got {value!r}")
        if value < low:
            raise ParameterError(name, f"must be >= {low}{unit}, got {value}")
    if precision not in PRECISIONS:
        raise ParameterError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if pixel_size_um is not None:
        try:
            value = float(pixel_size_um)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ParameterError("pixel_size_um", f"must be a finite number > 0 (µm), got {pixel_size_um!r}")
    if ngff is not None:
        from dleem.upscale.stream import NGFF_VERSIONS

        if str(ngff) not in NGFF_VERSIONS:
            raise ParameterError("ngff", f"must be one of {', '.join(NGFF_VERSIONS)}, got {ngff!r}")


def _as_image(lr: Any, model: Any) -> Any:
    """What `upscale_array` accepts, as an array with ``shape``, ``dtype`` and slicing.

    NumPy, zarr and dask arrays pass unchanged; a torch tensor becomes NumPy (on the
    CPU); a nested list or tuple has no dtype and takes the model's, if its values fit.
    """
    if hasattr(lr, "detach") and hasattr(lr, "cpu") and hasattr(lr, "numpy"):  # torch.Tensor
        return lr.detach().cpu().numpy()
    if isinstance(lr, (list, tuple)):
        x = np.asarray(lr)
        want = _norm(model).get("input_dtype")
        if want is None or x.dtype == np.dtype(want) or x.dtype.kind not in "biuf":
            return x
        dt = np.dtype(want)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            if not (np.isfinite(x).all() and (x == np.rint(x)).all()
                    and x.min(initial=0) >= info.min and x.max(initial=0) <= info.max):
                raise InputError("input", f"the list's values are not all {dt.name} grey levels "
                                 f"(the model's dtype); pass an array of that dtype")
        return x.astype(dt)
    if all(hasattr(lr, a) for a in ("shape", "dtype", "__getitem__")):
        return lr
    return np.asarray(lr)


def upscale_array(lr: Any, model: Any, *, tile: int = 256, batch: int = 4, device: str = "auto",
                  precision: str = "auto", pixel_size_um: float | None = None, tta: bool = False,
                  progress: ProgressCallback | None = None) -> np.ndarray:
    """Upscale a whole LR image held in memory or as a lazy array; returns NumPy.

    Parameters
    ----------
    lr : array-like (H, W)
        LR image in the model's input dtype: a NumPy, zarr or dask array (a dask array
        runs through `upscale_dask`), a torch tensor, or a nested list (which takes the
        model's dtype if its values fit it).
    model : str, Path or LoadedModel
        Model folder or loaded model (`dleem.models.load_model`).
    tile : int
        Core side of a tile in LR pixels (>= 16); the halo (the generator's
        receptive field) is added around it, so the result does not depend on it.
    batch : int
        Tiles per forward pass.
    device : {"auto", "cpu", "cuda", "mps"}
    precision : {"auto", "fp32", "fp16", "bf16"}
        ``auto``: fp16 on CUDA where its measured error is < 0.5 LSB of the output dtype.
    pixel_size_um : float, optional
        LR pixel size, only to warn when it differs > 10 % from the training data's.
    tta : bool
        Test-time ensemble: the mean of the model over the 8 flips and transposes
        (`dleem.models.with_ensemble`); 8 times the compute, about 1 dB more PSNR and fewer
        invented pores (benchmarks/results/small_pores.md).
    progress : callable, optional
        ``progress("upscale xK", tiles done, tiles)`` as tiles finish (not for a dask
        array); raise `dleem.errors.Cancelled` in it to stop.

    Returns
    -------
    ndarray (k*H, k*W), the input dtype.
    """
    import dask.array as da

    from dleem.upscale.distributed import upscale_dask
    from dleem.upscale.engine import resolve_device, run_tiles

    _check_options(tile=tile, batch=batch, precision=precision, pixel_size_um=pixel_size_um)
    dev = resolve_device(device)
    m = _load(model, dev, tta)
    lr = _as_image(lr, m)
    check_input(m, lr.dtype, tuple(lr.shape), pixel_size_um=pixel_size_um, sample=_sample(lr))
    if isinstance(lr, da.Array):
        return np.asarray(upscale_dask(lr, model if isinstance(model, (str, PathLike)) else m,
                                       tile=tile, device=device, tta=tta).compute())
    k = m.scale
    grid = TileGrid(tuple(lr.shape), tile, int(m.halo_lr_px))
    out = np.empty((k * lr.shape[0], k * lr.shape[1]), dtype=lr.dtype)
    stage, finished = f"upscale x{k}", [0]
    report(progress, stage, 0, len(grid))

    def sink(t: Tile, sr: np.ndarray) -> None:
        y0, _, x0, _ = t.core
        out[k * y0:k * y0 + sr.shape[0], k * x0:k * x0 + sr.shape[1]] = sr

    def on_done(t: Tile) -> None:
        finished[0] += 1
        report(progress, stage, finished[0], len(grid))

    run_tiles(lr, m, grid, sink, out_dtype=lr.dtype, batch=batch, device=dev, precision=precision,
              on_done=on_done)
    return out


# -- paths -------------------------------------------------------------------------------
def _output_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    raise InputError(path, "the output must end in .ome.tif, .tif, .tiff or .ome.zarr")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_paths(src: Path, out: Path, kind: str, cons: Path | None) -> None:
    """The output paths, before any work: not the input, of a usable kind, not a folder."""
    if _same_file(src, out):
        raise InputError(out, "the output path is the input; choose another name")
    if src.is_dir() and src.resolve() in out.resolve().parents:
        raise InputError(out, "the output is inside the input zarr; choose another place")
    if kind == "tiff" and out.is_dir():
        raise InputError(out, "is an existing folder; choose a file name for the output")
    if kind == "zarr" and out.exists() and not out.is_dir():
        raise InputError(out, "is an existing file, not an OME-Zarr folder; choose another name")
    if cons is not None:
        if _same_file(src, cons) or _same_file(out, cons):
            raise InputError(cons, "the consistency map path is the input or the output")
        if not cons.name.lower().endswith((".tif", ".tiff")):
            raise InputError(cons, "the consistency map is a TIFF: its name must end in .tif or .tiff")
        if cons.is_dir():
            raise InputError(cons, "is an existing folder; choose a file name for the consistency map")


def _warn_plain_tif(out: Path) -> None:
    name = out.name.lower()
    if name.endswith((".tif", ".tiff")) and not name.endswith((".ome.tif", ".ome.tiff")):
        log.warning("%s: Fiji's File > Open sends only names ending in .ome.tif to Bio-Formats; "
                    "this file then opens in ImageJ's own reader (level 0 only, no pyramid) or not at "
                    "all when tiled: name it %s for the pyramid and the OME metadata",
                    out, out.name[: -len(out.suffix)] + ".ome" + out.suffix)


def _check_space(out: Path, kind: str, k: int, shape: tuple[int, int], dtype: Any) -> None:
    """Warn when the output folder has less free space than the run may need: the SR
    pyramid (4/3 of level 0) in the work store, and again as the TIFF. An upper bound
    (the work store is compressed), so a warning, not a refusal."""
    level0 = k * k * int(shape[0]) * int(shape[1]) * np.dtype(dtype).itemsize
    need = level0 * 4 // 3 * (2 if kind == "tiff" else 1)
    folder, free = free_disk(out.parent)
    if free is not None and free < need:
        log.warning("%s: %.3g GB free in %s, and this run may need up to %.3g GB (%s, before "
                    "compression); it stops with 'disk full' if space runs out", out, free / 1e9,
                    folder, need / 1e9, "work store + TIFF" if kind == "tiff" else "OME-Zarr")


def _model_identity(model_dir: Any) -> dict[str, Any]:
    """What must not change between a run and its resume: the model files' size and mtime."""
    if not isinstance(model_dir, (str, PathLike)):
        return {"model": "in-memory"}
    d = Path(model_dir).resolve()
    files = {}
    for name in ("config.json", "generator.safetensors"):
        f = d / name
        if f.exists():
            st = f.stat()
            files[name] = [st.st_size, st.st_mtime_ns]
    return {"model": str(d), "model_files": files}


def _input_identity(path: Path, shape: tuple[int, int], dtype: Any) -> dict[str, Any]:
    p = path.resolve()
    st = p.stat()
    sig = [st.st_mtime_ns] if p.is_dir() else [st.st_size, st.st_mtime_ns]
    return {"input": str(p), "input_stat": sig, "input_shape": list(shape), "input_dtype": np.dtype(dtype).name}


# -- files -------------------------------------------------------------------------------
def upscale_file(
    input_path: str | PathLike[str],
    model_dir: str | PathLike[str],
    output_path: str | PathLike[str],
    *,
    tile: int = 256,
    batch: int = 4,
    device: str = "auto",
    resume: bool = False,
    consistency_path: str | PathLike[str] | None = None,
    trust_path: str | PathLike[str] | None = None,
    dask_scheduler: str | None = None,
    precision: str = "auto",
    pixel_size_um: float | None = None,
    ngff: str = "0.5",
    page: int | None = None,
    scene: int | None = None,
    channel: int | None = None,
    tta: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Upscale an LR image file into a pyramidal OME-TIFF or a multiscale OME-Zarr.

    Parameters
    ----------
    input_path : path
        LR image: TIFF (memory-mapped or read tile by tile), zarr or OME-Zarr, PNG.
    model_dir : path
        Model folder (`dleem.models.save_model`).
    output_path : path
        ``*.ome.tif`` (OME-TIFF, pyramid in SubIFDs; strips up to 16384² pixels, tiles
        above; BigTIFF only above 4 GiB; a plain ``*.tif`` gets the same file and a
        warning, since Fiji sends only ``.ome.tif`` names to Bio-Formats) or
        ``*.ome.zarr`` (OME-NGFF, see ``ngff``). Written under a temporary name and
        renamed when complete; the input is never written to.
    tile, batch, device, precision
        As in `upscale_array`.
    resume : bool
        Continue an interrupted run from its work store (``.NAME.partial.zarr`` next to
        the output), skipping finished tiles. Without it a stale work store is discarded.
        A second run writing the same output while one runs is refused.
    consistency_path : path, optional
        Also write the consistency map (float32 TIFF, LR grid) and ``*_summary.png``.
    trust_path : path, optional
        Also write the trust map (``dleem.upscale.trust``: float32 OME-TIFF of B x B LR px
        blocks, predicted RMSE and supported) and its ``.json``; needs the model folder's
        trust files and a ``tile`` that is a multiple of B.
    dask_scheduler : str, optional
        Address of a dask.distributed scheduler: tiles run on its workers (`upscale_dask`).
    pixel_size_um : float, optional
        LR pixel size in µm (finite, > 0) when the file has none (or to override it).
    ngff : {"0.5", "0.4"}
        OME-Zarr version: 0.5 (zarr v3) or 0.4 (zarr v2, for napari-ome-zarr and older zarr
        tools; stock Bio-Formats 7.3 reads neither, see docs/readers.md). Ignored for TIFF.
    page, scene, channel : int, optional
        The page of a multi-page TIFF, the scene and channel of a Zeiss CZI, as in
        `dleem.io.read_image` (needed only when the file holds several); part of what
        ``resume`` checks.
    tta : bool
        As in `upscale_array`; part of what ``resume`` checks.
    progress : callable, optional
        ``progress("upscale xK", tiles done, tiles)`` as tiles finish; raising
        `dleem.errors.Cancelled` in it stops the run: nothing under the final name, the
        work store kept for ``resume``, and `Cancelled` propagates.

    Returns
    -------
    Path of the output.
    """
    from dleem.upscale import stream
    from dleem.upscale.engine import resolve_device
    from dleem.upscale.trust import prepare_trust

    src, out = Path(input_path), Path(output_path)
    cons = Path(consistency_path) if consistency_path is not None else None
    _check_options(tile=tile, batch=batch, precision=precision, pixel_size_um=pixel_size_um, ngff=ngff)
    kind = _output_kind(out)
    _check_paths(src, out, kind, cons)
    trust = prepare_trust(trust_path, model_dir, src=src, out=out, cons=cons, tile=tile)
    plane = {"page": page, "scene": scene, "channel": channel}
    lr, px, px_source = stream.open_lazy(src, **plane)
    if pixel_size_um is not None:
        px, px_source = float(pixel_size_um), "user"
    check_output_folder(out.parent)
    if cons is not None:
        check_output_folder(cons.parent)
    if kind == "tiff":
        _warn_plain_tif(out)
    dev = resolve_device(device)
    model = _load(model_dir, dev, tta)
    check_input(model, lr.dtype, tuple(lr.shape), pixel_size_um=px, source=src, sample=_sample(lr))
    if not px:
        px = getattr(model.config, "lr_pixel_size_um", None)
    if dask_scheduler and tile < model.halo_lr_px:
        # dask blocks must be >= the overlap depth; keep them aligned with the store's chunks
        tile = -(-int(model.halo_lr_px) // MIN_TILE) * MIN_TILE
        log.info("dask: tile raised to %d LR px (>= the halo)", tile)
    _check_space(out, kind, int(model.scale), tuple(lr.shape), lr.dtype)
    for folder in (out.parent, *(() if cons is None else (cons.parent,))):
        make_folder(folder)
    work = stream.work_store_path(out)
    lock = stream.RunLock(work, out)
    try:
        lock.acquire()
    except OSError as error:
        raise DleemError(f"{out.parent}: cannot write in this folder ({error.strerror or error})") from None
    try:
        job = _Job(src=src, out=out, kind=kind, cons=cons, lr=lr, px=px, px_source=px_source,
                   model=model, model_dir=model_dir, device=dev, tile=tile, batch=batch,
                   precision=precision, dask_scheduler=dask_scheduler, work=work,
                   zarr_format=2 if (kind == "zarr" and str(ngff) == "0.4") else 3, trust=trust,
                   plane={k: v for k, v in plane.items() if v is not None}, tta=bool(tta))
        _run_job(job, resume=resume, progress=progress)
    finally:
        lock.release()
    return out


@dataclass
class _Job:
    """The checked settings of one `upscale_file` run."""

    src: Path
    out: Path
    kind: str
    cons: Path | None
    lr: Any
    px: float | None
    px_source: str
    model: Any
    model_dir: Any
    device: Any
    tile: int
    batch: int
    precision: str
    dask_scheduler: str | None
    work: Path
    zarr_format: int
    trust: Any = None  # a dleem.upscale.trust.TrustJob
    plane: dict[str, int] = field(default_factory=dict)
    tta: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.k = int(self.model.scale)
        self.halo = int(self.model.halo_lr_px)
        h, w = self.lr.shape
        self.identity = {**_input_identity(self.src, (h, w), self.lr.dtype), **_model_identity(self.model_dir),
                         "scale": self.k, "tile": self.tile, "halo_lr_px": self.halo,
                         "executor": "dask" if self.dask_scheduler else "local"}
        if self.kind == "zarr":
            self.identity["zarr_format"] = self.zarr_format
        if self.plane:  # only when chosen: stores of single-plane inputs keep their identity
            self.identity["input_plane"] = self.plane
        if self.tta:  # likewise: stores of runs without the ensemble keep theirs
            self.identity["tta"] = True


def _open_store(job: _Job, resume: bool) -> tuple[Any, set[int]]:
    from dleem.upscale import stream

    if resume and job.work.exists():
        store = stream.WorkStore.resume(job.work, job.identity)
        done = store.done()
        log.info("resuming %s: %d tiles already done", job.work, len(done))
        return store, done
    if resume:
        log.info("nothing to resume at %s: starting", job.work)
    elif job.work.exists():
        log.info("discarding the partial run %s (resume continues it)", job.work)
    h, w = job.lr.shape
    store = stream.WorkStore.create(job.work, (job.k * h, job.k * w), job.lr.dtype, job.k * job.tile,
                                    job.identity, zarr_format=job.zarr_format)
    return store, set()


def _run_job(job: _Job, *, resume: bool, progress: ProgressCallback | None) -> None:
    """Tiles into the work store, then the pyramid, metadata, consistency map and output.

    Failures: a full disk or another I/O error keeps the finished tiles and says how to
    resume; an output that cannot be written at all (permissions, read-only, a folder
    in the way) or an input found unusable mid-run is final: the work store is removed
    and resuming is not suggested. Anything else (Ctrl-C, `Cancelled`) keeps the store.
    """
    store: Any = None
    try:
        store, done = _open_store(job, resume)
        _compute(job, store, done, progress)
        _finish(job, store)
    except OSError as error:
        _close(store)
        raise _io_error(job, store, error) from None
    except InputError:
        _close(store)
        if store is not None:
            _discard(job.work)
        raise
    except BaseException:
        _close(store)
        if store is not None and _has_tiles(job.work):
            log.info("partial run kept in %s: %s to continue it", job.work, _RESUME)
        elif store is not None:
            _discard(job.work)  # nothing done: nothing to resume
        raise


def _compute(job: _Job, store: Any, done: set[int], progress: ProgressCallback | None) -> None:
    from dleem.upscale.distributed import run_dask
    from dleem.upscale.engine import run_tiles

    k = job.k
    stage = f"upscale x{k}"
    t0 = time.perf_counter()
    if job.dask_scheduler:
        info = run_dask(job.src, job.lr, job.model_dir, store, tile=job.tile, device=str(job.device),
                        address=job.dask_scheduler, done=done, progress=progress, stage=stage,
                        tta=job.tta)
    else:
        grid = TileGrid(tuple(job.lr.shape), job.tile, job.halo)
        finished = [sum(1 for i in done if 0 <= i < len(grid))]
        report(progress, stage, finished[0], len(grid))

        def sink(t: Tile, sr: np.ndarray) -> None:
            store.write_tile(t.core, sr, k)

        def on_done(t: Tile) -> None:
            store.mark_done(t.index)
            finished[0] += 1
            report(progress, stage, finished[0], len(grid))

        info = run_tiles(job.lr, job.model, grid, sink, out_dtype=job.lr.dtype, batch=job.batch,
                         device=job.device, precision=job.precision, skip=done, on_done=on_done,
                         source=job.src)
    store.close()
    job.info = info
    log.info("upscaled %d tiles in %.1f s (%s, %s)", info.get("tiles", 0), time.perf_counter() - t0,
             info.get("device"), info.get("precision"))


def _finish(job: _Job, store: Any) -> None:
    from dleem.io.atomic import atomic_write
    from dleem.upscale import stream
    from dleem.upscale.consistency import write_consistency
    from dleem.upscale.trust import model_noise, write_trust

    k, px = job.k, job.px
    sr_px = px / k if px else None
    t1 = time.perf_counter()
    levels = store.build_pyramid()
    log.info("pyramid: %d levels in %.1f s", len(levels), time.perf_counter() - t1)
    origin_lr = -(k - 1) / (2 * k)
    extra = {"sr_origin_lr_px": origin_lr, "lr_pixel_size_um": px, "pixel_size_source": job.px_source,
             "sr_pixel_size_um": sr_px, "precision": job.info.get("precision"),
             "convention": "fine pixel j has its centre at LR coordinate (j + 0.5) / k - 0.5"}
    store.write_ngff(sr_px, k, extra)
    if job.cons is not None:
        sigma = getattr(job.model.config, "lr_blur_sigma_px", None)
        if sigma is None:
            log.warning("the model config has no lr_blur_sigma_px: consistency map with area "
                        "averaging only")
            sigma = 0.0
        unit = float(_norm(job.model).get("dtype_max") or dtype_max(job.lr.dtype))
        summary = write_consistency(job.cons, levels[0], job.lr, scale=k, sigma_lr_px=float(sigma),
                                    dtype_max=unit, lr_pixel_size_um=px, noise=model_noise(job.model_dir))
        log.info("consistency map %s: RMS %.3g grey levels, 99%% |d| %.3g",
                 summary["map"], summary["rms"], summary["p99_abs"])
    if job.trust is not None:
        write_trust(job.trust, levels[0], job.lr, scale=k, tile=job.tile, lr_file=job.src, lr_pixel_size_um=px,
                    sigma_lr_px=float(getattr(job.model.config, "lr_blur_sigma_px", None) or 0.0))
    t1 = time.perf_counter()
    if job.kind == "zarr":
        stream.replace_path(job.work, job.out)
        (job.out / stream.PROGRESS_FILE).unlink(missing_ok=True)
        return
    description = {"dleem": {"scale": k, **extra, "model": job.identity.get("model"),
                             "input": str(job.src.resolve())}}
    atomic_write(job.out, lambda tmp: stream.write_ome_tiff(
        Path(tmp), levels, pixel_size_um=sr_px, description=description,
        origin_um=origin_lr * px if px else None, name=job.out.name.split(".")[0]))
    log.info("OME-TIFF written in %.1f s", time.perf_counter() - t1)
    shutil.rmtree(job.work, ignore_errors=True)


def _io_error(job: _Job, store: Any, error: OSError) -> DleemError:
    """One line for an I/O failure during the run, with advice that can work."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and Path(error.filename).name != job.out.name else ""
    kept = store is not None and _has_tiles(job.work)
    if error.errno in _FINAL_ERRNOS:
        if store is not None:
            _discard(job.work)
        return DleemError(f"{job.out}: cannot write the output{where}: {reason}")
    if store is not None and not kept:
        _discard(job.work)
    if error.errno in _FULL_ERRNOS:
        advice = (f"the finished tiles are kept in {job.work}: free space and {_RESUME}" if kept
                  else "free space and rerun")
        return DleemError(f"{job.out}: disk full while writing{where} ({reason}); {advice}")
    advice = f"the finished tiles are kept in {job.work}: {_RESUME}" if kept else "rerun"
    return DleemError(f"{job.out}: I/O error{where} ({reason}); {advice}")


def _has_tiles(work: Path) -> bool:
    """Whether a work store holds finished tiles (something ``resume`` can use)."""
    from dleem.upscale.stream import PROGRESS_FILE

    try:
        return (work / PROGRESS_FILE).stat().st_size > 0
    except OSError:
        return False


def _close(store: Any) -> None:
    if store is not None:
        try:
            store.close()
        except OSError:
            pass


def _discard(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    if work.exists():
        log.warning("could not remove the partial run %s", work)
