"""Streaming I/O for upscaling: lazy input, a resumable zarr work store, OME-Zarr and OME-TIFF.

Design (why every output goes through a zarr work store)
--------------------------------------------------------
Tiles are written, as they are produced, into a zarr array whose chunks are exactly
the SR tiles (``scale * tile`` fine pixels), next to the output under a hidden name
(``.NAME.partial.zarr``), and the index of each finished tile is appended to a sidecar
(``dleem-progress.txt``) *after* its chunk is on disk. Chunks are independent files, so
an interrupted run loses at most the tiles in flight, and ``--resume`` skips the rest.
A TIFF cannot be resumed that way (its tiles and IFDs are written sequentially and an
unfinished file is unreadable), so TIFF output is streamed from the finished work store
into a temporary file and renamed: one extra sequential read and write of the output,
which is cheap next to the network, buys resumability and lets the pyramid be built
band by band from a chunked source. OME-Zarr output *is* the work store, renamed at the
end. Memory stays bounded by one band of ``scale * tile`` rows whatever the image size.

Two runs writing the same output would share that work store; a `RunLock` (an
``flock`` on ``.NAME.partial.zarr.lock``, dropped by the kernel when the process dies)
makes the second one refuse, and `WorkStore.create` never deletes a store that another
live run holds.

TIFF layout, the rule of `dleem.io.write`: below `STRIP_MAX_PIXELS` every level is written
in strips (ImageJ without Bio-Formats opens no tiled TIFF), above it in 512 x 512 tiles;
pixel sizes go to the OME ``PhysicalSizeX/Y`` and to ``XResolution``/``YResolution`` in
pixels per centimetre (``ResolutionUnit`` 3), which ImageJ's own reader shows in µm.

Geometry recorded with the output: fine pixel ``j`` has its centre at LR coordinate
``(j + 0.5) / k - 0.5`` (LR pixel centres on integers), i.e. the SR grid origin sits
``-(k - 1) / (2k)`` LR pixels from the LR origin. Pyramid level ``l`` averages
``2**l`` x ``2**l`` fine pixels.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError
from dleem.imaging import to_dtype
from dleem.io.write import (
    TIFF_TILE,
    needs_bigtiff,
    ome_pixel_size,
    resolution_options,
    rows_per_strip,
    tiff_layout,
)

log = logging.getLogger(__name__)

PROGRESS_FILE = "dleem-progress.txt"
#: OME-NGFF versions written: 0.4 is zarr v2, 0.5 zarr v3 (docs/readers.md: who reads which).
NGFF_VERSIONS = ("0.4", "0.5")
PYRAMID_MIN_SIDE = 512


# -- input ---------------------------------------------------------------------------
def open_lazy(path: Path, *, page: int | None = None, scene: int | None = None,
              channel: int | None = None) -> tuple[Any, float | None, str]:
    """Open a 2-D image without loading it: (array-like, pixel size µm or None, source).

    `dleem.io.read_image` with ``lazy=True``: a TIFF becomes a memory map (uncompressed,
    contiguous pixels) or a zarr view decoding one tile/strip per access; zarr and
    OME-Zarr (level 0) stay zarr. A databar is reported, not cropped: the whole frame
    is upscaled, as the user gave it. ``page``, ``scene``, ``channel``: the plane of a
    multi-page TIFF or a CZI, as in `read_image`.
    """
    from dleem.io import read_image

    image = read_image(path, lazy=True, databar="detect", page=page, scene=scene, channel=channel)
    if image.databar_rows:
        log.info("%s: the bottom %d rows look like a databar; they are upscaled too "
                 "(crop the image first to leave them out)", path, image.databar_rows)
    return image.data, image.pixel_size_um, image.pixel_size_source


# -- the work store ------------------------------------------------------------------
def work_store_path(output: Path) -> Path:
    """Hidden sibling where tiles accumulate (and that ``--resume`` reopens)."""
    suffix = "" if output.name.lower().endswith(".zarr") else ".zarr"
    return output.with_name(f".{output.name}.partial{suffix}")


def lock_path(work: Path) -> Path:
    """The lock file beside a work store."""
    return work.with_name(f"{work.name}.lock")


_HELD: set[str] = set()  # lock files this process holds


def _lock_fd(fd: int) -> bool:
    """Try an exclusive, non-blocking lock on ``fd``: True if taken, False if held elsewhere."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        log.warning("this file system has no file locks (%s): a second run writing the same "
                    "output would not be stopped", error.strerror)
    return True


