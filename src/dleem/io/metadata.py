"""Pixel size (and the databar height, bit depth) from what SEM vendors write.

Each vendor stores the pixel size differently; each reader below returns the
pixel size in micrometres, or None when its source is absent or unusable. The
order in which they are tried (`pixel_size_from_tiff`) puts vendor metadata,
written by the microscope at acquisition, before generic tags that image
software may have rewritten.

Layouts followed (no vendor publishes a formal specification; these are the
layouts that tifffile, HyperSpy/RosettaSciIO, pynxtools-em, Gwyddion and the
Fiji EM-tool macros read):

- Thermo Fisher / FEI (tags 34680 / 34682, an INI text): ``[Scan] PixelWidth``
  in metres; ``[PrivateFei] DatabarHeight`` and ``[Image] ResolutionY`` (image
  height without the databar).
- Zeiss SmartSEM (tag 34118, parsed by tifffile into ``sem_metadata``):
  ``ap_image_pixel_size`` / ``ap_pixel_size`` as ``(label, value, unit)``.
- Tescan (tag 50431, a binary header followed by ``key=value`` lines, or the
  ``.hdr`` sidecar with the same lines under ``[MAIN]``): ``PixelSizeX`` in metres.
- JEOL (``.txt`` sidecar, ``$KEY value`` lines): ``$$SM_MICRON_MARKER`` (a length
  with unit, e.g. ``10um``) spans ``$$SM_MICRON_BAR`` pixels of an image
  ``$CM_FULL_SIZE`` wide; a ``...PIXEL_SIZE`` line with a unit is used if present.
- OME-XML: ``Pixels/@PhysicalSizeX`` with ``PhysicalSizeXUnit`` (default µm).
- TIFF resolution tags: XResolution pixels per ResolutionUnit (inch, cm), or
  per the ImageJ ``unit=`` of the description when ResolutionUnit is NONE. A
  resolution of 1 with no unit is tifffile's default and means *no* pixel size;
  so do the screen/print defaults of image editors (72, 96, 300 dpi ...).
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import tifffile

log = logging.getLogger(__name__)

#: Length units in micrometres; keys are lower-case.
_UNIT_UM = {
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "pm": 1e-6, "picometer": 1e-6,
    "å": 1e-4, "a": 1e-4, "angstrom": 1e-4, "ångström": 1e-4,
    "inch": 25400.0, "in": 25400.0,
}

#: Resolutions image editors write by default (dots per inch): not a measurement.
_DEFAULT_DPI = {72.0, 96.0, 150.0, 180.0, 200.0, 240.0, 300.0, 600.0, 1200.0}

#: Plausible SEM pixel sizes (µm): from 1 pm to 1 mm. Outside, the value is refused.
_PLAUSIBLE_UM = (1e-6, 1e3)


#: A Java/JSON ``\\uXXXX`` escape: ImageJ writes µm as the six characters ``\\u00B5m``.
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def unit_to_um(unit: str) -> float | None:
    """Micrometres per `unit` (``"nm"``, ``"µm"``, ``"um"``, ``"m"`` ...), or None.

    ``\\u`` escapes are decoded first: ImageJ's Set Scale saves µm in a TIFF description
    as ``unit=\\u00B5m`` (TIFF descriptions are ASCII).
    """
    decoded = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), unit)
    return _UNIT_UM.get(decoded.strip().lower())


def _plausible(value_um: float | None, source: str) -> float | None:
    if value_um is None or not math.isfinite(value_um) or value_um <= 0:
        return None
    if not _PLAUSIBLE_UM[0] <= value_um <= _PLAUSIBLE_UM[1]:
        log.warning("ignoring implausible pixel size %.3g µm from %s", value_um, source)
        return None
    return float(value_um)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _length_um(text: str) -> float | None:
    """Parse ``"10um"``, ``"2.5 nm"``, ``"1e-8 m"`` into micrometres."""
    match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([A-Za-zµμÅå]+)\s*", text)
    if not match:
        return None
    number, factor = _number(match.group(1)), unit_to_um(match.group(2))
    return None if number is None or factor is None else number * factor


# --- Thermo Fisher / FEI --------------------------------------------------------------


def fei_pixel_size_um(fei: dict | None) -> float | None:
    """``[Scan] PixelWidth`` (metres) of FEI/Thermo Fisher metadata, in µm."""
    if not fei:
        return None
    for section in ("Scan", "EScan", "IScan"):
        width = _number(fei.get(section, {}).get("PixelWidth"))
        if width:
            return _plausible(width * 1e6, "fei_metadata")
    return None


def fei_databar_rows(fei: dict | None, height: int) -> int | None:
    """Rows of the databar burnt under an FEI image of `height` rows, from metadata."""
    if not fei:
        return None
    rows = _number(fei.get("PrivateFei", {}).get("DatabarHeight"))
    if rows is not None and 0 < rows < height:
        return int(rows)
    image_rows = _number(fei.get("Image", {}).get("ResolutionY"))
    if image_rows is not None and 0 < image_rows < height:
        return int(height - image_rows)
    return None


# --- Zeiss ----------------------------------------------------------------------------


def zeiss_pixel_size_um(sem: dict | None) -> float | None:
    """``ap_image_pixel_size`` (else ``ap_pixel_size``) of Zeiss SmartSEM metadata, in µm."""
    if not sem:
        return None
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = sem.get(key)
        if not isinstance(entry, tuple) or len(entry) < 2:
            continue
        value = entry[1]
        if len(entry) >= 3:
            number, factor = _number(value), unit_to_um(str(entry[2]))
        else:  # value and unit not split by tifffile, e.g. "2.5nm"
            length = _length_um(str(value))
            number, factor = length, 1.0
        if number is not None and factor is not None:
            return _plausible(number * factor, "sem_metadata")
    return None


# --- Tescan ---------------------------------------------------------------------------


def _key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), value.strip())
    return out


def tescan_pixel_size_um(text: str | None) -> float | None:
    """``PixelSizeX`` (metres) of a Tescan text block (tag 50431 or `.hdr` sidecar), in µm."""
    if not text:
        return None
    width = _number(_key_values(text).get("PixelSizeX"))
    return None if width is None else _plausible(width * 1e6, "tescan")


def tescan_tag_text(value: Any) -> str | None:
    """The text of Tescan's tag 50431: binary bytes (a preamble, NULs) around ``key=value`` lines."""
    if isinstance(value, str):
        return value
    if not isinstance(value, (bytes, bytearray)):
        return None
    return bytes(value).replace(b"\x00", b"").decode("latin-1", errors="replace")


