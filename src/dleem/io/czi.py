"""Zeiss CZI (ZEN, Atlas) as a lazy 2-D plane, with its pixel size.

Why pylibCZIrw: it is Zeiss's own wrapper of libCZI, maintained with it, and it
composes a mosaic on request (``read(roi=..., zoom=1)`` stitches the subblocks
that cover a rectangle, later tiles over earlier ones, as ZEN shows them), so a
window of a 40,000² map is read without decoding the rest. It also *writes* CZI,
which lets the tests make their own files. (aicspylibczi reads only.)

A CZI holds subblocks indexed by scene (S), channel (C), Z, T and rarer
dimensions (R, I, H, V, B). dleem reads one grey plane: one scene (or the whole
document when there is one), one channel, one combination of the other
dimensions ("page"). Nothing is guessed: when the file has more than one, the
error lists what is there and asks for ``scene=``, ``channel=`` or ``page=``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import InputError

log = logging.getLogger(__name__)

#: CZI pixel types dleem reads, and their NumPy dtype.
GREY_TYPES = {"Gray8": np.dtype("uint8"), "Gray16": np.dtype("uint16"),
              "Gray32Float": np.dtype("float32")}
#: Dimensions other than the channel that select a plane (the "pages").
PAGE_DIMS = ("Z", "T", "R", "I", "H", "V", "B")
CZI_MAGIC = b"ZISRAWFILE"


@dataclass(frozen=True)
class CziPlane:
    """Which plane of the file is read, and what the file holds (for messages)."""

    rect: tuple[int, int, int, int]  # x, y, w, h in CZI pixel coordinates (layer 0)
    plane: dict[str, int]
    scene: int | None
    scenes: int
    channel: int
    channels: int
    page: int
    pages: int
    pixel_type: str


class CziArray:
    """One plane of a CZI as a lazy 2-D array: indexing reads only that region.

    ``a[y0:y1, x0:x1]`` asks libCZI for that rectangle (in plane coordinates, 0 at the
    top-left of the scene) and gets the mosaic composed there; ``np.asarray(a)`` reads
    it all. Only integer and slice indices are taken; a step > 1 reads the bounding
    region and strides it. The reader opens on first use (so the array pickles).
    """

    def __init__(self, path: Path, choice: CziPlane) -> None:
        self.path = Path(path)
        self.choice = choice
        self._reader: Any = None
        self._lock = threading.Lock()

    # -- array protocol -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.choice.rect[3], self.choice.rect[2]

    @property
    def dtype(self) -> np.dtype:
        return GREY_TYPES[self.choice.pixel_type]

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"CziArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self._read(0, self.shape[0], 0, self.shape[1])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (2 - len(key) + 1) + key[i + 1:]
        if len(key) > 2:
            raise IndexError(f"too many indices for a 2-D array: {key!r}")
        key = key + (slice(None),) * (2 - len(key))
        bounds, picks = [], []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, (int, np.integer)):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} is out of bounds for size {n}")
                bounds.append((i, i + 1))
                picks.append(0)
            elif isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 1:
                    raise IndexError("CziArray takes only positive slice steps")
                stop = max(stop, start)
                bounds.append((start, stop))
                picks.append(slice(None, None, step))
            else:
                raise IndexError(f"CziArray takes integers and slices, not {type(k).__name__}")
        (y0, y1), (x0, x1) = bounds
        return self._read(y0, y1, x0, x1)[tuple(picks)]

    def crop_rows(self, rows: int) -> CziArray:
        """The top `rows` rows, still lazy (a databar crop)."""
        x, y, w, _ = self.choice.rect
        return CziArray(self.path, replace(self.choice, rect=(x, y, w, rows)))

    # -- reading --------------------------------------------------------------------
    def _read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=self.dtype)
        x, y, _, _ = self.choice.rect
        roi = (x + x0, y + y0, x1 - x0, y1 - y0)
        try:
            with self._lock:
                if self._reader is None:
                    self._reader = _open(self.path)
                data = self._reader.read(roi=roi, plane=self.choice.plane, scene=self.choice.scene,
                                         zoom=1.0, pixel_type=self.choice.pixel_type)
        except InputError:
            raise
        except Exception as error:  # noqa: BLE001 - libCZI raises RuntimeError on bad subblocks
            raise InputError(self.path, f"corrupt CZI: cannot read pixels ({_short(error)})") from None
        return np.asarray(data).reshape(y1 - y0, x1 - x0)

    def close(self) -> None:
        """Close the file (it reopens on the next read)."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "choice": self.choice}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["choice"])  # type: ignore[misc]

    def __del__(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()


def _open(path: Path) -> Any:
    from pylibCZIrw.czi import CziReader

    try:
        return CziReader(str(path))
    except Exception as error:  # noqa: BLE001 - libCZI: RuntimeError for any bad structure
        text = _short(error)
        if "Not enough data" in text:
            raise InputError(path, f"truncated CZI ({text})") from None
        raise InputError(path, f"not a readable CZI ({text})") from None


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    reader = _open(path)
    try:
        yield reader
    finally:
        reader.close()


def has_czi_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(CZI_MAGIC)) == CZI_MAGIC


