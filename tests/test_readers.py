"""Every file dleem writes has the structure its readers need, checked with tifffile,
tiffslide, bioio and ome-zarr-py on the outputs of a real CLI run.

ImageJ 1.x without Bio-Formats opens only untiled classic TIFFs and takes the pixel size
from the resolution tags; Bio-Formats, QuPath and bioio read the OME-XML; tiffslide the
resolution tags; Fiji and napari-ome-zarr the NGFF version. The real readers (Java
included) are run by benchmarks/check_readers.py, results in docs/readers.md.
"""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from dleem.cli import main


@dataclass
class Expected:
    path: Path
    shape: tuple[int, int]
    pixel_size_um: float
    dtype: str
    levels: int = 1


def _cli(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Expected]:
    """synth -> register -> train (tiny, 2 steps) -> upscale to every format."""
    root = tmp_path_factory.mktemp("readers")
    data, ws = root / "data", root / "ws"
    _cli("synth", "-o", str(data), "--size", "256", "--hr-size", "256", "--regions", "2", "--seed", "1")
    _cli("register", str(data / "LR.tif"), str(data / "HR_1.tif"), str(data / "HR_2.tif"), "-o", str(ws))
    _cli("train", str(ws), "-o", str(ws / "model"), "--preset", "tiny", "--steps", "2", "--device", "cpu")
    up = [str(data / "LR.tif"), "--model", str(ws / "model"), "--device", "cpu", "--tile", "64"]
    _cli("upscale", *up, "-o", str(root / "SR.ome.tif"), "--consistency", str(root / "consistency.tif"))
    _cli("upscale", *up, "-o", str(root / "SR04.ome.zarr"), "--ngff", "0.4")
    _cli("upscale", *up, "-o", str(root / "SR05.ome.zarr"), "--ngff", "0.5")

    truth = json.loads((data / "truth.json").read_text())
    pairs = json.loads((ws / "pairs" / "manifest.json").read_text())
    lr_px, k = truth["lr_pixel_size_um"], pairs["scale"]
    lr_shape = tuple(truth["lr_shape"])
    region = pairs["regions"][0]
    r0, c0, r1, c1 = region["lr_box"]
    fine = ((r1 - r0) * k, (c1 - c0) * k)
    sr = (lr_shape[0] * k, lr_shape[1] * k)
    hr = truth["regions"][0]
    p = ws / "pairs"
    return {
        "LR": Expected(data / "LR.tif", lr_shape, lr_px, "uint8"),
        "HR_1": Expected(data / "HR_1.tif", tuple(hr["shape"]), hr["pixel_size_um"], "uint8"),
        "pair_lr": Expected(p / region["lr"], (r1 - r0, c1 - c0), lr_px, "uint8"),
        "pair_hr": Expected(p / region["hr"], fine, lr_px / k, "float32"),
        "pair_mask": Expected(p / region["mask"], fine, lr_px / k, "uint8"),
        "SR": Expected(root / "SR.ome.tif", sr, lr_px / k, "uint8", levels=2),
        "consistency": Expected(root / "consistency.tif", lr_shape, lr_px, "float32"),
        "ngff04": Expected(root / "SR04.ome.zarr", sr, lr_px / k, "uint8", levels=2),
        "ngff05": Expected(root / "SR05.ome.zarr", sr, lr_px / k, "uint8", levels=2),
    }


TIFFS = ["LR", "HR_1", "pair_lr", "pair_hr", "pair_mask", "SR", "consistency"]
ZARRS = ["ngff04", "ngff05"]


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")


