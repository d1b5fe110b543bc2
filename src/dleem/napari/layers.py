"""A workspace, or one dleem output file, as napari layer data in the LR grid's µm.

Plain ``(data, kwargs, layer_type)`` tuples, the form npe2 readers return, built from the
typed workspace records; nothing here imports napari or Qt. Every layer carries its
scale and translation (or its affine), so HR, SR and LR line up at any zoom and the
scale bar and cursor read µm. A file that fails validation does not stop the others:
its problem (``"PATH: problem"``) is collected and the layers that can be shown are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError
from dleem.napari.geometry import box_corners, hr_affine, lr_unit_um, sr_origin_um
from dleem.workspace import SPLIT_NAMES, Workspace

LayerData = tuple[Any, dict[str, Any], str]

SPLIT_COLOURS = {"train": "lime", "val": "yellow", "test": "magenta"}
CONSISTENCY_DESCRIPTION = "dleem consistency map"
MAP_OPACITY = 0.5


@dataclass
class Layers:
    """What a reader returns, and the problems met on the way (one line each)."""

    layers: list[LayerData] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def attempt(self, make: Callable[[], Any], source: Path | str) -> Any:
        """``make()``, or None with its one-line problem recorded (never a traceback)."""
        try:
            return make()
        except DleemError as error:
            self.problems.append(str(error))
        except (OSError, ValueError, KeyError, TypeError) as error:
            self.problems.append(f"{source}: cannot read ({error})")
        return None


def units(pixel_size_um: float | None) -> dict[str, Any]:
    """The layer's world unit, so napari's scale bar and cursor say µm (pixels without one)."""
    return {"units": ("µm", "µm")} if pixel_size_um else {}


def _meta(kind: str, path: Path | str, **extra: Any) -> dict[str, Any]:
    return {"dleem": {"kind": kind, "path": str(path), **extra}}


def _read(path: Path | str) -> Any:
    from dleem.io import read_image

    return read_image(path, databar="keep")


# ----------------------------------------------------------------------------- single files


def lr_layer(path: Path | str, lr_pixel_size_um: float | None) -> LayerData:
    image = _read(path)
    px = lr_pixel_size_um or image.pixel_size_um
    u = lr_unit_um(px)
    return (image.data, {"name": "LR", "scale": (u, u), "translate": (0.0, 0.0),
                         "colormap": "gray", "metadata": _meta("lr", path, pixel_size_um=px),
                         **units(px)},
            "image")


def hr_layer(region: Any, lr_pixel_size_um: float | None) -> LayerData:
    """One placed HR region, raw grey levels; its gain and offset travel in the metadata
    (`in_lr_grey_scale` applies them)."""
    image = _read(region.file)
    name = f"HR {Path(region.file).stem}"
    gain = 1.0 if region.gain is None else float(region.gain)
    offset = 0.0 if region.offset is None else float(region.offset)
    return (image.data, {"name": name, "affine": hr_affine(region.hr_to_lr, lr_pixel_size_um),
                         "colormap": "gray", **units(lr_pixel_size_um),
                         "metadata": _meta("hr", region.file, gain=gain, offset=offset,
                                           lr_grey_scale=False)}, "image")


def in_lr_grey_scale(raw: Any, gain: float, offset: float) -> np.ndarray:
    """HR grey levels mapped to the LR image's (``gain * HR + offset``, as the pairs are)."""
    return (gain * np.asarray(raw, dtype=np.float32) + offset).astype(np.float32)


def sr_description(path: Path | str) -> dict[str, Any] | None:
    """The ``dleem`` record an SR OME-TIFF or OME-Zarr carries; None when it has none."""
    p = Path(path)
    if p.is_dir():
        import zarr

        return dict(zarr.open_group(str(p), mode="r").attrs.get("dleem") or {}) or None
    import tifffile

    with tifffile.TiffFile(p) as tif:
        text = tif.pages.first.description or ""
        ome = tif.ome_metadata or ""
    if "&quot;dleem&quot;" not in ome and '"dleem"' not in text:
        return None
    import xml.etree.ElementTree as ET

    for element in ET.fromstring(ome).iter():
        if element.tag.endswith("Description") and element.text:
            try:
                record = json.loads(element.text)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("dleem"), dict):
                return record["dleem"]
    return None