class RunLock:
    """One writer per output: an exclusive lock on ``.NAME.partial.zarr.lock``.

    ``flock`` locks belong to the open file, so the kernel drops them when the process
    ends, killed or not: a stale lock file is simply locked again by the next run. The
    holder removes the file when it releases (under the lock; a run that opened the old
    file meanwhile sees that it is gone and retries on the new one).
    """

    def __init__(self, work: Path, target: Path | None = None) -> None:
        self.path = lock_path(work)
        self.target = target or work  # named in the refusal
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise `DleemError` (another live run writes this output).
        ``OSError`` (an unwritable folder) propagates."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _lock_fd(fd):
                pid = _read_pid(fd)
                os.close(fd)
                who = f" (pid {pid})" if pid else ""
                raise DleemError(f"{self.target}: another dleem upscale{who} is writing this output; "
                                 f"wait for it to finish or choose another output path")
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed the file after we opened it: retry
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _HELD.add(str(self.path.resolve()))
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.discard(str(self.path.resolve()))
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except (OSError, AttributeError):
        return None
    return int(text) if text.isdigit() else None


def _check_not_held_elsewhere(work: Path) -> None:
    """Refuse (`DleemError`) if another live run holds the lock of ``work``."""
    lock = lock_path(work)
    if str(lock.resolve()) in _HELD or not lock.exists():
        return
    RunLock(work).acquire().release()


def store_chunk(sr_tile: int) -> int:
    """Zarr chunk side for SR tiles of ``sr_tile`` fine pixels: the TIFF tile when it divides
    them (so the TIFF export reads bands of exactly one chunk row), else the SR tile."""
    return TIFF_TILE if sr_tile > TIFF_TILE and sr_tile % TIFF_TILE == 0 else sr_tile