def read_czi(path: Path, *, scene: int | None, channel: int | None,
             page: int | None) -> tuple[CziArray, float | None, str, dict[str, Any]]:
    """Open the chosen plane lazily: (array, pixel size µm or None, its source, metadata)."""
    with _opened(path) as reader:
        try:
            box = reader.total_bounding_box_no_pyramid
            scene_rects = _scene_rects(reader)
            pixel_types = reader.pixel_types
            metadata = reader.metadata
        except InputError:
            raise
        except Exception as error:  # noqa: BLE001
            raise InputError(path, f"corrupt CZI ({_short(error)})") from None
    choice = choose_plane(path, box, scene_rects, pixel_types, scene, channel, page)
    pixel_size, scaling = pixel_size_from_metadata(metadata, path)
    meta = {"czi": {
        "scene": choice.scene, "scenes": choice.scenes, "channel": choice.channel,
        "channels": choice.channels, "plane": dict(choice.plane), "pixel_type": choice.pixel_type,
        "origin_px": list(choice.rect[:2]), "scaling_m": scaling,
    }}
    return CziArray(path, choice), pixel_size, ("czi_metadata" if pixel_size else "none"), meta


def _scene_rects(reader: Any) -> dict[int, tuple[int, int, int, int]]:
    """Layer-0 rectangle of each scene; {} for a file without an S dimension."""
    try:
        rects = reader.scenes_bounding_rectangle_no_pyramid
    except ValueError:  # scene count in the metadata disagrees with the subblocks
        rects = reader.scenes_bounding_rectangle
    return {int(s): (r.x, r.y, r.w, r.h) for s, r in sorted(rects.items())}


