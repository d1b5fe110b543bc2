"""Open SEM images (TIFF, PNG, JPEG, zarr) as 2-D arrays with their pixel size."""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import tifffile

from dleem.errors import InputError


@dataclass
class SEMImage:
    """A 2-D grey image with the physical facts dleem needs.

    `data` is a NumPy array, or a lazy array (memory-map, zarr) for large files:
    index it (`data[y0:y1, x0:x1]`) to read a window.
    """

    data: np.ndarray
    path: Path | None
    pixel_size_um: float | None
    pixel_size_source: str

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)


def read_image(
    path: str | PathLike[str], *, pixel_size_um: float | None = None, page: int | None = None
) -> SEMImage:
    """Read a grey image; `pixel_size_um` overrides whatever the file says."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        if path.suffix.lower() in {".tif", ".tiff"}:
            data = tifffile.imread(path, key=page or 0)
        else:
            from skimage.io import imread

            data = imread(path)
    except Exception as error:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(path, f"cannot be read as an image ({error})") from None
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        data = data[..., 0]
    if data.ndim != 2 or data.size == 0:
        raise InputError(path, f"expected a 2-D grey image, got shape {data.shape}")
    source = "user" if pixel_size_um is not None else "none"
    return SEMImage(data, path, pixel_size_um, source)
