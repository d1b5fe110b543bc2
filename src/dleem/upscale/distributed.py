"""The dask path: the same tile function through `dask.array.map_overlap`.

Each dask block is one tile: its chunk is the core, ``map_overlap`` adds ``halo`` LR
pixels from the neighbours (``boundary="none"``: nothing at the image border, exactly
as the local path clips its windows), the block runs through `tiling.predict`, and the
valid centre is cut out. Each worker process loads a model once, cached by model folder
and device (`worker_model`); with a zarr input on shared storage the graph carries only
slices, so it scales out over a dask.distributed cluster.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from dleem.upscale.tiling import Model, predict

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def worker_model(model_dir: str, device: str = "auto") -> Any:
    """The model for this worker process, loaded once per (folder, device)."""
    from dleem.upscale.engine import resolve_device

    dev = str(resolve_device(device))
    key = (str(Path(model_dir).resolve()), dev)
    with _LOCK:
        if key not in _CACHE:
            from dleem.models import load_model
            from dleem.upscale.tiling import prepare

            _CACHE[key] = prepare(load_model(key[0], device=dev), dev)
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
           device: str, halo: int, chunks: tuple[tuple[int, ...], tuple[int, ...]], out_dtype: str) -> np.ndarray:
    m = model if model is not None else worker_model(model_dir, device)  # type: ignore[arg-type]
    k = m.scale
    loc = block_info[0]["chunk-location"]  # type: ignore[index]
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


def upscale_dask(lr: Any, model: Any, *, tile: int = 256, device: str = "auto", out_dtype: Any = None) -> Any:
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
    """
    import dask.array as da

    from dleem.upscale.tiling import MIN_TILE

    if tile < MIN_TILE:
        from dleem.errors import DleemError

        raise DleemError(f"--tile must be >= {MIN_TILE} LR pixels, got {tile}")
    if isinstance(model, (str, Path)):
        model_dir: str | None = str(model)
        ref = worker_model(model_dir, "cpu")
        loaded = None
    else:
        model_dir, ref, loaded = None, model, model
    k, halo = ref.scale, int(ref.halo_lr_px)
    arr = lr if isinstance(lr, da.Array) else da.from_zarr(lr)
    chunks = (_chunks_for(arr.shape[0], max(tile, halo), halo), _chunks_for(arr.shape[1], max(tile, halo), halo))
    arr = arr.rechunk(chunks)
    dtype = np.dtype(out_dtype or arr.dtype)
    out_chunks = tuple(tuple(k * c for c in cs) for cs in chunks)
    import functools

    fn = functools.partial(_block, model=loaded, model_dir=model_dir, device=device, halo=halo,
                           chunks=chunks, out_dtype=dtype.str)
    return da.map_overlap(fn, arr, depth=halo, boundary="none", trim=False, dtype=dtype,
                          chunks=out_chunks, meta=np.empty((0, 0), dtype), allow_rechunk=False)