def _sr_levels(path: Path) -> tuple[list[Any], dict[str, Any]]:
    """Pyramid levels, finest first, opened lazily, and the NGFF scale/translation of level 0."""
    import zarr

    if path.is_dir():
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        multiscales = (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales")
        if not multiscales:
            raise DleemError(f"{path}: no OME-NGFF multiscales")
        datasets = multiscales[0]["datasets"]
        ngff = {t["type"]: t[t["type"]] for t in datasets[0]["coordinateTransformations"]}
        return [group[d["path"]] for d in datasets], ngff
    import tifffile

    group = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    if isinstance(group, zarr.Array):
        return [group], {}
    return [group[k] for k in sorted(group.keys(), key=int)], {}


def _scale_of(record: dict[str, Any], ngff: dict[str, Any]) -> int:
    """k: recorded in an OME-TIFF's description; for an OME-Zarr, LR over SR pixel size (or,
    without pixel sizes, the inverse of its scale in LR px)."""
    if record.get("scale"):
        return int(record["scale"])
    if record.get("lr_pixel_size_um") and record.get("sr_pixel_size_um"):
        return round(record["lr_pixel_size_um"] / record["sr_pixel_size_um"])
    return round(1.0 / float(ngff["scale"][-1]))


def sr_layer(path: Path | str) -> LayerData:
    """The upscaled map as a multiscale layer at its sub-pixel origin (docs/upscaling.md)."""
    p = Path(path)
    record = sr_description(p)
    if record is None:
        raise DleemError(f"{p}: no dleem record in its metadata (not written by dleem upscale)")
    lr_px = record.get("lr_pixel_size_um")
    levels, ngff = _sr_levels(p)
    k = _scale_of(record, ngff)
    unit = lr_unit_um(lr_px) / k
    origin = sr_origin_um(k, lr_px)
    if ngff:  # the OME-Zarr's own level-0 transformation (µm, or LR px without a pixel size)
        unit = float(ngff["scale"][-1])
        origin = float(ngff.get("translation", [origin])[-1])
    kwargs = {"name": f"SR x{k}", "scale": (unit, unit), "translate": (origin, origin),
              "multiscale": len(levels) > 1, "colormap": "gray", **units(lr_px),
              "metadata": _meta("sr", p, scale=k, sr_origin_lr_px=record.get("sr_origin_lr_px"),
                                model=record.get("model"))}
    return (levels if len(levels) > 1 else levels[0], kwargs, "image")


def grid_map_layer(data: np.ndarray, path: Path | str, name: str, kind: str, block: int,
                   pixel_size_um: float | None, colormap: str, symmetric: bool) -> LayerData:
    """A map on the LR grid (``block`` 1) or on its blocks (block i covers LR px
    b*i .. b*i+b-1), semi-transparent, with a colour bar (``metadata['dleem']['colorbar']``)."""
    data = np.asarray(data, dtype=np.float32)
    u = lr_unit_um(pixel_size_um)
    finite = data[np.isfinite(data)]
    if symmetric:
        top = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
        limits = (-(top or 1.0), top or 1.0)
    else:
        low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
        limits = (float(low), float(high) if high > low else float(low) + 1.0)
    return (data, {"name": name, "scale": (block * u, block * u),
                   "translate": ((block - 1) / 2 * u, (block - 1) / 2 * u),
                   "colormap": colormap, "contrast_limits": limits, "opacity": MAP_OPACITY,
                   "blending": "translucent", **units(pixel_size_um),
                   "metadata": _meta(kind, path, colorbar=True)}, "image")


def consistency_layer(path: Path | str, lr_pixel_size_um: float | None = None) -> LayerData:
    """degrade(SR) - LR on the LR grid, in LR grey levels, symmetric about 0."""
    image = _read(path)
    return grid_map_layer(image.data, path, "consistency", "consistency", 1,
                          lr_pixel_size_um or image.pixel_size_um, "RdBu_r", symmetric=True)


def trust_layers(path: Path | str, lr_pixel_size_um: float | None = None) -> list[LayerData]:
    """The trust map of `dleem upscale --trust` (docs in `dleem.upscale.trust`): the
    predicted RMSE per block, and the unsupported blocks; the block size from its ``.json``."""
    import tifffile

    p = Path(path)
    js = p.with_suffix(".json")
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DleemError(f"{js}: cannot read the trust map's description ({error})") from None
    if not isinstance(meta, dict) or meta.get("schema") != "dleem-trust":
        raise DleemError(f"{js}: not a dleem trust map description (schema 'dleem-trust')")
    data = np.asarray(tifffile.imread(p), dtype=np.float32)
    if data.ndim != 3 or data.shape[0] != 2:
        raise DleemError(f"{p}: expected 2 planes (predicted RMSE, supported), got shape {data.shape}")
    block = int(meta["block_size_lr_px"])
    rmse = grid_map_layer(data[0], p, "trust: predicted RMSE", "trust", block, lr_pixel_size_um,
                          "magma", symmetric=False)
    unsupported = grid_map_layer(1.0 - data[1], p, "trust: unsupported", "unsupported", block,
                                 lr_pixel_size_um, "red", symmetric=False)
    unsupported[1].update(contrast_limits=(0.0, 1.0), blending="additive")
    unsupported[1]["metadata"]["dleem"]["colorbar"] = False
    return [rmse, unsupported]


def is_consistency_map(path: Path | str) -> bool:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return CONSISTENCY_DESCRIPTION in (tif.ome_metadata or "")


# ----------------------------------------------------------------------------- shapes


def _rectangles(boxes: list[tuple[str, str, tuple[int, int, int, int]]], name: str,
                lr_pixel_size_um: float | None, colour_of: Callable[[str], str]) -> LayerData:
    u = lr_unit_um(lr_pixel_size_um)
    return ([box_corners(b) for _, _, b in boxes],
            {"name": name, "shape_type": "rectangle", "scale": (u, u), **units(lr_pixel_size_um),
             "edge_color": [colour_of(kind) for _, kind, _ in boxes], "face_color": "transparent",
             "edge_width": 1.5,
             "features": {"region": [r for r, _, _ in boxes], "area": [k for _, k, _ in boxes]},
             "text": {"string": "{region} {area}", "size": 8, "color": "white",
                      "anchor": "upper_left"},
             "metadata": {"dleem": {"kind": name}}}, "shapes")


def splits_layer(ws: Workspace) -> LayerData | None:
    """The train / validation / test areas of every region, in LR px (pairs manifest)."""
    man = ws.read_pairs()
    boxes = [(r.id, split, r.global_box(b)) for r in man.regions for split in SPLIT_NAMES
             for b in r.splits.of(split)]
    if not boxes:
        return None
    return _rectangles(boxes, "train / val / test", man.lr_pixel_size_um, SPLIT_COLOURS.get)


def plan_layer(path: Path, lr_pixel_size_um: float | None) -> LayerData | None:
    """The planner's proposed HR regions: ``plan.json`` ``regions[i].lr_box`` (half-open LR px)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DleemError(f"{path}: cannot read JSON ({error})") from None
    regions = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(regions, list):
        raise DleemError(f"{path}: 'regions' must be a list")
    boxes = []
    for i, region in enumerate(regions):
        box = region.get("lr_box") if isinstance(region, dict) else None
        if not (isinstance(box, list) and len(box) == 4):
            raise DleemError(f"{path}: regions[{i}] needs an 'lr_box' [row0, col0, row1, col1]")
        boxes.append((str(region.get("id", f"proposal {i + 1}")), "proposed",
                      tuple(int(v) for v in box)))
    return _rectangles(boxes, "proposed regions", lr_pixel_size_um, lambda _: "cyan") if boxes else None


# ----------------------------------------------------------------------------- a workspace


def workspace_layers(path: Path | str) -> Layers:
    """Every layer a workspace can show, bottom to top, and what could not be read."""
    ws = Workspace(path)
    out = Layers()
    reg = out.attempt(ws.read_registration, ws.registration_json)
    px = None
    if reg is not None:
        px = reg.lr_pixel_size_um
        lr = out.attempt(lambda: lr_layer(reg.lr_file, px), reg.lr_file)
        if lr is not None:
            out.layers.append(lr)
            px = px or lr[1]["metadata"]["dleem"]["pixel_size_um"]
        for _, region in reg.placed:
            layer = out.attempt(lambda region=region: hr_layer(region, px), region.file)
            if layer is not None:
                out.layers.append(layer)
    if ws.has_pairs():
        layer = out.attempt(lambda: splits_layer(ws), ws.pairs_manifest_json)
        if layer is not None:
            out.layers.append(layer)
    record = out.attempt(ws.read_upscale, ws.upscale_json)
    sr = ws.sr_path
    if record is not None and record.output and not sr.exists():
        sr = Path(record.output)
    if sr.exists():
        layer = out.attempt(lambda: sr_layer(sr), sr)
        if layer is not None:
            out.layers.append(layer)
    if ws.consistency_path.is_file():
        layer = out.attempt(lambda: consistency_layer(ws.consistency_path, px), ws.consistency_path)
        if layer is not None:
            out.layers.append(layer)
    if ws.trust_path.is_file():
        out.layers.extend(out.attempt(lambda: trust_layers(ws.trust_path, px), ws.trust_path) or [])
    if ws.plan_json.is_file():
        layer = out.attempt(lambda: plan_layer(ws.plan_json, px), ws.plan_json)
        if layer is not None:
            out.layers.append(layer)
    return out


def file_layers(path: Path | str) -> Layers:
    """One dleem output file: an SR OME-TIFF / OME-Zarr, or a consistency map."""
    out = Layers()
    p = Path(path)
    make = consistency_layer if (p.is_file() and is_consistency_map(p)) else sr_layer
    layer = out.attempt(lambda: make(p), p)
    if layer is not None:
        out.layers.append(layer)
    return out