# --- JEOL -----------------------------------------------------------------------------


def jeol_pixel_size_um(text: str | None, width_px: int) -> float | None:
    """Pixel size (µm) from a JEOL ``.txt`` sidecar for an image `width_px` wide.

    ``$$SM_MICRON_MARKER`` (e.g. ``10um``) is the length of the scale bar that
    spans ``$$SM_MICRON_BAR`` pixels of the ``$CM_FULL_SIZE`` image; when the saved
    image has another width (a reduced save), the pixel size scales with it.
    """
    if not text:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("$"):
            continue
        parts = line.lstrip("$").split(None, 1)
        if len(parts) == 2:
            values.setdefault(parts[0].upper(), parts[1].strip())
    full_width = None
    if "CM_FULL_SIZE" in values:
        full_width = _number(values["CM_FULL_SIZE"].split()[0])
    scale = full_width / width_px if full_width and width_px else 1.0
    bar_px = _number(values.get("SM_MICRON_BAR"))
    marker = _length_um(values.get("SM_MICRON_MARKER", ""))
    if bar_px and marker:
        return _plausible(marker / bar_px * scale, "jeol")
    for key, value in values.items():
        if key.endswith("PIXEL_SIZE"):
            length = _length_um(value)
            if length:
                return _plausible(length * scale, "jeol")
    return None


# --- OME-XML --------------------------------------------------------------------------


