"""write_image: OME-TIFF round trips, input protection, atomicity when interrupted."""

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
