"""Find the databar (info panel) that many SEMs burn in under the image.

A databar is a band of full-width rows at the bottom whose pixels are mostly
one background value (black, white or grey) with text, logos and a scale bar
on it, often separated from the image by a one- or two-pixel line. An SEM
image row is never like that: detector noise spreads its values. The test
per row is therefore "what fraction of the row lies within a small tolerance of
the band's background value"; the databar is the run of such rows that reaches
the bottom edge, extended upward over uniform separator lines and over text
lines (however dense the text, some background shows between the glyphs: on a
128 px wide image a line of text is only about 20 % background), and accepted
only when the rows just above it look like image. Because a burnt-in panel is
drawn digitally, most of its pixels also equal their left neighbour exactly,
which detector noise never produces: that keeps a dark, low-contrast region at
the bottom of an image from passing for a databar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: A databar row has at least this fraction of its pixels at the background value.
_BACKGROUND_FRACTION = 0.55
#: ... and at least this fraction of its pixels equal to their left neighbour.
_SAME_NEIGHBOURS = 0.5
#: An image row just above the bar has at most this fraction at any single value band.
_IMAGE_FRACTION = 0.35
#: Search the bottom part of the image only: a databar is at most this share of the height.
_MAX_SHARE = 0.4
#: ... and at least this many rows (text needs room).
_MIN_ROWS = 6
#: Reading limits for large (lazy) images: a databar is never taller than this.
_MAX_ROWS = 4096
_FIRST_ROWS = 256
_MAX_COLUMNS = 2048
#: Rows inside a bar that may fall below the background fraction for no known reason.
_GAP_ROWS = 3
#: Rows of a text line still show this fraction of background between the glyphs, however
#: dense the text (narrow images, big fonts): such rows are bridged when bar rows lie
#: above them again ...
_TEXT_BACKGROUND = 0.15
#: ... up to a text line height of this share of the width (at least 8 rows), so that a
#: dark image above a black bar is not taken for text.
_TEXT_SHARE = 1 / 16


def _tolerance(band: np.ndarray) -> float:
    if np.issubdtype(band.dtype, np.integer) and np.iinfo(band.dtype).max <= 255:
        return 2.0
    # 1 % of the image's range; the interquartile range keeps bright ink (a 12-bit image
    # under a panel drawn at the container's maximum, 65535) from widening it
    low, q1, q3, high = np.percentile(band, [1, 25, 75, 99])
    return max(min(float(high - low) * 0.01, float(q3 - q1) * 0.035), 1e-12)


def _background(rows: np.ndarray, tol: float) -> float:
    """The most common value of the bottom rows, binned at the tolerance."""
    values = rows.ravel().astype(np.float64)
    bins = np.round(values / (2 * tol))
    uniq, counts = np.unique(bins, return_counts=True)
    return float(uniq[np.argmax(counts)] * 2 * tol)


def detect_databar(image: Any) -> int:
    """Number of databar rows at the bottom of an SEM image (0 when there is none).

    Parameters
    ----------
    image : array_like, shape (rows, columns)
        The grey image, NumPy or lazy (memory-map, zarr, dask): only a band
        of bottom rows is read (256 rows, widened while the bar may be taller,
        up to 40 % of the height or 4096 rows).

    Returns
    -------
    int
        Rows to drop from the bottom so that what is left is image only (the
        databar and any separator line above it). 0 if no databar is found.

    Notes
    -----
    FEI / Thermo Fisher files say the height of their databar in their metadata;
    `dleem.io.read_image` uses that instead of this detector when present.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    search = min(max(int(height * _MAX_SHARE), 1), _MAX_ROWS)
    if height < 4 * _MIN_ROWS or width < 16:
        return 0
    step = max(1, width // _MAX_COLUMNS)  # large images: every step-th column is plenty
    rows = min(search, _FIRST_ROWS)
    while True:  # read a bottom band; widen it only while the bar may reach beyond it
        band = np.asarray(image[height - rows:height, ::step], dtype=np.float32)
        found = _scan(band, width)
        if found is not None or rows >= search:
            return found or 0
        rows = min(search, 2 * rows)


def _scan(band: np.ndarray, width: int) -> int | None:
    """Databar rows at the bottom of `band` (of an image `width` columns wide); None when
    the bar may extend above it."""
    n = band.shape[0]
    text_rows = max(8, int(width * _TEXT_SHARE))
    tol = _tolerance(band)
    background = _background(band[-max(2, _MIN_ROWS // 2):], tol)
    frac = (np.abs(band - background) <= tol).mean(axis=1)
    # uniform rows (a separator line of any grey value)
    spread = band.max(axis=1) - band.min(axis=1)
    uniform = spread <= 2 * tol
    # burnt-in panels are digital: runs of identical neighbours, which detector noise
    # never makes, even in a dark, low-contrast part of the image
    same = (np.diff(band, axis=1) == 0).mean(axis=1)
    bar_like = ((frac >= _BACKGROUND_FRACTION) & (same >= _SAME_NEIGHBOURS)) | uniform
    if not bar_like[-1]:
        return 0
    # climb from the bottom over bar-like rows, bridging text lines (rows with background
    # between the glyphs) and a few other rows; the bar's top is always a bar-like row
    text_like = frac >= _TEXT_BACKGROUND
    top, gap, run = n - 1, 0, 0
    for index in range(n - 1, -1, -1):
        if bar_like[index]:
            top, gap, run = index, 0, 0
            continue
        run += 1
        gap += not text_like[index]
        if gap > _GAP_ROWS or run > text_rows:
            break
    else:
        return None  # no image row found above the bar inside this band
    rows = n - top
    if rows < _MIN_ROWS:
        return 0  # too thin to hold text
    # the rows just above must look like image: not flat, not at the bar's background
    above = band[max(0, top - 4):top]
    above_frac = (np.abs(above - background) <= tol).mean(axis=1)
    above_spread = above.max(axis=1) - above.min(axis=1)
    if np.any(above_frac > _IMAGE_FRACTION) or np.any(above_spread <= 2 * tol):
        return 0
    # a databar carries something (text, scale bar): some rows are not blank
    if np.all(spread[top:] <= 2 * tol):
        return 0
    return int(rows)
