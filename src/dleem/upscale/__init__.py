"""Upscale an LR image of any size with a trained model: seamless, streaming, resumable.

- `upscale_array`: NumPy / zarr / dask array in, NumPy array out (fits in memory).
- `upscale_dask`: dask array in, lazy dask array out (a cluster runs the tiles).
- `upscale_file`: file in, OME-TIFF or OME-Zarr out, streamed tile by tile, bounded
  memory, ``resume``, optional consistency map. `dleem upscale` calls it.

Modules: `tiling` (geometry, the tile function), `engine` (local batched execution),
`stream` (lazy input, work store, writers), `distributed` (dask), `consistency`.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError
from dleem.upscale.consistency import consistency_map, degrade, write_consistency
from dleem.upscale.distributed import upscale_dask
from dleem.upscale.tiling import MIN_TILE, Tile, TileGrid, predict, prepare

__all__ = [
    "upscale_array", "upscale_dask", "upscale_file", "check_input", "degrade", "consistency_map",
    "TileGrid", "Tile", "predict",
]

log = logging.getLogger(__name__)

PIXEL_SIZE_TOLERANCE = 0.10
MEAN_TOLERANCE_STD = 1.5  # image mean vs training mean, in training pixel std


def _load(model: Any, device: Any) -> Any:
    """A model folder is loaded; a loaded model is moved to ``device`` (in place)."""
    if isinstance(model, (str, PathLike)):
        from dleem.models import load_model

        model = load_model(model, device=str(device))
    return prepare(model, device)


def _norm(model: Any) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    norm = getattr(cfg, "normalization", None)
    return dict(norm) if isinstance(norm, dict) else {}


def check_input(model: Any, dtype: Any, shape: tuple[int, ...], *, pixel_size_um: float | None = None,
                source: Any = "input", sample: np.ndarray | None = None) -> list[str]:
    """Refuse what cannot work, warn about what may work badly; returns the warnings.

    Errors (`InputError`): not 2-D; an image dtype other than the model's
    ``normalization.input_dtype`` (the normalisation maps raw / dtype_max, so a uint16
    image through a uint8 model would be 257x off-scale, and the reverse 1/257).
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
    cfg = getattr(model, "config", None)
    train_px = getattr(cfg, "lr_pixel_size_um", None)
    if pixel_size_um and train_px:
        rel = abs(pixel_size_um / train_px - 1.0)
        if rel > PIXEL_SIZE_TOLERANCE:
            warnings.append(f"{source}: pixel size {pixel_size_um:.4g} µm differs by {rel:.0%} from the "
                            f"model's training LR pixel size {train_px:.4g} µm; features will not "
                            f"have the size the network learned")
    elif not pixel_size_um and train_px:
        log.info("%s: no pixel size in the metadata; assuming the model's %.4g µm", source, train_px)
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


def upscale_array(lr: Any, model: Any, *, tile: int = 256, batch: int = 4, device: str = "auto",
                  precision: str = "auto", pixel_size_um: float | None = None) -> np.ndarray:
    """Upscale a whole LR image held as a NumPy, zarr or dask array; returns NumPy.

    Parameters
    ----------
    lr : array-like (H, W)
        LR image in the model's input dtype. A dask array runs through `upscale_dask`.
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

    Returns
    -------
    ndarray (k*H, k*W), the input dtype.
    """
    from dleem.upscale.engine import resolve_device, run_tiles

    if tile < MIN_TILE:
        raise DleemError(f"--tile must be >= {MIN_TILE} LR pixels, got {tile}")
    dev = resolve_device(device)
    m = _load(model, dev)
    check_input(m, lr.dtype, tuple(lr.shape), pixel_size_um=pixel_size_um, sample=_sample(lr))
    try:
        import dask.array as da

        if isinstance(lr, da.Array):
            return np.asarray(upscale_dask(lr, model if isinstance(model, (str, PathLike)) else m,
                                           tile=tile, device=device).compute())
    except ImportError:
        pass
    k = m.scale
    grid = TileGrid(tuple(lr.shape), tile, int(m.halo_lr_px))
    out = np.empty((k * lr.shape[0], k * lr.shape[1]), dtype=lr.dtype)

    def sink(t: Tile, sr: np.ndarray) -> None:
        y0, _, x0, _ = t.core
        out[k * y0:k * y0 + sr.shape[0], k * x0:k * x0 + sr.shape[1]] = sr

    run_tiles(lr, m, grid, sink, out_dtype=lr.dtype, batch=batch, device=dev, precision=precision)
    return out


