"""Write images atomically as OME-TIFF, keeping dtype and pixel size; the TIFF layout rule.

Every TIFF dleem writes follows the rule in this module (`write_image` here, the SR
pyramid and the consistency map in `dleem.upscale` through `tiff_layout`,
`resolution_options`, `ome_pixel_size` and `needs_bigtiff`), so each opens where users
open it:

- The pixel size goes into the OME-XML (``PhysicalSizeX/Y`` in µm, what Bio-Formats and
  so Fiji's importer, QuPath and bioio read) and into the TIFF resolution tags
  (``XResolution``/``YResolution`` in pixels per centimetre, ``ResolutionUnit`` 3, what
  ImageJ's own TIFF opener, tiffslide and most other software read).
- Up to `STRIP_MAX_PIXELS` the image is written in strips of about `STRIP_BYTES` (ImageJ
  1.x without Bio-Formats opens no tiled TIFF), above in `TIFF_TILE` tiles, which every
  pyramid-aware reader needs at that size.
- Classic TIFF (ImageJ 1.x reads no BigTIFF) while the pixel data fit under 4 GiB.

What each reader makes of the result is measured by ``benchmarks/check_readers.py``
(docs/readers.md); ImageJ 1.x opens no float64 TIFF, which Bio-Formats does: the dtype is
kept all the same.

A write never leaves a partial file under the final name: the image goes to a
temporary file in the same folder (same file system, so the rename is atomic),
is flushed to disk, then renamed over the target. On any failure, including
Ctrl-C, the temporary file is removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from dleem.errors import InputError
from dleem.io.atomic import atomic_write

WRITABLE_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64"))
TIFF_TILE = 512
#: Level-0 pixels up to which a TIFF is written in strips (16384 x 16384), tiled above.
STRIP_MAX_PIXELS = 2**28
#: Target bytes per strip (rows per strip is a power of two dividing `TIFF_TILE`).
STRIP_BYTES = 2**18
CLASSIC_TIFF_LIMIT = 2**32 - 2**26  # bytes of pixel data kept below 4 GiB with room for IFDs


def rows_per_strip(width: int, dtype: Any) -> int:
    """Rows per strip: about `STRIP_BYTES` per strip, a power of two dividing `TIFF_TILE`."""
    rows = max(1, STRIP_BYTES // max(1, width * np.dtype(dtype).itemsize))
    return min(TIFF_TILE, 1 << (rows.bit_length() - 1))


def tiff_layout(shape: tuple[int, int], dtype: Any) -> dict[str, Any]:
    """TiffWriter options for an image of level-0 ``shape``: strips up to
    `STRIP_MAX_PIXELS`, `TIFF_TILE` tiles above."""
    if int(shape[0]) * int(shape[1]) <= STRIP_MAX_PIXELS:
        return {"rowsperstrip": rows_per_strip(int(shape[1]), dtype)}
    return {"tile": (TIFF_TILE, TIFF_TILE)}


def resolution_options(pixel_size_um: float | None, factor: float = 1.0) -> dict[str, Any]:
    """``XResolution``/``YResolution`` in pixels per cm (``ResolutionUnit`` 3) for pixels of
    ``pixel_size_um * factor`` (``factor``: a pyramid level's downsampling)."""
    if not pixel_size_um:
        return {}
    per_cm = 1e4 / (float(pixel_size_um) * factor)
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def ome_pixel_size(pixel_size_um: float | None) -> dict[str, Any]:
    """tifffile OME metadata for square pixels of ``pixel_size_um`` µm (empty if unknown)."""
    if not pixel_size_um:
        return {}
    px = float(pixel_size_um)
    return {"PhysicalSizeX": px, "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": px, "PhysicalSizeYUnit": "µm"}


def needs_bigtiff(shapes: list[tuple[int, int]], dtype: Any) -> bool:
    """Classic TIFF (readable by ImageJ 1) when all pixel data fit under 4 GiB."""
    size = sum(int(np.prod(s)) for s in shapes) * np.dtype(dtype).itemsize
    return size > CLASSIC_TIFF_LIMIT


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def write_image(
    path: str | PathLike[str],
    data: Any,
    *,
    pixel_size_um: float | None = None,
    protect: Iterable[str | PathLike[str]] = (),
    compression: str | None = None,
    description: str | None = None,
) -> Path:
    """Write a 2-D image to `path` as OME-TIFF, atomically, in the module's TIFF layout.

    Parameters
    ----------
    path : path
        Output file (``.tif`` / ``.ome.tif``); parent folders are created.
    data : array_like, shape (rows, columns)
        uint8, uint16, int16, float32 or float64; written in that dtype.
    pixel_size_um : float, optional
        Pixel size in micrometres, stored as OME ``PhysicalSizeX/Y`` (µm) and as
        resolution tags (pixels per cm, ``ResolutionUnit`` 3).
    protect : iterable of paths
        Input files of the step that writes: writing over any of them raises
        `InputError` instead (an output must never replace its input).
    compression : str, optional
        tifffile compression, e.g. ``"zlib"`` (lossless); default none, which
        keeps the file memory-mappable for lazy reading.
    description : str, optional
        Free text stored as the OME image name (e.g. the producing command).

    Returns
    -------
    Path
        `path`.
    """
    path = Path(path)
    for other in protect:
        if _same_file(path, Path(other)):
            raise InputError(path, "refusing to overwrite an input file; choose another output name")
    array = np.asarray(data)
    if array.ndim != 2:
        raise InputError(path, f"can only write a 2-D grey image, got shape {array.shape}")
    if array.dtype not in WRITABLE_DTYPES:
        raise InputError(path, f"cannot write pixel type {array.dtype}")
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(path, f"pixel size must be a positive number of µm, got {pixel_size_um}")
    metadata: dict[str, Any] = {"axes": "YX", **ome_pixel_size(pixel_size_um)}
    if description:
        metadata["Name"] = description
    options = {**tiff_layout(array.shape, array.dtype), **resolution_options(pixel_size_um),
               "bigtiff": needs_bigtiff([array.shape], array.dtype)}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            tifffile.imwrite(handle, array, ome=True, metadata=metadata, compression=compression,
                             photometric="minisblack", **options)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)
