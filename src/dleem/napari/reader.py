"""The ``dleem`` reader: a workspace folder, or a dleem output file, dropped on napari.

It claims only folders holding a ``registration.json``, and OME-TIFF / OME-Zarr files
carrying dleem's own metadata (an SR map, a consistency map); anything else it declines
(``None``) so that napari tries its other readers, and claiming never raises. Files of a
claimed workspace that fail validation give one notification naming each file and its
problem, and the layers that can be shown are shown.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dleem.napari.layers import (
    LayerData,
    Layers,
    file_layers,
    is_consistency_map,
    sr_description,
    workspace_layers,
)
from dleem.workspace import Workspace

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()


def claim(path: Path) -> str | None:
    """``"workspace"``, ``"file"`` or None (declined) for one path; never raises."""
    try:
        if path.is_dir():
            if (path / Workspace.REGISTRATION).is_file():
                return "workspace"
            if path.name.lower().endswith(".zarr") and sr_description(path):
                return "file"
            return None
        if path.is_file() and path.suffix.lower() in TIFF_SUFFIXES:
            if sr_description(path) or is_consistency_map(path):
                return "file"
    except Exception as error:  # noqa: BLE001 - a reader that cannot tell declines
        log.debug("dleem reader declines %s: %s", path, error)
    return None


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 ``get_reader``: the read function for a path dleem wrote, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    kind = claim(Path(path))
    if kind is None:
        return None
    return read_workspace if kind == "workspace" else read_file


def read_workspace(path: str | list[str]) -> list[LayerData]:
    return _deliver(workspace_layers(Path(path[0] if isinstance(path, list) else path)))


def read_file(path: str | list[str]) -> list[LayerData]:
    return _deliver(file_layers(Path(path[0] if isinstance(path, list) else path)))


def _deliver(found: Layers) -> list[LayerData]:
    if found.problems:
        from napari.utils.notifications import show_warning

        show_warning("dleem: " + "; ".join(found.problems))
    _show_colour_bars()
    return found.layers


def show_colour_bar(layer: Any) -> None:
    """Turn on the colour bar of a layer whose dleem metadata asks for one."""
    if (getattr(layer, "metadata", None) or {}).get("dleem", {}).get("colorbar"):
        layer.colorbar.visible = True


def _show_colour_bars() -> None:
    """Layer data cannot carry a colour bar: switch it on when napari adds the layer."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None or viewer in _WATCHED:
        return
    _WATCHED.add(viewer)
    viewer.layers.events.inserted.connect(lambda event: show_colour_bar(event.value))
