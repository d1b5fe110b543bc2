"""The files `dleem upscale` writes, checked for what Fiji, ImageJ, QuPath and napari need:
strips below the size threshold, resolution tags in cm, the NGFF version asked for."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from test_upscale import LR_PX, _image, _make_model, _write_tif

from dleem.cli import main
from dleem.upscale import stream, upscale_array


@pytest.fixture(scope="module")
def model_u8(tmp_path_factory) -> Path:
    return _make_model(tmp_path_factory.mktemp("m") / "u8")


def _resolution_cm(page) -> float:
    assert page.tags["ResolutionUnit"].value == 3  # centimetre
    x, y = page.tags["XResolution"].value, page.tags["YResolution"].value
    assert x == y
    return x[0] / x[1]


def test_small_outputs_are_in_strips_with_resolution_in_cm(tmp_path, model_u8, caplog):
    src = _write_tif(tmp_path / "LR.tif", _image((150, 140), np.uint8))
    out, cons = tmp_path / "SR.tif", tmp_path / "consistency.tif"
    with caplog.at_level(logging.WARNING):
        rc = main(["upscale", str(src), "--model", str(model_u8), "-o", str(out), "--tile", "48",
                   "--device", "cpu", "--consistency", str(cons)])
    assert rc == 0
    assert "sends only names ending in .ome.tif to Bio-Formats" in caplog.text and "SR.ome.tif" in caplog.text
    with tifffile.TiffFile(out) as tif:
        level0 = tif.pages.first
        assert not level0.is_tiled and not tif.is_bigtiff and tif.is_ome
        assert _resolution_cm(level0) == pytest.approx(1e4 / (LR_PX / 4))
        sub = tif.series[0].levels[1].keyframe
        assert not sub.is_tiled and _resolution_cm(sub) == pytest.approx(1e4 / (LR_PX / 2))
    with tifffile.TiffFile(cons) as tif:
        page = tif.pages.first
        assert not page.is_tiled and page.dtype == np.float32 and page.shape == (150, 140)
        assert _resolution_cm(page) == pytest.approx(1e4 / LR_PX)
        assert 'PhysicalSizeX="0.4"' in tif.ome_metadata


def test_no_warning_for_ome_tif(tmp_path, model_u8, caplog):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    with caplog.at_level(logging.WARNING):
        assert main(["upscale", str(src), "--model", str(model_u8), "-o", str(tmp_path / "SR.ome.tif"),
                     "--tile", "16", "--device", "cpu"]) == 0
    assert "Bio-Formats" not in caplog.text


def test_large_outputs_are_tiled(tmp_path, model_u8, monkeypatch):
    from dleem.upscale.consistency import write_consistency

    monkeypatch.setattr("dleem.io.write.STRIP_MAX_PIXELS", 1000)  # pretend 16384² is 1000 px
    img = _image((60, 50), np.uint8)
    src = _write_tif(tmp_path / "LR.tif", img)
    out, cons = tmp_path / "SR.ome.tif", tmp_path / "cons.tif"
    assert main(["upscale", str(src), "--model", str(model_u8), "-o", str(out), "--tile", "16",
                 "--device", "cpu", "--consistency", str(cons)]) == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.pages.first.is_tiled and _resolution_cm(tif.pages.first) > 0
    with tifffile.TiffFile(cons) as tif:
        assert tif.pages.first.is_tiled
    # the tiled and the striped consistency maps hold the same numbers
    sr = tifffile.imread(out)
    tiled = tifffile.imread(cons)
    monkeypatch.setattr("dleem.io.write.STRIP_MAX_PIXELS", 2**28)
    write_consistency(tmp_path / "strips.tif", sr, img, scale=4, sigma_lr_px=0.8, dtype_max=255.0,
                      lr_pixel_size_um=LR_PX, tile=16)
    with tifffile.TiffFile(tmp_path / "strips.tif") as tif:
        assert not tif.pages.first.is_tiled
        np.testing.assert_array_equal(tif.asarray(), tiled)


def test_rows_per_strip_divides_the_bands():
    for width in (1, 37, 5000, 70000):
        for dtype in (np.uint8, np.uint16, np.float32):
            rows = stream.rows_per_strip(width, dtype)
            assert 1 <= rows <= stream.TIFF_TILE and stream.TIFF_TILE % rows == 0


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_ngff_version_and_zarr_format(tmp_path, model_u8, ngff):
    img = _image((150, 140), np.uint8, seed=2)
    src = _write_tif(tmp_path / "LR.tif", img)
    out = tmp_path / "SR.ome.zarr"
    assert main(["upscale", str(src), "--model", str(model_u8), "-o", str(out), "--tile", "40",
                 "--device", "cpu", "--ngff", ngff]) == 0
    g = zarr.open_group(str(out), mode="r")
    if ngff == "0.4":
        assert (out / ".zgroup").exists() and not (out / "zarr.json").exists()
        attrs = json.loads((out / ".zattrs").read_text())
        ms = attrs["multiscales"][0]
        assert ms["version"] == "0.4" and "ome" not in attrs
        zarray = json.loads((out / "0" / ".zarray").read_text())
        assert zarray["zarr_format"] == 2 and zarray["dimension_separator"] == "/"
        assert zarray["compressor"]["id"] == "blosc"
    else:
        meta = json.loads((out / "zarr.json").read_text())
        assert meta["zarr_format"] == 3 and meta["attributes"]["ome"]["version"] == "0.5"
        ms = meta["attributes"]["ome"]["multiscales"][0]
        assert "version" not in ms
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx([0.1, 0.1])
    assert ms["axes"][0] == {"name": "y", "type": "space", "unit": "micrometer"}
    np.testing.assert_array_equal(np.asarray(g["0"]), upscale_array(img, model_u8, device="cpu"))
    data, px, _ = stream.open_lazy(out)  # dleem reads both back, with the pixel size
    assert data.shape == (600, 560) and px == pytest.approx(0.1)
    assert not list(tmp_path.glob(".*"))


def test_resume_with_another_ngff_is_refused(tmp_path, model_u8, capsys):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    out = tmp_path / "SR.ome.zarr"
    work = stream.work_store_path(out)
    from dleem.upscale.pipeline import _input_identity, _model_identity

    identity = {**_input_identity(src, (40, 40), np.uint8), **_model_identity(model_u8), "scale": 4,
                "tile": 16, "halo_lr_px": 0, "executor": "local", "zarr_format": 3}
    stream.WorkStore.create(work, (160, 160), np.uint8, 64, identity)
    rc = main(["upscale", str(src), "--model", str(model_u8), "-o", str(out), "--tile", "16",
               "--device", "cpu", "--ngff", "0.4", "--resume"])
    assert rc == 2 and "zarr_format" in capsys.readouterr().err