# -- files -----------------------------------------------------------------------------
def _output_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    raise DleemError(f"{path}: output must end in .tif, .tiff, .ome.tif or .ome.zarr")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


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
    if p.is_dir():
        st = p.stat()
        sig = [st.st_mtime_ns]
    else:
        st = p.stat()
        sig = [st.st_size, st.st_mtime_ns]
    return {"input": str(p), "input_stat": sig, "input_shape": list(shape), "input_dtype": np.dtype(dtype).name}


class _Progress:
    """Progress bar in output megapixels (rich), with MPix/s and time left."""

    def __init__(self, total_px: int, done_px: int, description: str) -> None:
        from rich.progress import ProgressColumn
        from rich.text import Text

        from dleem.progress import make_progress

        class MPixColumn(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                done = task.completed / 1e6
                rate = f"{speed / 1e6:.2f} MPix/s" if speed else "-- MPix/s"
                return Text(f"{done:,.1f}/{task.total / 1e6:,.1f} MPix  {rate}")

        self.bar = make_progress(MPixColumn())
        self.task = self.bar.add_task(description, total=total_px, completed=done_px)
        self.bar.columns = tuple(c for c in self.bar.columns if type(c).__name__ != "MofNCompleteColumn")

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def advance(self, px: int) -> None:
        self.bar.advance(self.task, px)


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
    dask_scheduler: str | None = None,
    precision: str = "auto",
    pixel_size_um: float | None = None,
) -> Path:
    """Upscale an LR image file into a pyramidal OME-TIFF or a multiscale OME-Zarr.

    Parameters
    ----------
    input_path : path
        LR image: TIFF (memory-mapped or read tile by tile), zarr or OME-Zarr, PNG.
    model_dir : path
        Model folder (`dleem.models.save_model`).
    output_path : path
        ``*.tif`` / ``*.ome.tif`` (tiled, pyramidal OME-TIFF; BigTIFF only above 4 GiB) or
        ``*.ome.zarr`` (OME-NGFF 0.5, zarr v3). Written under a temporary name and
        renamed when complete; the input is never written to.
    tile, batch, device, precision
        As in `upscale_array`.
    resume : bool
        Continue an interrupted run from its work store (``.NAME.partial.zarr`` next to
        the output), skipping finished tiles. Without it a stale work store is discarded.
    consistency_path : path, optional
        Also write the consistency map (float32 TIFF, LR grid) and ``*_summary.png``.
    dask_scheduler : str, optional
        Address of a dask.distributed scheduler: tiles run on its workers (`upscale_dask`).
    pixel_size_um : float, optional
        LR pixel size when the file has none (or to override it).

    Returns
    -------
    Path of the output.
    """
    from dleem.upscale import stream
    from dleem.upscale.engine import resolve_device, run_tiles

    src, out = Path(input_path), Path(output_path)
    kind = _output_kind(out)
    if _same_file(src, out) or src.resolve() in out.resolve().parents:
        raise DleemError(f"{out}: the output path is the input; choose another name")
    if consistency_path is not None and (_same_file(src, Path(consistency_path))
                                         or _same_file(out, Path(consistency_path))):
        raise DleemError(f"{consistency_path}: the consistency map path is the input or the output")
    if tile < MIN_TILE:
        raise DleemError(f"--tile must be >= {MIN_TILE} LR pixels, got {tile}")
    if batch < 1:
        raise DleemError(f"--batch must be >= 1, got {batch}")
    lr, px, px_source = stream.open_lazy(src)
    if pixel_size_um is not None:
        px, px_source = pixel_size_um, "user"
    dev = resolve_device(device)
    model = _load(model_dir, dev)
    check_input(model, lr.dtype, tuple(lr.shape), pixel_size_um=px, source=src, sample=_sample(lr))
    cfg = model.config
    k = int(model.scale)
    if not px:
        px = getattr(cfg, "lr_pixel_size_um", None)
    sr_px = px / k if px else None
    h, w = lr.shape
    if dask_scheduler and tile < model.halo_lr_px:
        # dask blocks must be >= the overlap depth; keep them aligned with the store's chunks
        tile = -(-int(model.halo_lr_px) // MIN_TILE) * MIN_TILE
        log.info("dask: tile raised to %d LR px (>= the halo)", tile)
    out.parent.mkdir(parents=True, exist_ok=True)
    identity = {**_input_identity(src, (h, w), lr.dtype), **_model_identity(model_dir),
                "scale": k, "tile": tile, "halo_lr_px": int(model.halo_lr_px),
                "executor": "dask" if dask_scheduler else "local"}
    work = stream.work_store_path(out)
    tmp_tiff: Path | None = None
    store: Any = None
    try:
        if resume and work.exists():
            store = stream.WorkStore.resume(work, identity)
            done = store.done()
            log.info("resuming %s: %d tiles already done", work, len(done))
        else:
            if resume:
                log.info("nothing to resume at %s: starting", work)
            elif work.exists():
                log.info("discarding the partial run %s (pass --resume to continue it)", work)
            store = stream.WorkStore.create(work, (k * h, k * w), lr.dtype, k * tile, identity)
            done = set()
        grid = TileGrid((h, w), tile, int(model.halo_lr_px))
        t0 = time.perf_counter()
        if dask_scheduler:
            info = _run_dask(src, lr, model_dir, store, tile=tile, device=device, address=dask_scheduler,
                             done=done)
            store.close()
        else:
            total = k * k * h * w
            done_px = sum(k * k * int(np.prod(grid[i].core_shape)) for i in done)
            with _Progress(total, done_px, f"upscale x{k}") as bar:
                def sink(t: Tile, sr: np.ndarray) -> None:
                    store.write_tile(t.core, sr, k)

                def on_done(t: Tile) -> None:
                    store.mark_done(t.index)
                    bar.advance(k * k * int(np.prod(t.core_shape)))

                info = run_tiles(lr, model, grid, sink, out_dtype=lr.dtype, batch=batch, device=dev,
                                 precision=precision, skip=done, on_done=on_done)
            store.close()
        elapsed = time.perf_counter() - t0
        log.info("upscaled %d tiles in %.1f s (%s, %s)", info.get("tiles", 0), elapsed,
                 info.get("device"), info.get("precision"))
        t1 = time.perf_counter()
        levels = store.build_pyramid()
        log.info("pyramid: %d levels in %.1f s", len(levels), time.perf_counter() - t1)
        origin_lr = -(k - 1) / (2 * k)
        extra = {"sr_origin_lr_px": origin_lr, "lr_pixel_size_um": px, "pixel_size_source": px_source,
                 "sr_pixel_size_um": sr_px, "precision": info.get("precision"),
                 "convention": "fine pixel j has its centre at LR coordinate (j + 0.5) / k - 0.5"}
        store.write_ngff(sr_px, k, extra)
        if consistency_path is not None:
            sigma = getattr(cfg, "lr_blur_sigma_px", None)
            if sigma is None:
                log.warning("the model config has no lr_blur_sigma_px: consistency map with area "
                            "averaging only")
                sigma = 0.0
            summary = write_consistency(Path(consistency_path), levels[0], lr, scale=k, sigma_lr_px=float(sigma),
                                        dtype_max=float(_norm(model).get("dtype_max") or _dtype_max(lr.dtype)),
                                        lr_pixel_size_um=px)
            log.info("consistency map %s: RMS %.3g grey levels, 99%% |d| %.3g",
                     summary["map"], summary["rms"], summary["p99_abs"])
        t1 = time.perf_counter()
        if kind == "zarr":
            (work / stream.PROGRESS_FILE).unlink(missing_ok=True)
            stream.replace_path(work, out)
        else:
            tmp_tiff = out.with_name(f".{out.name}.tmp")
            description = {"dleem": {"scale": k, **extra, "model": identity.get("model"),
                                     "input": str(src.resolve())}}
            stream.write_ome_tiff(tmp_tiff, levels, pixel_size_um=sr_px, description=description,
                                  origin_um=origin_lr * px if px else None, name=out.name.split(".")[0])
            os.replace(tmp_tiff, out)
            tmp_tiff = None
            log.info("OME-TIFF written in %.1f s", time.perf_counter() - t1)
            shutil.rmtree(work, ignore_errors=True)
    except OSError as error:
        _cleanup(tmp_tiff, store)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DleemError(f"{out}: disk full while writing ({error.strerror or error}); finished tiles "
                             f"are kept in {work}: free space and rerun with --resume") from None
        raise DleemError(f"{out}: I/O error ({error.strerror or error}); finished tiles are kept in "
                         f"{work}: rerun with --resume") from None
    except BaseException:
        _cleanup(tmp_tiff, store)
        if work.exists():
            log.info("partial run kept in %s: rerun with --resume to continue", work)
        raise
    return out


def _cleanup(tmp: Path | None, store: Any) -> None:
    if store is not None:
        try:
            store.close()
        except OSError:
            pass
    if tmp is not None:
        tmp.unlink(missing_ok=True)


def _dtype_max(dtype: Any) -> float:
    dt = np.dtype(dtype)
    return float(np.iinfo(dt).max) if np.issubdtype(dt, np.integer) else 1.0


def _run_dask(src: Path, lr: Any, model_dir: Any, store: Any, *, tile: int, device: str,
              address: str, done: set[int]) -> dict[str, Any]:
    """Tiles on a dask.distributed cluster; a non-zarr input is first copied to zarr.

    Each dask block (one tile) is sent back and written into the work store by this
    process, the only writer, as blocks complete (and recorded as finished, so
    ``--resume`` skips it); the workers only need to read the input.
    """
    import dask.array as da
    import zarr
    from distributed import Client, as_completed

    if isinstance(lr, zarr.Array) and src.is_dir():
        arr = da.from_zarr(lr)
    else:
        staged = store.path / "input-lr"
        if not staged.exists():
            tmp = store.path / "input-lr.tmp"
            z = zarr.create_array(str(tmp), shape=lr.shape, dtype=lr.dtype, chunks=(tile, tile), overwrite=True)
            for r0 in range(0, lr.shape[0], tile):
                z[r0:r0 + tile] = np.asarray(lr[r0:r0 + tile])
            os.replace(tmp, staged)
        arr = da.from_zarr(str(staged))
    try:
        client = Client(address, timeout="20s")
    except OSError as error:
        raise DleemError(f"cannot reach the dask scheduler at {address} ({error})") from None
    with client:
        sr = upscale_dask(arr, str(model_dir), tile=tile, device=device)
        ys = np.concatenate([[0], np.cumsum(sr.chunks[0])])
        xs = np.concatenate([[0], np.cumsum(sr.chunks[1])])
        nby, nbx = sr.numblocks
        keys, tasks, sizes = [], [], {}
        for i in range(nby):
            for j in range(nbx):
                index = i * nbx + j
                sizes[index] = int((ys[i + 1] - ys[i]) * (xs[j + 1] - xs[j]))
                if index not in done:
                    keys.append((index, (slice(int(ys[i]), int(ys[i + 1])), slice(int(xs[j]), int(xs[j + 1])))))
                    tasks.append(sr.blocks[i, j])
        total = int(sr.shape[0] * sr.shape[1])
        futures = client.compute(tasks)
        where = {f.key: key for f, key in zip(futures, keys, strict=True)}
        with _Progress(total, sum(sizes[i] for i in done if i in sizes), "upscale (dask)") as bar:
            for future, block in as_completed(futures, with_results=True):
                index, region = where[future.key]
                store.level0[region] = block
                store.mark_done(index)
                bar.advance(sizes[index])
                future.release()
    shutil.rmtree(store.path / "input-lr", ignore_errors=True)
    return {"tiles": len(keys), "device": f"dask {address}", "precision": "fp32"}
