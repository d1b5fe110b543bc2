"""Write images atomically as OME-TIFF, keeping dtype and pixel size.

The pixel size goes into the OME-XML (``PhysicalSizeX/Y`` in µm, what Fiji's
Bio-Formats importer reads) and into the TIFF resolution tags (pixels per
centimetre, what ImageJ's plain TIFF opener and most other software read), so
`dleem.io.read_image` and Fiji agree on it.

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
    """Write a 2-D image to `path` as OME-TIFF, atomically.

    Parameters
    ----------
    path : path
        Output file (``.tif`` / ``.ome.tif``); parent folders are created.
    data : array_like, shape (rows, columns)
        uint8, uint16, int16, float32 or float64; written in that dtype.
    pixel_size_um : float, optional
        Pixel size in micrometres, stored as OME ``PhysicalSizeX/Y`` (µm) and as
        resolution tags (pixels per cm).
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
    metadata: dict[str, Any] = {"axes": "YX"}
    kwargs: dict[str, Any] = {}
    if description:
        metadata["Name"] = description
    if pixel_size_um:
        metadata.update(PhysicalSizeX=float(pixel_size_um), PhysicalSizeXUnit="µm",
                        PhysicalSizeY=float(pixel_size_um), PhysicalSizeYUnit="µm")
        per_cm = 1e4 / float(pixel_size_um)
        kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            tifffile.imwrite(handle, array, ome=True, metadata=metadata,
                             compression=compression, photometric="minisblack", **kwargs)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)
