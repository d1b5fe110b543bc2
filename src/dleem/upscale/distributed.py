"""The dask path: the same tile function through `dask.array.map_overlap`.

Each dask block is one tile: its chunk is the core, ``map_overlap`` adds ``halo`` LR
pixels from the neighbours (``boundary="none"``: nothing at the image border, exactly
as the local path clips its windows), the block runs through `tiling.predict`, and the
valid centre is cut out. Each worker process loads a model once, cached by model folder
and device (`worker_model`); with a zarr input on shared storage the graph carries only
slices, so it scales out over a dask.distributed cluster.

`run_dask` is what ``upscale_file(..., dask_scheduler=ADDR)`` runs: the blocks on the
cluster, written into the work store by the client as they complete.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError, ParameterError
from dleem.progress import ProgressCallback, report
from dleem.upscale.tiling import MIN_TILE, Model, predict

_CACHE: dict[tuple[str, str, bool], Any] = {}
_LOCK = threading.Lock()


def worker_model(model_dir: str, device: str = "auto", tta: bool = False) -> Any:
    """The model for this worker process, loaded once per (folder, device, ensemble)."""
    from dleem.upscale.engine import resolve_device

    dev = str(resolve_device(device))
    key = (str(Path(model_dir).resolve()), dev, bool(tta))
    with _LOCK:
        if key not in _CACHE:
            from dleem.models import load_model
            from dleem.upscale.tiling import prepare

            _CACHE[key] = prepare(load_model(key[0], device=dev, tta=key[2]), dev)
        return _CACHE[key]


def _chunks_for(n: int, tile: int, halo: int) -> tuple[int, ...]:
    """Chunks of ``tile`` with a last chunk no smaller than the halo (merged otherwise),
    so that map_overlap never rechunks and each block's overlap is known."""
    sizes = [tile] * (n // tile)
    if n % tile:
        sizes.append(n % tile)
    if len(sizes) > 1 and sizes[-1] < halo:
        sizes[-2] += sizes.pop()
    return tuple(sizes)


def _block(block: np.ndarray, block_info: dict | None = None, *, model: Any, model_dir: str | None,
           device: str, halo: int, chunks: tuple[tuple[int, ...], tuple[int, ...]], out_dtype: str,
           source: str, tta: bool = False) -> np.ndarray:
    loc = block_info[0]["chunk-location"]  # type: ignore[index]
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        y0, x0 = (sum(chunks[a][:loc[a]]) for a in (0, 1))
        y1, x1 = y0 + chunks[0][loc[0]], x0 + chunks[1][loc[1]]
        raise InputError(source, f"NaN or Inf within {halo} LR pixels of the box rows {y0}:{y1}, "
                         f"columns {x0}:{x1}: replace the non-finite values before upscaling")
    m = model if model is not None else worker_model(model_dir, device, tta)  # type: ignore[arg-type]
    k = m.scale
    cuts = []
    for axis in (0, 1):
        i = loc[axis]
        left = 0 if i == 0 else halo
        core = chunks[axis][i]
        cuts.append((k * left, k * (left + core)))
    from dleem.upscale.engine import resolve_device

    y = predict(m, block[None], device=resolve_device(device) if model is None else _device_of(m))
    y = y[0, cuts[0][0]:cuts[0][1], cuts[1][0]:cuts[1][1]]
    return np.asarray(m.denormalize(y, np.dtype(out_dtype)))


def _device_of(model: Model) -> Any:
    try:
        return next(model.generator.parameters()).device
    except (StopIteration, AttributeError):
        return "cpu"


def upscale_dask(lr: Any, model: Any, *, tile: int = 256, device: str = "auto", out_dtype: Any = None,
                 source: str = "input", tta: bool = False) -> Any:
    """Lazy SR of a dask (or zarr) array: a dask array ``scale`` times larger, same dtype.

    Parameters
    ----------
    lr : dask.array.Array or zarr array
        2-D LR image; rechunked to ``tile`` x ``tile`` cores.
    model : str, Path or LoadedModel
        A model folder (each worker loads it once: use this on a cluster) or a loaded
        model (shipped inside the graph: fine for a local or threaded cluster).
    tile : int
        Core side in LR pixels.
    device : {"auto", "cpu", "cuda", "mps"}
        Where each worker runs its blocks.
    out_dtype : dtype, optional
        Output dtype (default the input's).
    source : str
        What to name in errors (a float block with NaN or Inf is refused when it runs).
    tta : bool
        Average each block over the 8 flips and transposes (`dleem.models.with_ensemble`).
    """
    import dask.array as da

    if tile < MIN_TILE:
        raise ParameterError("tile", f"must be >= {MIN_TILE} LR pixels, got {tile}")
    if isinstance(model, (str, Path)):
        model_dir: str | None = str(model)
        ref = worker_model(model_dir, "cpu", tta)
        loaded = None
    else:
        from dleem.models import with_ensemble

        loaded = with_ensemble(model) if tta else model
        model_dir, ref = None, loaded
    k, halo = ref.scale, int(ref.halo_lr_px)
    arr = lr if isinstance(lr, da.Array) else da.from_zarr(lr)
    chunks = (_chunks_for(arr.shape[0], max(tile, halo), halo), _chunks_for(arr.shape[1], max(tile, halo), halo))
    arr = arr.rechunk(chunks)
    dtype = np.dtype(out_dtype or arr.dtype)
    out_chunks = tuple(tuple(k * c for c in cs) for cs in chunks)
    fn = functools.partial(_block, model=loaded, model_dir=model_dir, device=device, halo=halo,
                           chunks=chunks, out_dtype=dtype.str, source=str(source), tta=tta)
    return da.map_overlap(fn, arr, depth=halo, boundary="none", trim=False, dtype=dtype,
                          chunks=out_chunks, meta=np.empty((0, 0), dtype), allow_rechunk=False)


def run_dask(src: Path, lr: Any, model_dir: Any, store: Any, *, tile: int, device: str, address: str,
             done: set[int], progress: ProgressCallback | None = None, stage: str = "upscale",
             tta: bool = False) -> dict[str, Any]:
    """Tiles on a dask.distributed cluster; a non-zarr input is first copied to zarr.

    Each dask block (one tile) is sent back and written into the work store by this
    process, the only writer, as blocks complete (and recorded as finished, so
    ``resume`` skips it); the workers only need to read the input. ``progress(stage,
    blocks done, blocks)`` after each block; `dleem.errors.Cancelled` raised there stops
    the run (the finished blocks stay in the store).
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
            z = zarr.create_array(str(tmp), shape=lr.shape, dtype=lr.dtype, chunks=(tile, tile),
                                  overwrite=True, zarr_format=3)
            for r0 in range(0, lr.shape[0], tile):
                z[r0:r0 + tile] = np.asarray(lr[r0:r0 + tile])
            os.replace(tmp, staged)
        arr = da.from_zarr(str(staged))
    try:
        client = Client(address, timeout="20s")
    except OSError as error:
        raise DleemError(f"cannot reach the dask scheduler at {address} ({error})") from None
    with client:
        sr = upscale_dask(arr, str(model_dir), tile=tile, device=device, source=str(src), tta=tta)
        ys = np.concatenate([[0], np.cumsum(sr.chunks[0])])
        xs = np.concatenate([[0], np.cumsum(sr.chunks[1])])
        nby, nbx = sr.numblocks
        keys, tasks = [], []
        for i in range(nby):
            for j in range(nbx):
                index = i * nbx + j
                if index not in done:
                    keys.append((index, (slice(int(ys[i]), int(ys[i + 1])), slice(int(xs[j]), int(xs[j + 1])))))
                    tasks.append(sr.blocks[i, j])
        total = nby * nbx
        finished = sum(1 for i in done if 0 <= i < total)
        report(progress, stage, finished, total)
        futures = client.compute(tasks)
        where = {f.key: key for f, key in zip(futures, keys, strict=True)}
        try:
            for future, block in as_completed(futures, with_results=True):
                index, region = where[future.key]
                store.level0[region] = block
                store.mark_done(index)
                future.release()
                finished += 1
                report(progress, stage, finished, total)
        finally:
            client.cancel(futures)
    shutil.rmtree(store.path / "input-lr", ignore_errors=True)
    return {"tiles": len(keys), "device": f"dask {address}", "precision": "fp32"}