@pytest.mark.parametrize("name", TIFFS)
def test_tiff_layout_that_imagej_opens(outputs, name):
    """Classic TIFF, one top-level image (the pyramid in SubIFDs), untiled, uncompressed
    strips, grey, the bit depth of the data, resolution tags in pixels per cm."""
    e = outputs[name]
    with tifffile.TiffFile(e.path) as tif:
        assert not tif.is_bigtiff and len(tif.pages) == 1
        levels = tif.series[0].levels
        assert len(levels) == e.levels
        for i, level in enumerate(levels):
            page = level.keyframe
            assert not page.is_tiled and page.compression == 1 and page.samplesperpixel == 1
            assert page.dtype == np.dtype(e.dtype)
            rows = page.rowsperstrip
            assert len(page.dataoffsets) == -(-page.shape[0] // rows)  # strips of `rows` rows
            assert page.shape[1] * rows * page.dtype.itemsize <= 2**18 or rows == 1
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
            x, y = page.tags["XResolution"].value, page.tags["YResolution"].value
            assert x == y and x[0] / x[1] == pytest.approx(1e4 / (e.pixel_size_um * 2**i), rel=1e-6)
        assert levels[0].shape == e.shape


@pytest.mark.parametrize("name", TIFFS)
def test_tiff_ome_description_has_the_pixel_size(outputs, name):
    """Bio-Formats and bioio read the OME-XML in the first ImageDescription."""
    e = outputs[name]
    with tifffile.TiffFile(e.path) as tif:
        assert tif.is_ome and not tif.is_imagej
        xml = tif.pages.first.description
        assert xml.startswith("<?xml") and xml == tif.ome_metadata
    pixels = re.search(r"<Pixels [^>]*>", xml).group(0)
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', pixels))
    assert (int(attrs["SizeY"]), int(attrs["SizeX"])) == e.shape
    assert float(attrs["PhysicalSizeX"]) == pytest.approx(e.pixel_size_um)
    assert float(attrs["PhysicalSizeY"]) == pytest.approx(e.pixel_size_um)
    assert attrs["PhysicalSizeXUnit"] == attrs["PhysicalSizeYUnit"] == "µm"


@pytest.mark.parametrize("name", TIFFS)
def test_tiffslide_reads_size_levels_and_mpp(outputs, name):
    _needs("tiffslide")
    import tiffslide

    e = outputs[name]
    with tiffslide.TiffSlide(e.path) as slide:
        assert slide.dimensions == (e.shape[1], e.shape[0])
        assert slide.level_count == e.levels
        assert float(slide.properties["tiffslide.mpp-x"]) == pytest.approx(e.pixel_size_um)
        assert float(slide.properties["tiffslide.mpp-y"]) == pytest.approx(e.pixel_size_um)
        region = np.asarray(slide.read_region((0, 0), 0, (16, 16), as_array=True))
    with tifffile.TiffFile(e.path) as tif:
        np.testing.assert_array_equal(np.squeeze(region), tif.asarray()[:16, :16])


@pytest.mark.parametrize("name", TIFFS + ZARRS)
def test_bioio_reads_shape_and_pixel_size(outputs, name):
    e = outputs[name]
    _needs("bioio")
    _needs("bioio_ome_zarr" if name in ZARRS else "bioio_ome_tiff")
    from bioio import BioImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bioio's plugins warn about their own dependencies
        image = BioImage(e.path)
        assert image.shape[-2:] == e.shape and str(image.dtype) == e.dtype
        assert image.physical_pixel_sizes.X == pytest.approx(e.pixel_size_um)
        assert image.physical_pixel_sizes.Y == pytest.approx(e.pixel_size_um)
        if name in ZARRS:  # bioio-ome-zarr sees the pyramid (bioio-ome-tiff shows level 0)
            assert len(image.resolution_levels) == e.levels


@pytest.mark.parametrize(("name", "version", "zarr_format"), [("ngff04", "0.4", 2), ("ngff05", "0.5", 3)])
def test_ome_zarr_py_reads_the_ngff_version_and_scale(outputs, name, version, zarr_format):
    e = outputs[name]
    meta = e.path / (".zattrs" if zarr_format == 2 else "zarr.json")
    assert meta.exists()
    _needs("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        location = parse_url(str(e.path))
        assert location.version == version
        node = next(iter(Reader(location)()))
    assert [tuple(d.shape) for d in node.data][0] == e.shape and len(node.data) == e.levels
    assert [a["unit"] for a in node.metadata["axes"]] == ["micrometer", "micrometer"]
    scale = node.metadata["coordinateTransformations"][0][0]
    assert scale["type"] == "scale" and scale["scale"] == pytest.approx([e.pixel_size_um] * 2)
