"""Open SEM images (TIFF, PNG, JPEG, BMP, zarr, Zeiss CZI) as 2-D grey arrays with their pixel size.

What `read_image` guarantees, whatever the file:

- ``.data`` is 2-D (rows, columns), in the file's own dtype (uint8, uint16,
  int16, float32 or float64; float16 is widened to float32). Other dtypes
  (bool, 32/64-bit integers, complex) are refused: no SEM digitises into
  them, and silently rescaling them would hide an error upstream.
- RGB(A) files are reduced to one channel, with a warning: the first channel
  when the channels are equal (grey saved as colour), else Rec. 709 luminance.
- Files larger than `LAZY_BYTES` (256 MiB) are not read: ``.data`` is then a
  read-only memory-map (uncompressed TIFF), a zarr array (compressed TIFF,
  zarr) or a `CziArray` (CZI: libCZI composes the mosaic in the window asked
  for); index it to read a window.
- ``.pixel_size_um`` comes with ``.pixel_size_source``; the user's value wins.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from dleem.errors import InputError
from dleem.io import metadata as md
from dleem.io.czi import CziArray, has_czi_magic, read_czi
from dleem.io.databar import detect_databar
from dleem.io.tiff import LAZY_BYTES, check_complete, choose_page, open_page

log = logging.getLogger(__name__)

SUPPORTED_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64"))
TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8", ".tf2"}
ZARR_SUFFIXES = {".zarr", ".zr"}
CZI_SUFFIXES = {".czi"}
#: Files that make a folder a zarr store (v2 array / group, v3).
ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
Databar = Literal["keep", "detect", "crop"]


@dataclass
class SEMImage:
    """A 2-D grey image with the physical facts dleem needs.

    `data` is a NumPy array, or a lazy array (memory-map, zarr, dask after a lazy
    crop) for large files: index it (``data[y0:y1, x0:x1]``) to read a window.

    Attributes
    ----------
    pixel_size_um : float or None
        Physical size of one pixel (µm), square pixels assumed.
    pixel_size_source : str
        Where it came from: ``"fei_metadata"``, ``"sem_metadata"``, ``"tescan"``,
        ``"jeol"``, ``"ome"``, ``"resolution_tags"``, ``"czi_metadata"``, ``"user"`` or
        ``"none"``.
    bits_used : int or None
        Bits the detector really used (12-bit data in a 16-bit file gives 12);
        None for floating-point data.
    bits_source : str
        ``"metadata"`` (the file says), ``"max_value"`` (from the largest value,
        rounded up to 8/10/12/14/16), ``"dtype"`` or ``"none"``.
    databar_rows : int
        Rows of the databar found under the image (0: none or not looked for).
        With ``databar="crop"`` they are already removed from `data`.
    databar_source : str
        ``"fei_metadata"``, ``"detected"``, ``"user"`` or ``"none"``.
    page, pages : int
        The page read and the number of pages in the file (1 for non-TIFF). For a CZI,
        a page is one combination of its Z, T (and rarer) indices.
    page_reason : str
        Why that page: ``"single page"``, ``"full resolution (...)"``, ``"page N as asked"``.
    lazy : bool
        True when `data` is a memory-map, zarr/dask array or `CziArray`, not in memory.
    metadata : dict
        Vendor metadata as parsed (for reports); may be empty. A CZI's is under
        ``"czi"``: the scene and channel read, how many there are, the plane, pixel type.
    """

    data: Any
    path: Path | None
    pixel_size_um: float | None
    pixel_size_source: str
    bits_used: int | None = None
    bits_source: str = "none"
    databar_rows: int = 0
    databar_source: str = "none"
    page: int = 0
    pages: int = 1
    lazy: bool = False
    format: str = ""
    page_reason: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)


def read_image(
    path: str | PathLike[str],
    *,
    pixel_size_um: float | None = None,
    page: int | None = None,
    databar: Databar | int = "detect",
    lazy: bool | None = None,
    scene: int | None = None,
    channel: int | None = None,
) -> SEMImage:
    """Read an SEM image as a 2-D grey array with its pixel size.

    Parameters
    ----------
    path : path
        TIFF (any compression imagecodecs decodes), PNG, JPEG, BMP, a zarr
        array / OME-Zarr directory, or a Zeiss CZI (a mosaic is read stitched).
    pixel_size_um : float, optional
        Pixel size in micrometres; overrides whatever the file says
        (source ``"user"``).
    page : int, optional
        TIFF page to read. Needed only when the pages are separate images of the
        same size; thumbnails and reduced copies are skipped without it. For a CZI,
        the Z/T plane, needed only when it has several.
    databar : {"keep", "detect", "crop"} or int
        ``"detect"`` (default) finds the databar (FEI metadata, else
        `detect_databar`) and reports its rows in ``.databar_rows`` but keeps
        the pixels; ``"crop"`` also removes them; ``"keep"`` does not look.
        An int crops that many rows.
    lazy : bool, optional
        Force (True) or forbid (False) lazy opening of TIFF, zarr and CZI; default:
        lazy above `LAZY_BYTES`. PNG, JPEG and BMP are always read whole.
    scene, channel : int, optional
        CZI only: the scene and channel to read, needed only when the file has
        several (the error then lists them).

    Returns
    -------
    SEMImage

    Raises
    ------
    InputError
        Missing, unreadable, truncated or empty file; unsupported dtype;
        several same-size pages without `page`; a CZI with several scenes, channels
        or planes and no choice, or RGB / complex pixels; a non-positive `pixel_size_um`.
    """
    path = Path(path)
    if pixel_size_um is not None and not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(path, f"pixel size must be a positive number of µm, got {pixel_size_um}")
    if databar not in ("keep", "detect", "crop") and not (
        isinstance(databar, int) and not isinstance(databar, bool) and databar >= 0
    ):
        raise InputError(path, f"databar must be 'keep', 'detect', 'crop' or a row count, got {databar!r}")
    if not path.exists():
        raise InputError(path, "file not found")
    if (scene is not None or channel is not None) and not _is_czi(path):
        raise InputError(path, "scene and channel apply to CZI files only")
    try:
        image = _read_any(path, page, lazy, scene, channel)
    except OSError as error:  # permissions, a vanished network share ...
        raise InputError(path, f"cannot be read ({error.strerror or error})") from None
    if page is not None and image.pages == 1 and page != 0:
        raise InputError(path, f"page {page} does not exist (the file has 1 page)")

    image.data = _to_grey(image.data, path, image.lazy)
    _check_array(image.data, path)
    if image.data.dtype == np.float16:
        image.data = np.asarray(image.data, dtype=np.float32)
    if image.bits_used is None:
        image.bits_used, image.bits_source = bits_in_use(image.data, image.lazy)
    _apply_databar(image, databar)
    if pixel_size_um is not None:
        image.pixel_size_um, image.pixel_size_source = float(pixel_size_um), "user"
    return image


def load_array(data: Any, source: str | PathLike[str] | None, *, what: str,
               working_bytes_per_px: int = 8, advice: str = "crop or bin the image first",
               ) -> np.ndarray:
    """A (lazy) 2-D image in memory, for a step that needs all of it, refused in one line
    when the step cannot work on it: more pixels than the available memory holds (checked
    from the declared shape, before a byte is decoded), or NaN / Inf in a float image.

    ``working_bytes_per_px`` is the step's own working memory per pixel beyond the pixels
    themselves (8: one float64 copy).
    """
    from dleem.io.resources import check_memory

    rows, cols = (int(n) for n in data.shape)
    need = rows * cols * (np.dtype(data.dtype).itemsize + working_bytes_per_px)
    check_memory(source, need, f"its {rows} x {cols} px ({what})", advice)
    array = np.asarray(data)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            n_nan = int(np.isnan(array).sum())
            y, x = (int(v) for v in np.argwhere(bad)[0])
            raise InputError(source, f"holds {n_nan} NaN and {int(bad.sum()) - n_nan} infinite pixels "
                                     f"(the first at row {y}, column {x}); replace or crop them first")
    return array


# --- formats --------------------------------------------------------------------------


def _read_any(path: Path, page: int | None, lazy: bool | None, scene: int | None,
              channel: int | None) -> SEMImage:
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in ZARR_SUFFIXES:
        return _read_zarr(path, lazy)
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    if _is_czi(path):
        return _read_czi(path, page, lazy, scene, channel)
    if suffix in TIFF_SUFFIXES or _has_tiff_magic(path):
        return _read_tiff(path, page, lazy)
    return _read_other(path)


def _is_czi(path: Path) -> bool:
    if path.suffix.lower() in CZI_SUFFIXES:
        return True
    return path.is_file() and has_czi_magic(path)


def _read_czi(path: Path, page: int | None, lazy: bool | None, scene: int | None,
              channel: int | None) -> SEMImage:
    """One plane of a CZI: a `CziArray` when lazy, else read whole into memory."""
    if not has_czi_magic(path):
        raise InputError(path, "not a CZI file (no ZISRAWFILE header)")
    array, pixel_size, source, meta = read_czi(path, scene=scene, channel=channel, page=page)
    is_lazy = array.nbytes > LAZY_BYTES if lazy is None else lazy
    data: Any = array
    if not is_lazy:
        data = np.asarray(array)
        array.close()
    choice = array.choice
    what = [f"scene {choice.scene}" if choice.scene is not None else "",
            f"channel {choice.channel}" if choice.channels > 1 else "",
            f"page {choice.page}" if choice.pages > 1 else ""]
    reason = ", ".join(w for w in what if w) + " as asked" if any(what) else "single plane"
    return SEMImage(data, path, pixel_size, source, page=choice.page, pages=choice.pages,
                    lazy=is_lazy, format="CZI", metadata=meta, page_reason=reason)


def _has_tiff_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _read_tiff(path: Path, page: int | None, lazy: bool | None) -> SEMImage:
    try:
        tif = tifffile.TiffFile(path)
    except Exception as error:  # noqa: BLE001 - any parser failure is a bad file
        raise InputError(path, f"not a readable TIFF ({_short(error)})") from None
    with tif:
        try:
            choice = choose_page(tif, path, page)
            check_complete(choice.page, path)
            data, is_lazy = open_page(path, choice, lazy)
            height, width = int(choice.page.imagelength), int(choice.page.imagewidth)
            pixel_size, source = md.pixel_size_from_tiff(tif, choice.page, path, width)
            fei = tif.fei_metadata if tif.is_fei else None
            meta: dict[str, Any] = {}
            if fei:
                meta["fei"] = fei
            if tif.is_sem:
                meta["zeiss"] = tif.sem_metadata
            bits = _bits_from_tags(choice.page)
        except InputError:
            raise
        except Exception as error:  # noqa: BLE001
            raise InputError(path, f"corrupt TIFF ({_short(error)})") from None
    image = SEMImage(
        data, path, pixel_size, source, page=choice.index, pages=choice.n_pages,
        lazy=is_lazy, format="TIFF", metadata=meta, page_reason=choice.note,
    )
    if bits:
        image.bits_used, image.bits_source = bits, "metadata"
    rows = md.fei_databar_rows(fei, height)
    if rows:
        image.databar_rows, image.databar_source = rows, "fei_metadata"
    if choice.note.startswith("full resolution"):
        log.info("%s: %d pages; reading page %d, %s", path, choice.n_pages, choice.index,
                 choice.note)
    return image


def _bits_from_tags(page: tifffile.TiffPage) -> int | None:
    """The real bit depth when the TIFF says it: BitsPerSample below the container
    (12-bit packed samples decode to uint16) or MaxSampleValue (281) below its maximum."""
    if not np.issubdtype(page.dtype, np.integer):
        return None
    container_bits = np.dtype(page.dtype).itemsize * 8
    if 0 < int(page.bitspersample) < container_bits:
        return int(page.bitspersample)
    tag = page.tags.get(281)
    if tag is None:
        return None
    value = tag.value[0] if isinstance(tag.value, tuple) else tag.value
    if not value or value >= np.iinfo(page.dtype).max:
        return None
    return int(value).bit_length()


def _read_other(path: Path) -> SEMImage:
    """PNG, JPEG, BMP ... through imagecodecs (keeps 16-bit PNG), Pillow as fallback."""
    import imagecodecs

    try:
        data = imagecodecs.imread(str(path))
        fmt = path.suffix.lstrip(".").upper() or "image"
    except Exception:  # noqa: BLE001
        try:
            from PIL import Image

            with Image.open(path) as im:
                fmt = im.format or "image"
                data = np.asarray(im)
        except Exception as error:  # noqa: BLE001
            raise InputError(path, f"cannot be read as an image ({_short(error)})") from None
    pixel_size, source = md.sidecar_pixel_size_um(path, int(data.shape[1]) if data.ndim >= 2 else 0)
    return SEMImage(data, path, pixel_size, source, format=fmt)


def _read_zarr(path: Path, lazy: bool | None) -> SEMImage:
    """A zarr array, or a group holding one (OME-Zarr: level 0 of the first multiscale)."""
    import zarr

    if path.is_dir() and not any((path / name).exists() for name in ZARR_MARKERS):
        raise InputError(path, "is a folder, not an image file nor a zarr store")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as error:  # noqa: BLE001
        raise InputError(path, f"not a readable zarr store ({_short(error)})") from None
    pixel_size: float | None = None
    source = "none"
    if isinstance(node, zarr.Group):
        attrs = dict(node.attrs)
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if multiscales:
            first = multiscales[0]
            dataset = first["datasets"][0]
            array = node[dataset["path"]]
            pixel_size = _ome_zarr_pixel_size(first, dataset)
            source = "ome" if pixel_size else "none"
        else:
            arrays = list(node.array_keys())
            if len(arrays) != 1:
                raise InputError(path, f"zarr group holds {len(arrays)} arrays; give the path of one")
            array = node[arrays[0]]
    else:
        array = node
        attrs = dict(array.attrs)
        if "pixel_size_um" in attrs:
            pixel_size, source = float(attrs["pixel_size_um"]), "ome"
    nbytes = int(np.prod(array.shape)) * np.dtype(array.dtype).itemsize
    is_lazy = nbytes > LAZY_BYTES if lazy is None else lazy
    extra = array.ndim - 2
    if extra > 0 and all(n == 1 for n in array.shape[:extra]):  # OME-Zarr t, c, z of length 1
        if is_lazy:
            import dask.array as da

            data = da.from_zarr(array)[(0,) * extra]
        else:
            data = np.asarray(array[...]).reshape(array.shape[extra:])
    else:
        data = array if is_lazy else np.asarray(array[...])
    return SEMImage(data, path, pixel_size, source, lazy=is_lazy, format="zarr")


def _ome_zarr_pixel_size(multiscale: dict, dataset: dict) -> float | None:
    axes = multiscale.get("axes") or []
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") != "scale":
            continue
        scale = transform["scale"]
        names = [a.get("name") if isinstance(a, dict) else a for a in axes] or ["y", "x"][-len(scale):]
        if "x" not in names or len(names) != len(scale):
            return None
        index = names.index("x")
        unit = axes[index].get("unit", "micrometer") if isinstance(axes[index], dict) else "micrometer"
        factor = md.unit_to_um(unit)
        return None if factor is None else float(scale[index]) * factor
    return None


# --- conversions and checks -----------------------------------------------------------


def _to_grey(data: Any, path: Path, lazy: bool) -> Any:
    """Reduce RGB(A) to one channel (warning), drop singleton axes."""
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[-1] not in (3, 4):
        data = np.moveaxis(np.asarray(data), 0, -1)  # planar RGB
    if data.ndim == 3 and data.shape[-1] in (2, 3, 4):
        channels = data.shape[-1]
        colour = 3 if channels >= 3 else 1
        samples = _windows(data) if lazy else [np.asarray(data)]
        spread = max(float(np.ptp(w[..., :colour].astype(np.float64), axis=-1).max()) for w in samples)
        if np.issubdtype(data.dtype, np.integer):
            near = 0.01 * np.iinfo(data.dtype).max
        else:
            near = 0.01 * max(float(np.ptp(w[..., :colour])) for w in samples)
        grey = spread == 0
        if lazy:
            import dask.array as da

            data = da.from_array(data, chunks=(1024, 1024, channels)) if not hasattr(data, "dask") else data
        if grey:
            warnings.warn(f"{path}: {channels}-channel file with equal channels: read as one grey channel",
                          stacklevel=3)
            return data[..., 0]
        if spread <= near:  # grey through a lossy codec (JPEG): channels differ by noise
            warnings.warn(f"{path}: grey image saved as colour (channels within {spread:g}): "
                          "read as one grey channel (Rec. 709 luminance)", stacklevel=3)
        else:
            warnings.warn(f"{path}: colour image converted to grey by Rec. 709 luminance",
                          stacklevel=3)
        weights = np.array([0.2125, 0.7154, 0.0721])
        lum = data[..., 0] * weights[0] + data[..., 1] * weights[1] + data[..., 2] * weights[2]
        if np.issubdtype(data.dtype, np.integer):
            info = np.iinfo(data.dtype)
            lum = lum.round().clip(info.min, info.max)
        return lum.astype(data.dtype)
    if data.ndim > 2:
        squeezed = [n for n in data.shape if n != 1]
        if len(squeezed) == 2 and not lazy:
            return np.asarray(data).reshape(squeezed)
    return data


def _check_array(data: Any, path: Path) -> None:
    if data.ndim != 2:
        raise InputError(path, f"expected a 2-D grey image, got shape {tuple(data.shape)}")
    if 0 in data.shape:
        raise InputError(path, f"empty image (shape {tuple(data.shape)})")
    dtype = np.dtype(data.dtype)
    if dtype not in SUPPORTED_DTYPES and dtype != np.float16:
        raise InputError(
            path,
            f"unsupported pixel type {dtype} (dleem reads uint8, uint16, int16, float32, float64)",
        )


def _windows(data: Any, grid: int = 4, size: int = 256) -> list[np.ndarray]:
    """`grid` x `grid` windows of `size` pixels spread over a (lazy) image."""
    height, width = int(data.shape[0]), int(data.shape[1])
    out = []
    for y in np.linspace(0, max(height - size, 0), grid).astype(int):
        for x in np.linspace(0, max(width - size, 0), grid).astype(int):
            out.append(np.asarray(data[y:y + size, x:x + size]))
    return out


def bits_in_use(data: Any, lazy: bool = False) -> tuple[int | None, str]:
    """Bits the data really use, from its largest value (16 windows when lazy).

    16-bit containers are rounded up to the ADC depths SEMs use (10, 12, 14, 16),
    so a dark 12-bit image is not reported as 11-bit.
    """
    dtype = np.dtype(data.dtype)
    if not np.issubdtype(dtype, np.integer):
        return None, "none"
    if dtype.itemsize == 1:
        return 8, "dtype"
    if lazy:  # never decode a whole large file for a statistic: sample windows
        top = max(int(w.max()) for w in _windows(data))
    else:
        top = int(np.asarray(data).max())
    bits = max(top, 1).bit_length()
    for depth in (8, 10, 12, 14, 16):
        if bits <= depth:
            return depth, "max_value"
    return dtype.itemsize * 8, "dtype"


def _apply_databar(image: SEMImage, databar: Databar | int) -> None:
    if databar == "keep":
        image.databar_rows, image.databar_source = 0, "none"
        return
    if isinstance(databar, int):
        image.databar_rows, image.databar_source = databar, "user"
    elif not image.databar_rows:
        image.databar_rows = detect_databar(image.data)
        image.databar_source = "detected" if image.databar_rows else "none"
    if databar == "detect" or not image.databar_rows:
        return
    if image.databar_rows >= image.shape[0]:
        raise InputError(image.path, f"databar of {image.databar_rows} rows leaves no image")
    keep = image.shape[0] - image.databar_rows
    if isinstance(image.data, CziArray):
        image.data = image.data.crop_rows(keep)
    elif image.lazy and not isinstance(image.data, np.ndarray):
        import dask.array as da

        data = image.data if hasattr(image.data, "dask") else da.from_zarr(image.data)
        image.data = data[:keep]
    else:
        image.data = image.data[:keep]


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