class WorkStore:
    """SR level 0 as a zarr array chunked by tile, plus the list of finished tiles."""

    def __init__(self, path: Path, group: Any) -> None:
        self.path = path
        self.group = group
        self.level0 = group["0"]
        self._progress = None
        self._since_sync = 0

    @classmethod
    def create(cls, path: Path, shape: tuple[int, int], dtype: Any, chunk: int,
               identity: dict[str, Any], *, zarr_format: int = 3) -> WorkStore:
        """A new, empty store at ``path`` (a stale one is replaced, never one that another
        live run holds: `DleemError`). ``zarr_format`` 2 for an OME-NGFF 0.4 output."""
        import zarr

        _check_not_held_elsewhere(path)
        if path.exists():
            shutil.rmtree(path)
        group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
        group.attrs["dleem_run"] = identity
        chunk = store_chunk(chunk)
        group.create_array("0", shape=shape, dtype=dtype, chunks=(chunk, chunk), fill_value=0,
                           **_array_options(zarr_format))
        (path / PROGRESS_FILE).touch()
        return cls(path, group)

    @property
    def zarr_format(self) -> int:
        return int(self.group.metadata.zarr_format)

    @classmethod
    def resume(cls, path: Path, identity: dict[str, Any]) -> WorkStore:
        import zarr

        try:
            group = zarr.open_group(str(path), mode="r+")
            stored = dict(group.attrs).get("dleem_run")
        except Exception as error:  # noqa: BLE001
            raise DleemError(f"{path}: cannot reopen the partial run ({error}); start over without "
                             f"resume (--resume)") from None
        if stored != identity:
            diff = sorted(k for k in set(stored or {}) | set(identity)
                          if (stored or {}).get(k) != identity.get(k))
            raise DleemError(f"{path}: the partial run used a different {', '.join(diff)}; "
                             f"start over without resume (--resume)")
        return cls(path, group)

    def done(self) -> set[int]:
        """Tiles recorded as finished (a torn last line is ignored)."""
        f = self.path / PROGRESS_FILE
        if not f.exists():
            return set()
        out = set()
        for line in f.read_text().splitlines():
            if line.strip().isdigit():
                out.add(int(line))
        return out

    def write_tile(self, core_box: tuple[int, int, int, int], sr: np.ndarray, scale: int) -> None:
        y0, _, x0, _ = core_box
        self.level0[scale * y0:scale * y0 + sr.shape[0], scale * x0:scale * x0 + sr.shape[1]] = sr

    def mark_done(self, index: int) -> None:
        if self._progress is None:
            self._progress = open(self.path / PROGRESS_FILE, "a")  # noqa: SIM115 - closed in close()
        self._progress.write(f"{index}\n")
        self._progress.flush()
        self._since_sync += 1
        if self._since_sync >= 16:
            os.fsync(self._progress.fileno())
            self._since_sync = 0

    def close(self) -> None:
        if self._progress is not None:
            self._progress.flush()
            os.fsync(self._progress.fileno())
            self._progress.close()
            self._progress = None

    # -- pyramid and metadata ----------------------------------------------------------
    def levels(self) -> list[Any]:
        out, i = [], 0
        while str(i) in self.group:
            out.append(self.group[str(i)])
            i += 1
        return out

    def build_pyramid(self, min_side: int = PYRAMID_MIN_SIDE) -> list[Any]:
        """Levels 1.. by 2x2 means, each computed band by band from the one above."""
        levels = [self.level0]
        i = 1
        while max(levels[-1].shape) > min_side:
            src = levels[-1]
            shape = (-(-src.shape[0] // 2), -(-src.shape[1] // 2))
            chunk = src.chunks[0]
            name = str(i)
            if name in self.group:
                del self.group[name]
            dst = self.group.create_array(name, shape=shape, dtype=src.dtype, chunks=(chunk, chunk),
                                          fill_value=0, **_array_options(self.zarr_format))
            for r0 in range(0, shape[0], chunk):  # chunk by chunk: memory independent of width
                r1 = min(r0 + chunk, shape[0])
                for c0 in range(0, shape[1], chunk):
                    c1 = min(c0 + chunk, shape[1])
                    block = np.asarray(src[2 * r0:min(2 * r1, src.shape[0]), 2 * c0:min(2 * c1, src.shape[1])])
                    dst[r0:r1, c0:c1] = downsample2(block, src.dtype)
            levels.append(dst)
            i += 1
        return levels

    def write_ngff(self, sr_pixel_size_um: float | None, scale: int, extra: dict[str, Any]) -> None:
        """OME-NGFF multiscales: physical scale and the SR-grid offset per level.

        A zarr v3 store gets NGFF 0.5 (``attributes["ome"]``), a zarr v2 store NGFF 0.4
        (``multiscales`` at the top of ``.zattrs``, with its ``version``)."""
        unit_size = sr_pixel_size_um if sr_pixel_size_um else 1.0 / scale  # else in LR pixels
        origin = -(scale - 1) / (2 * scale) * scale * unit_size  # -(k-1)/(2k) LR px
        datasets = []
        for i in range(len(self.levels())):
            f = 2**i
            datasets.append({"path": str(i), "coordinateTransformations": [
                {"type": "scale", "scale": [unit_size * f, unit_size * f]},
                {"type": "translation", "translation": [origin + (f - 1) / 2 * unit_size] * 2},
            ]})
        axis = {"type": "space"}
        if sr_pixel_size_um:
            axis["unit"] = "micrometer"
        multiscale = {"name": "dleem super-resolution",
                      "axes": [{"name": "y", **axis}, {"name": "x", **axis}],
                      "datasets": datasets, "type": "mean of 2x2"}
        if self.zarr_format == 2:
            self.group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
        else:
            self.group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
        dleem = dict(self.group.attrs.get("dleem", {}))
        dleem.update(extra)
        self.group.attrs["dleem"] = dleem


def _array_options(zarr_format: int) -> dict[str, Any]:
    """zarr v3: named dimensions (default zstd). zarr v2 (NGFF 0.4): ``/`` chunk keys and
    Blosc-LZ4, the codec every zarr v2 reader has (Java readers included)."""
    if zarr_format == 3:
        return {"dimension_names": ("y", "x")}
    from numcodecs import Blosc

    return {"chunk_key_encoding": {"name": "v2", "separator": "/"},
            "compressors": Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)}


def downsample2(band: np.ndarray, dtype: Any) -> np.ndarray:
    """2x2 mean (edge rows/columns replicated for odd sizes), rounded for integer dtypes."""
    h, w = band.shape
    if h % 2 or w % 2:
        band = np.pad(band, ((0, h % 2), (0, w % 2)), mode="edge")
    m = band.astype(np.float32).reshape(band.shape[0] // 2, 2, band.shape[1] // 2, 2).mean(axis=(1, 3))
    return to_dtype(m, dtype)


# -- OME-TIFF ------------------------------------------------------------------------
def _tiles(level: Any, tile: int) -> Iterator[np.ndarray]:
    """Row-major TIFF tiles of a (lazy) 2-D array: one chunk per tile when the chunks are
    the TIFF tiles (memory independent of the width), else one band of rows at a time."""
    h, w = level.shape
    if tuple(getattr(level, "chunks", ())) == (tile, tile):
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                yield np.asarray(level[r0:r0 + tile, c0:c0 + tile])
        return
    for r0 in range(0, h, tile):
        band = np.asarray(level[r0:min(r0 + tile, h)])
        for c0 in range(0, w, tile):
            yield band[:, c0:c0 + tile]


def segments(level: Any, layout: dict[str, Any]) -> Iterator[np.ndarray]:
    """The strips or tiles of a (lazy) 2-D array in TIFF order, for `tiff_layout` options;
    memory: one band of `TIFF_TILE` rows."""
    if "tile" in layout:
        yield from _tiles(level, layout["tile"][0])
        return
    rows = layout["rowsperstrip"]
    for r0 in range(0, level.shape[0], TIFF_TILE):
        band = np.asarray(level[r0:r0 + TIFF_TILE])
        for s0 in range(0, band.shape[0], rows):
            yield band[s0:s0 + rows]


def write_ome_tiff(
    path: Path, levels: list[Any], *, pixel_size_um: float | None, description: dict[str, Any] | None = None,
    origin_um: float | None = None, tile: int = TIFF_TILE, name: str | None = None,
) -> None:
    """OME-TIFF (pyramidal in SubIFDs when several levels) streamed from lazy arrays.

    In strips up to `STRIP_MAX_PIXELS` at level 0, in ``tile`` x ``tile`` tiles above.
    ``pixel_size_um`` of level 0 goes to ``PhysicalSizeX/Y`` and the resolution tags (cm);
    ``origin_um`` (the position of pixel (0, 0)'s centre relative to the LR image's) to
    the OME ``Plane`` position; ``description`` to the OME ``Description`` as JSON.
    """
    import tifffile

    shapes = [tuple(lv.shape) for lv in levels]
    dtype = np.dtype(levels[0].dtype)
    metadata: dict[str, Any] = {"axes": "YX", "Name": name or path.name.lstrip(".").split(".")[0]}
    metadata.update(ome_pixel_size(pixel_size_um))
    if pixel_size_um:
        if origin_um is not None:
            metadata["Plane"] = {"PositionX": [origin_um], "PositionXUnit": ["µm"],
                                 "PositionY": [origin_um], "PositionYUnit": ["µm"]}
    if description:
        metadata["Description"] = json.dumps(description)
    tiled = "tile" in tiff_layout(shapes[0], dtype)
    with tifffile.TiffWriter(path, bigtiff=needs_bigtiff(shapes, dtype), ome=True) as tw:
        for i, level in enumerate(levels):
            layout = {"tile": (tile, tile)} if tiled else {"rowsperstrip": rows_per_strip(shapes[i][1], dtype)}
            extra: dict[str, Any] = {**layout, **resolution_options(pixel_size_um, 2**i)}
            if i == 0:
                extra.update(subifds=len(levels) - 1, metadata=metadata)
            else:
                extra.update(subfiletype=1)
            tw.write(segments(level, layout), shape=shapes[i], dtype=dtype, photometric="minisblack",
                     **extra)


# -- atomic replacement --------------------------------------------------------------
def replace_path(src: Path, dst: Path) -> None:
    """Move a finished file or directory onto ``dst`` (an old ``dst`` is removed after)."""
    if src.is_dir() and dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(src, dst)
