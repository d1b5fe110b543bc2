"""Choose the page of a TIFF that is the image, and open it whole or lazily.

SEM TIFFs often carry more than one page: a thumbnail or reduced copies
(NewSubfileType bit 0, or simply smaller pages), pyramid levels (SubIFDs, OME
series levels). Those open on the full-resolution page without asking. Pages
that are separate images of the same size (a stack, detector channels) are
ambiguous: the caller must name one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from dleem.errors import InputError

#: Files (or pages) larger than this are opened lazily, never read whole.
LAZY_BYTES = 256 * 2**20


@dataclass
class TiffChoice:
    """The page chosen and what the reader needs to know about the file."""

    page: tifffile.TiffPage
    index: int
    n_pages: int
    note: str  # why this page: "single page", "full resolution", "page N as asked"


def _page_shape(page: tifffile.TiffPage) -> tuple[int, int]:
    return int(page.imagelength), int(page.imagewidth)


def choose_page(tif: tifffile.TiffFile, path: Path, page: int | None) -> TiffChoice:
    """The page to read: `page` if given, else the only full-resolution page."""
    pages = [p for p in tif.pages if isinstance(p, tifffile.TiffPage)]
    if not pages:
        raise InputError(path, "TIFF has no image page")
    n_pages = len(tif.pages)
    if page is not None:
        if not 0 <= page < n_pages:
            raise InputError(path, f"page {page} does not exist (the file has {n_pages} pages: 0..{n_pages - 1})")
        chosen = tif.pages[page]
        if not isinstance(chosen, tifffile.TiffPage):
            chosen = tif.pages.get(page)  # type: ignore[assignment]
        return TiffChoice(chosen, page, n_pages, f"page {page} as asked")
    if len(pages) == 1:
        return TiffChoice(pages[0], pages[0].index, n_pages, "single page")
    full = [p for p in pages if not p.is_reduced and not _is_thumbnail_type(p)]
    if not full:
        full = pages
    largest = max(_page_shape(p)[0] * _page_shape(p)[1] for p in full)
    biggest = [p for p in full if _page_shape(p)[0] * _page_shape(p)[1] == largest]
    if len(biggest) > 1:
        raise InputError(
            path,
            f"{n_pages} pages hold separate {_page_shape(biggest[0])[0]}x"
            f"{_page_shape(biggest[0])[1]} images; choose one with page=N (--page N)",
        )
    return TiffChoice(biggest[0], biggest[0].index, n_pages,
                      "full resolution (the other pages are reduced copies)")


def _is_thumbnail_type(page: tifffile.TiffPage) -> bool:
    # NewSubfileType bit 0 = reduced resolution; old SubfileType 2 = reduced image
    subfile = page.tags.get(255)
    return subfile is not None and int(subfile.value) == 2


def check_complete(page: tifffile.TiffPage, path: Path) -> None:
    """Raise if the page's pixel data lie (partly) beyond the end of the file."""
    if 0 in page.shape or not page.imagelength or not page.imagewidth:
        raise InputError(path, f"empty image (shape {tuple(page.shape)})")
    size = os.path.getsize(path)
    offsets, counts = page.dataoffsets, page.databytecounts
    if not offsets:
        raise InputError(path, "TIFF page has no pixel data")
    end = max(int(o) + int(c) for o, c in zip(offsets, counts, strict=False))
    if end > size:
        raise InputError(path, f"truncated TIFF: pixel data end at byte {end}, file has {size}")


def page_nbytes(page: tifffile.TiffPage) -> int:
    return int(np.prod(page.shaped)) * np.dtype(page.dtype).itemsize if page.dtype else 0


def open_page(path: Path, choice: TiffChoice, lazy: bool | None) -> tuple[Any, bool]:
    """The page's pixels: a NumPy array, a read-only memory-map, or a zarr array.

    A memory-map needs uncompressed, contiguous data; otherwise tifffile's zarr
    store decodes one strip or tile at a time on indexing.
    """
    page = choice.page
    if lazy is None:
        lazy = page_nbytes(page) > LAZY_BYTES
    if not lazy:
        return page.asarray(), False
    if page.is_memmappable:
        return tifffile.memmap(str(path), page=choice.index, mode="r"), True
    import zarr

    return zarr.open(page.aszarr(), mode="r"), True
