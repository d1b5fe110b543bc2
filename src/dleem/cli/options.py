"""Options several commands share: which plane of a multi-page TIFF or a Zeiss CZI to read,
and the progress display the global ``-q`` asks for."""

from __future__ import annotations

import argparse
from typing import Any


def add_plane_options(p: argparse.ArgumentParser, prefix: str = "", of: str = "") -> None:
    """``--{prefix}page``, ``--{prefix}scene``, ``--{prefix}channel`` (`dleem.io.read_image`)."""
    of = f" of {of}" if of else ""
    p.add_argument(f"--{prefix}page", type=int, metavar="N", default=None,
                   help=f"page{of}: a multi-page TIFF whose pages are separate images, or the "
                        "Z/T plane of a CZI that has several")
    p.add_argument(f"--{prefix}scene", type=int, metavar="N", default=None,
                   help=f"scene{of}: a CZI that has several (the error lists them)")
    p.add_argument(f"--{prefix}channel", type=int, metavar="N", default=None,
                   help=f"channel{of}: a CZI that has several (the error lists them)")


def plane(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The plane options as ``read_image`` keywords: ``page``, ``scene``, ``channel``."""
    key = prefix.replace("-", "_")
    return {name: getattr(args, f"{key}{name}") for name in ("page", "scene", "channel")}


def progress_display(args: argparse.Namespace, *, quiet: bool = False) -> Any:
    """The command's `dleem.progress.ProgressDisplay`; nothing drawn under ``-q``."""
    from dleem.progress import ProgressDisplay

    return ProgressDisplay(quiet=quiet or bool(getattr(args, "quiet", False)))
