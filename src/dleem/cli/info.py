"""`dleem info FILE`: what dleem sees in an image file, before any work is done on it."""

from __future__ import annotations

import argparse
import math
import sys

from dleem.cli.options import add_plane_options, plane


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of µm, got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show an image's shape, dtype, bit depth, pixel size (and its source), pages, databar",
        description="Print what dleem reads from an image file: shape, dtype, the bit depth in "
        "use (12-bit data in a 16-bit file is common), the pixel size and where it came from, "
        "the pages, a databar if one is found, and whether the file is opened lazily.",
    )
    p.add_argument("file", metavar="FILE", help="TIFF, PNG, JPEG, zarr or Zeiss CZI image")
    p.add_argument("--pixel-size", type=_positive_float, metavar="UM", default=None,
                   help="pixel size in µm (overrides the file's metadata)")
    add_plane_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.io import read_image

    image = read_image(args.file, pixel_size_um=args.pixel_size, databar="detect", **plane(args))
    rows, cols = image.shape
    lines = [
        f"file:        {image.path}",
        f"format:      {image.format or 'unknown'}",
        f"shape:       {rows} x {cols} (rows x columns)",
        f"dtype:       {image.dtype}",
    ]
    if image.bits_used is None:
        lines.append("bits used:   n/a (floating point)")
    else:
        lines.append(f"bits used:   {image.bits_used} ({image.bits_source})")
    if image.pixel_size_um is None:
        lines.append("pixel size:  unknown (none in the file; give --pixel-size)")
    else:
        lines.append(f"pixel size:  {image.pixel_size_um:.6g} µm ({image.pixel_size_source})")
    reason = f": {image.page_reason}" if image.pages > 1 and image.page_reason else ""
    lines.append(f"pages:       {image.pages} (reading page {image.page}{reason})")
    czi = image.metadata.get("czi")
    if czi:
        scene = "the only scene" if czi["scene"] is None else f"scene {czi['scene']} of {czi['scenes']}"
        lines.append(f"czi:         {scene}, channel {czi['channel']} of "
                     f"{czi['channels']} ({czi['pixel_type']}), mosaic origin "
                     f"({czi['origin_px'][0]}, {czi['origin_px'][1]}) px")
    if image.databar_rows:
        lines.append(f"databar:     {image.databar_rows} rows at the bottom ({image.databar_source})")
    else:
        lines.append("databar:     none found")
    lazy = "yes (CZI regions read on demand)" if czi else "yes (memory-map / zarr)"
    lines.append(f"lazy:        {lazy if image.lazy else 'no (in memory)'}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
