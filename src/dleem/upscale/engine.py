"""Run tiles on one machine: batches, a reader and a writer thread, precision, OOM retry.

Reading (lazy TIFF/zarr windows) and writing (zarr chunks, compression) happen in two
threads around the compute loop, so the accelerator (or the torch CPU threads) is not
kept waiting for I/O; the queues are short, so memory holds a few batches at most.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError, ParameterError
from dleem.upscale.tiling import Model, Tile, TileGrid, predict, subtiles, upscale_windows

log = logging.getLogger(__name__)

_STOP = object()


def resolve_device(device: str = "auto") -> Any:
    """``"auto"`` -> CUDA if present, else Apple MPS, else CPU; other names are checked."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not str(device).startswith("cuda:"):
        raise ParameterError("device", f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DleemError("device cuda requested but torch sees no CUDA GPU")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DleemError("device mps requested but this torch has no MPS support")
    return dev


def is_oom(error: BaseException) -> bool:
    """Out of accelerator memory (CUDA, MPS) or of host memory for a tensor."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def lsb_error(model: Model, raw: np.ndarray, out_dtype: Any, device: Any, amp_dtype: Any) -> float:
    """Max |reduced-precision - fp32| of the de-normalised output, in output grey levels (LSB).

    Measured before rounding, so < 0.5 means rounding makes the two outputs differ by at
    most one grey level, and only where fp32 itself sits near a half level.
    """
    ref = predict(model, raw, device=device)
    low = predict(model, raw, device=device, amp_dtype=amp_dtype)
    ref_f = model.denormalize(ref, np.float64)
    low_f = model.denormalize(low, np.float64)
    return float(np.max(np.abs(np.asarray(low_f) - np.asarray(ref_f))))


def choose_precision(model: Model, sample: np.ndarray, out_dtype: Any, device: Any) -> Any:
    """Reduced precision only where it is invisible in the output dtype.

    CPU/MPS: fp32. CUDA: fp16 if its measured error on ``sample`` (a real batch of the
    image) is < 0.5 LSB of an integer output dtype (8-bit in practice); fp32 otherwise
    (16-bit and float output: fp16 keeps ~11 bits, visible in 16-bit grey levels; bf16
    keeps 8 bits, worse). See benchmarks/bench_upscale_throughput.py.
    """
    import torch

    if torch.device(device).type != "cuda" or not np.issubdtype(np.dtype(out_dtype), np.integer):
        return None
    err = lsb_error(model, sample, out_dtype, device, torch.float16)
    choice = torch.float16 if err < 0.5 else None
    log.info("precision: fp16 error %.3f LSB of %s -> %s", err, np.dtype(out_dtype).name,
             "fp16" if choice is not None else "fp32")
    return choice


class _Runner:
    """Compute a batch with OOM fallbacks: halve the batch, then split a tile into quadrants."""

    def __init__(self, model: Model, shape: tuple[int, int], halo: int, out_dtype: Any,
                 device: Any, amp_dtype: Any, batch: int) -> None:
        self.model, self.shape, self.halo = model, shape, halo
        self.out_dtype, self.device, self.amp_dtype = out_dtype, device, amp_dtype
        self.batch = batch

    def _clear(self) -> None:
        import torch

        if torch.device(self.device).type == "cuda":
            torch.cuda.empty_cache()

    def run(self, tiles: list[Tile], raw: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        i = 0
        while i < len(tiles):
            n = self.batch
            try:
                out += upscale_windows(self.model, raw[i:i + n], tiles[i:i + n], self.out_dtype,
                                       device=self.device, amp_dtype=self.amp_dtype)
                i += n
            except Exception as error:
                if not is_oom(error):
                    raise
                self._clear()
                if n > 1:
                    self.batch = max(1, n // 2)
                    log.warning("out of memory: batch reduced to %d tiles", self.batch)
                    continue
                out.append(self._split(tiles[i], raw[i]))
                i += 1
        return out

    def _split(self, tile: Tile, window: np.ndarray) -> np.ndarray:
        """One tile by quadrants (each exact on its own), recursively down to 4 px cores."""
        h, w = tile.core_shape
        if max(h, w) <= 4:
            raise DleemError(f"out of memory even for a {h}x{w} LR pixel tile on {self.device}")
        log.warning("out of memory: tile %d split into quadrants", tile.index)
        k = self.model.scale
        result = np.empty((k * h, k * w), dtype=self.out_dtype)
        for piece in subtiles(tile, self.shape, self.halo):
            ry0, ry1, rx0, rx1 = (piece.read[0] - tile.read[0], piece.read[1] - tile.read[0],
                                  piece.read[2] - tile.read[2], piece.read[3] - tile.read[2])
            sub = window[ry0:ry1, rx0:rx1]
            try:
                core = upscale_windows(self.model, sub[None], [piece], self.out_dtype,
                                       device=self.device, amp_dtype=self.amp_dtype)[0]
            except Exception as error:
                if not is_oom(error):
                    raise
                self._clear()
                core = self._split(piece, sub)
            y0, x0 = piece.core[0] - tile.core[0], piece.core[2] - tile.core[2]
            result[k * y0:k * y0 + core.shape[0], k * x0:k * x0 + core.shape[1]] = core
        return result


def _batches(items: Iterable[Tile], n: int) -> Iterable[list[Tile]]:
    group: list[Tile] = []
    for item in items:
        group.append(item)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def run_tiles(
    lr: Any,
    model: Model,
    grid: TileGrid,
    sink: Callable[[Tile, np.ndarray], None],
    *,
    out_dtype: Any,
    batch: int = 4,
    device: Any = "cpu",
    precision: str | None = "auto",
    skip: set[int] | None = None,
    on_done: Callable[[Tile], None] | None = None,
    source: Any = "input",
) -> dict[str, Any]:
    """Upscale every tile of ``grid`` not in ``skip`` and hand each SR core to ``sink``.

    ``sink`` and ``on_done`` run in the writer thread, in the order tiles finish; an
    exception they raise (`dleem.errors.Cancelled` from a progress callback) stops the
    run and is raised here. A float window with NaN or Inf is refused as it is read
    (`InputError` naming ``source`` and the LR box).
    ``precision``: ``"auto"`` (measured, see `choose_precision`), ``"fp32"``, ``"fp16"``
    or ``"bf16"`` (the last two CUDA only). Returns what was used (device, precision).
    """
    import torch

    if batch < 1:
        raise ParameterError("batch", f"must be >= 1, got {batch}")
    skip = skip or set()
    count = len(grid) - sum(1 for i in skip if 0 <= i < len(grid))
    todo = (t for t in grid if t.index not in skip)  # lazily: memory independent of the tile count
    info: dict[str, Any] = {"device": str(device), "precision": "fp32", "tiles": count}
    if not count:
        return info

    errors: list[BaseException] = []
    stop = threading.Event()  # abort: the writer failed
    finished = threading.Event()  # the compute loop puts nothing more
    read_q: queue.Queue = queue.Queue(maxsize=2)
    write_q: queue.Queue = queue.Queue(maxsize=2 * batch + 2)

    def put(q: queue.Queue, item: Any) -> bool:
        while not (stop.is_set() or finished.is_set()):
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for group in _batches(todo, batch):
                raw = np.stack([np.asarray(lr[t.read[0]:t.read[1], t.read[2]:t.read[3]]) for t in group])
                if raw.dtype.kind == "f":
                    check_finite(raw, group, source)
                if not put(read_q, (group, raw)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)
        put(read_q, _STOP)

    def writer() -> None:
        try:
            while True:
                try:
                    tile, core = write_q.get(timeout=0.1)
                except queue.Empty:
                    if finished.is_set():
                        return
                    continue
                sink(tile, core)
                if on_done is not None:
                    on_done(tile)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=reader, name="dleem-read", daemon=True),
               threading.Thread(target=writer, name="dleem-write", daemon=True)]
    for t in threads:
        t.start()
    runner = _Runner(model, grid.shape, grid.halo, out_dtype, device, None, batch)
    try:
        first = True
        while not stop.is_set():
            try:
                item = read_q.get(timeout=0.1)
            except queue.Empty:
                if errors:
                    break
                continue
            if item is _STOP:
                break
            group, raw = item
            if first:
                runner.amp_dtype = _amp(precision, model, raw, out_dtype, device)
                info["precision"] = {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[runner.amp_dtype]
                first = False
            for tile, core in zip(group, runner.run(group, raw), strict=True):
                while not stop.is_set():
                    try:
                        write_q.put((tile, core), timeout=0.1)
                        break
                    except queue.Full:
                        continue
    finally:
        # The writer drains what is computed (so --resume keeps it), then both threads end.
        finished.set()
        threads[1].join()
        threads[0].join(timeout=10)
    if errors:
        raise errors[0]
    info["batch"] = runner.batch
    return info


def check_finite(raw: np.ndarray, tiles: list[Tile], source: Any) -> None:
    """`InputError` naming ``source``, the first non-finite LR pixel and its tile's box."""
    if np.isfinite(raw).all():
        return
    for t, window in zip(tiles, raw, strict=True):
        bad = np.argwhere(~np.isfinite(window))
        if len(bad):
            y, x = int(bad[0][0]) + t.read[0], int(bad[0][1]) + t.read[2]
            y0, y1, x0, x1 = t.read
            raise InputError(source, f"NaN or Inf at LR pixel (row {y}, column {x}), in the box rows "
                             f"{y0}:{y1}, columns {x0}:{x1}: replace the non-finite values before "
                             f"upscaling")


def _amp(precision: str | None, model: Model, raw: np.ndarray, out_dtype: Any, device: Any) -> Any:
    import torch

    if precision in (None, "fp32"):
        return None
    if precision == "auto":
        return choose_precision(model, raw, out_dtype, device)
    if torch.device(device).type != "cuda":
        raise ParameterError("precision", f"{precision} runs on CUDA only; use auto or fp32 on {device}")
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
