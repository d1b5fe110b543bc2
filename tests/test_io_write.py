"""write_image: OME-TIFF round trips, the TIFF layout readers need, input protection,
atomicity when interrupted."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dleem.errors import InputError
from dleem.io import read_image, write_image
from dleem.io import write as writemod


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_round_trip_with_pixel_size(tmp_path, real_texture, real_texture_12bit, dtype):
    data = {"uint8": real_texture, "uint16": real_texture_12bit,
            "float32": real_texture.astype(np.float32) / 255}[dtype]
    out = write_image(tmp_path / "sub" / "out.ome.tif", data, pixel_size_um=0.0125)
    image = read_image(out)
    assert image.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(image.data, data)
    assert image.pixel_size_source == "ome"
    assert image.pixel_size_um == pytest.approx(0.0125)
    # what Fiji reads: OME PhysicalSizeX in µm, and resolution tags in pixels per cm
    with tifffile.TiffFile(out) as tif:
        assert 'PhysicalSizeX="0.0125"' in tif.ome_metadata
        assert 'PhysicalSizeXUnit="µm"' in tif.ome_metadata
        page = tif.pages.first
        assert page.tags["ResolutionUnit"].value == 3
        num, den = page.tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / 0.0125)


def test_without_pixel_size_and_compressed(tmp_path, real_texture):
    out = write_image(tmp_path / "plain.tif", real_texture, compression="zlib")
    image = read_image(out)
    assert image.pixel_size_um is None and image.pixel_size_source == "none"
    np.testing.assert_array_equal(image.data, real_texture)


def test_refuses_to_overwrite_input(tmp_path, real_texture):
    src = write_image(tmp_path / "in.tif", real_texture)
    before = src.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        write_image(tmp_path / "." / "in.tif", 255 - real_texture, protect=[src])
    (tmp_path / "link.tif").symlink_to(src)
    with pytest.raises(InputError, match="refusing"):
        write_image(tmp_path / "link.tif", real_texture, protect=[str(src)])
    assert src.read_bytes() == before
    write_image(tmp_path / "other.tif", real_texture, protect=[src])  # a new name is fine


def test_refuses_bad_arrays(tmp_path):
    with pytest.raises(InputError, match="2-D"):
        write_image(tmp_path / "a.tif", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(InputError, match="pixel type"):
        write_image(tmp_path / "a.tif", np.zeros((4, 4), np.int64))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_leaves_nothing(tmp_path, real_texture, monkeypatch, error):
    def broken_imwrite(file, data, **kwargs):
        file.write(b"II*\x00" + b"\x00" * 1000)  # some bytes reach the temporary file
        file.flush()
        raise error

    monkeypatch.setattr(writemod.tifffile, "imwrite", broken_imwrite)
    with pytest.raises(type(error)):
        write_image(tmp_path / "out.tif", real_texture, pixel_size_um=0.1)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_old_file(tmp_path, real_texture, monkeypatch):
    target = write_image(tmp_path / "out.tif", real_texture)
    before = target.read_bytes()

    def broken_imwrite(file, data, **kwargs):
        file.write(b"garbage")
        raise RuntimeError("crash")

    monkeypatch.setattr(writemod.tifffile, "imwrite", broken_imwrite)
    with pytest.raises(RuntimeError):
        write_image(target, 255 - real_texture)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def _resolution_per_cm(page) -> float:
    assert page.tags["ResolutionUnit"].value == 3  # centimetre, what ImageJ's own opener converts to µm
    x, y = page.tags["XResolution"].value, page.tags["YResolution"].value
    assert x == y
    return x[0] / x[1]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_small_images_are_classic_tiff_in_strips_and_stay_lazy(tmp_path, real_texture, dtype):
    """ImageJ 1.x without Bio-Formats opens only untiled classic TIFFs; uncompressed
    contiguous strips also keep the file memory-mappable for dleem's lazy reading."""
    data = np.tile(real_texture, (3, 12)).astype(dtype)  # wide enough for several strips
    out = write_image(tmp_path / "img.tif", data, pixel_size_um=0.4)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert not tif.is_bigtiff and not page.is_tiled and len(tif.pages) == 1
        assert page.rowsperstrip == writemod.rows_per_strip(data.shape[1], dtype)
        assert len(page.dataoffsets) == -(-data.shape[0] // page.rowsperstrip) > 1
        assert _resolution_per_cm(page) == pytest.approx(1e4 / 0.4)
    image = read_image(out, lazy=True)
    assert isinstance(image.data, np.memmap)
    np.testing.assert_array_equal(image.data, data)


def test_large_images_are_tiled_with_the_same_metadata(tmp_path, real_texture, monkeypatch):
    monkeypatch.setattr(writemod, "STRIP_MAX_PIXELS", 1000)  # pretend 16384² is 1000 px
    out = write_image(tmp_path / "big.ome.tif", real_texture, pixel_size_um=0.05)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (writemod.TIFF_TILE,) * 2
        assert _resolution_per_cm(page) == pytest.approx(1e4 / 0.05)
        assert 'PhysicalSizeX="0.05"' in tif.ome_metadata
    image = read_image(out)
    assert image.pixel_size_um == pytest.approx(0.05)
    np.testing.assert_array_equal(image.data, real_texture)


def test_bigtiff_only_above_the_classic_limit(tmp_path, real_texture, monkeypatch):
    monkeypatch.setattr(writemod, "CLASSIC_TIFF_LIMIT", 1000)  # pretend 4 GiB is 1000 bytes
    out = write_image(tmp_path / "huge.tif", real_texture, pixel_size_um=0.1)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and _resolution_per_cm(tif.pages.first) == pytest.approx(1e5)
    np.testing.assert_array_equal(read_image(out).data, real_texture)


def test_no_resolution_tags_without_a_pixel_size(tmp_path, real_texture):
    """No pixel size is written as none, not as tifffile's default 1 pixel per unit."""
    out = write_image(tmp_path / "plain.tif", real_texture)
    with tifffile.TiffFile(out) as tif:
        assert "PhysicalSizeX" not in tif.ome_metadata
        assert tif.pages.first.tags["ResolutionUnit"].value == 1  # NONE: ImageJ shows pixels
    assert read_image(out).pixel_size_source == "none"