def choose_plane(
    path: Path, box: dict[str, tuple[int, int]], scene_rects: dict[int, tuple[int, int, int, int]],
    pixel_types: dict[int, str], scene: int | None, channel: int | None, page: int | None,
) -> CziPlane:
    """The plane to read: each of scene, channel, page as asked, or the only one there is."""
    holds = _describe(box, scene_rects, pixel_types)
    if scene is not None and scene not in scene_rects and not (scene == 0 and not scene_rects):
        raise InputError(path, f"scene {scene} does not exist ({holds})")
    if scene is None and len(scene_rects) > 1:
        raise InputError(path, f"{holds}; choose a scene with scene=N (--scene N)")
    n_channels = box["C"][1] - box["C"][0]
    if channel is not None and not 0 <= channel < n_channels:
        raise InputError(path, f"channel {channel} does not exist ({holds})")
    if channel is None and n_channels > 1:
        raise InputError(path, f"{holds}; choose a channel with channel=N (--channel N)")
    dims = [d for d in PAGE_DIMS if d in box and box[d][1] - box[d][0] > 1]
    combos = list(itertools.product(*(range(*box[d]) for d in dims)))
    if page is not None and not 0 <= page < len(combos):
        raise InputError(path, f"page {page} does not exist ({holds})")
    if page is None and len(combos) > 1:
        raise InputError(path, f"{holds}; choose a plane with page=N (--page N), "
                               f"N in 0..{len(combos) - 1} over {' x '.join(dims)}")
    c = box["C"][0] + (channel or 0)
    plane = {"C": c, **{d: box[d][0] for d in ("Z", "T") if d in box}}
    plane.update(zip(dims, combos[page or 0], strict=True))
    pixel_type = pixel_types.get(c - box["C"][0], "Invalid")
    if pixel_type not in GREY_TYPES:
        kind = "RGB " if pixel_type.startswith("Bgr") else ""
        raise InputError(path, f"unsupported {kind}pixel type {pixel_type} in channel {c} "
                               f"(dleem reads {', '.join(GREY_TYPES)})")
    if scene_rects:
        chosen = scene if scene is not None else next(iter(scene_rects))
        rect = scene_rects[chosen]
    else:
        chosen = None
        rect = (box["X"][0], box["Y"][0], box["X"][1] - box["X"][0], box["Y"][1] - box["Y"][0])
    if rect[2] <= 0 or rect[3] <= 0:
        raise InputError(path, f"empty CZI plane ({rect[3]} x {rect[2]} pixels)")
    return CziPlane(rect=rect, plane=plane, scene=chosen if len(scene_rects) > 1 else None,
                    scenes=max(len(scene_rects), 1), channel=c - box["C"][0], channels=n_channels,
                    page=page or 0, pages=len(combos), pixel_type=pixel_type)


def _describe(box: dict[str, tuple[int, int]], scene_rects: dict[int, tuple[int, int, int, int]],
              pixel_types: dict[int, str]) -> str:
    """What the file holds, in one line: scenes with their size, channels with their type."""
    parts = []
    if scene_rects:
        scenes = ", ".join(f"{s}: {r[3]}x{r[2]}" for s, r in scene_rects.items())
        parts.append(f"{len(scene_rects)} scene{'s' * (len(scene_rects) > 1)} ({scenes})")
    channels = ", ".join(f"{c}: {t}" for c, t in pixel_types.items())
    parts.append(f"{len(pixel_types)} channel{'s' * (len(pixel_types) > 1)} ({channels})")
    for d in PAGE_DIMS:
        if d in box and box[d][1] - box[d][0] > 1:
            parts.append(f"{box[d][1] - box[d][0]} {d}")
    return "the file holds " + ", ".join(parts)


def pixel_size_from_metadata(metadata: dict[str, Any], path: Path) -> tuple[float | None, dict]:
    """X pixel size in µm from ``Scaling/Items/Distance`` (metres), and the raw values.

    None when the file gives no positive X size (dleem then asks the user, as for a TIFF
    without one). Non-square pixels are logged: dleem assumes square pixels and uses X.
    """
    try:
        items = metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
    except (KeyError, TypeError):
        return None, {}
    if isinstance(items, dict):
        items = [items]
    scaling: dict[str, float] = {}
    for item in items if isinstance(items, list) else []:
        try:
            scaling[str(item["@Id"])] = float(item["Value"])
        except (KeyError, TypeError, ValueError):
            continue
    x, y = scaling.get("X"), scaling.get("Y")
    if not x or not np.isfinite(x) or x <= 0:
        return None, scaling
    if y and abs(y - x) > 0.01 * x:
        log.warning("%s: pixels are not square (X %.6g m, Y %.6g m); using X", path, x, y)
    return float(f"{x * 1e6:.12g}"), scaling  # metres to µm, without float noise


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