def ome_pixel_size_um(xml: str | None, image_index: int = 0) -> float | None:
    """``PhysicalSizeX`` (with ``PhysicalSizeXUnit``, default µm) of an OME-XML document."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    if not pixels:
        return None
    element = pixels[min(image_index, len(pixels) - 1)]
    size = _number(element.get("PhysicalSizeX"))
    factor = unit_to_um(element.get("PhysicalSizeXUnit", "µm"))
    if size is None or factor is None:
        return None
    return _plausible(size * factor, "ome")


# --- TIFF resolution tags -------------------------------------------------------------


def resolution_pixel_size_um(page: tifffile.TiffPage, imagej: dict | None) -> float | None:
    """Pixel size (µm) from XResolution / ResolutionUnit (or ImageJ's ``unit=``)."""
    tag = page.tags.get(282)  # XResolution
    if tag is None:
        return None
    try:
        numerator, denominator = tag.value
        pixels_per_unit = numerator / denominator
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not pixels_per_unit or pixels_per_unit <= 0:
        return None
    unit_tag = page.tags.get(296)  # ResolutionUnit: 1 none, 2 inch, 3 cm
    unit = int(unit_tag.value) if unit_tag is not None else 2
    if unit == 1:
        factor = unit_to_um(str((imagej or {}).get("unit", ""))) if imagej else None
        if factor is None:
            return None  # a bare ratio: tifffile's default 1/1, or unknown unit
    elif unit == 2:
        if round(pixels_per_unit, 6) in _DEFAULT_DPI or pixels_per_unit == 1:
            log.info("ignoring %g dpi: an image editor's default, not a pixel size",
                     pixels_per_unit)
            return None
        factor = _UNIT_UM["inch"]
    elif unit == 3:
        factor = _UNIT_UM["cm"]
    else:
        return None
    return _plausible(factor / pixels_per_unit, "resolution_tags")


# --- sidecars -------------------------------------------------------------------------


def read_sidecar(path: Path, suffix: str) -> str | None:
    """Text of ``path`` with `suffix` instead of its own, if such a small file exists."""
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        try:
            if candidate.is_file() and candidate.stat().st_size < 1_000_000:
                return candidate.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None
    return None


def sidecar_pixel_size_um(path: Path, width_px: int) -> tuple[float | None, str]:
    """Pixel size from a Tescan ``.hdr`` or JEOL ``.txt`` file beside the image."""
    hdr = read_sidecar(path, ".hdr")
    value = tescan_pixel_size_um(hdr)
    if value:
        return value, "tescan"
    txt = read_sidecar(path, ".txt")
    value = jeol_pixel_size_um(txt, width_px)
    if value:
        return value, "jeol"
    return None, "none"


def pixel_size_from_tiff(
    tif: tifffile.TiffFile, page: tifffile.TiffPage, path: Path, width_px: int
) -> tuple[float | None, str]:
    """The pixel size (µm) of a TIFF page and its source name (see the module docstring)."""
    value = fei_pixel_size_um(tif.fei_metadata if tif.is_fei else None)
    if value:
        return value, "fei_metadata"
    value = zeiss_pixel_size_um(tif.sem_metadata if tif.is_sem else None)
    if value:
        return value, "sem_metadata"
    tag = tif.pages.first.tags.get(50431)
    value = tescan_pixel_size_um(tescan_tag_text(tag.value) if tag is not None else None)
    if value:
        return value, "tescan"
    value, source = sidecar_pixel_size_um(path, width_px)
    if value:
        return value, source
    if tif.is_ome:
        value = ome_pixel_size_um(tif.ome_metadata, _ome_image_index(tif, page))
        if value:
            return value, "ome"
    imagej = tif.imagej_metadata if tif.is_imagej else None
    value = resolution_pixel_size_um(page, imagej)
    if value:
        return value, "resolution_tags"
    return None, "none"


def _ome_image_index(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> int:
    for index, series in enumerate(tif.series):
        if any(p is page or getattr(p, "index", None) == page.index for p in series.pages):
            return index
    return 0
