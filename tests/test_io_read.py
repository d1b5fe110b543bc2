"""read_image: formats, dtypes, channels, pages, laziness, bit depth."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dleem.errors import InputError
from dleem.io import read_image
from dleem.io import tiff as tiffmod


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
def test_tiff_dtypes_kept(tmp_path, real_texture, dtype):
    data = real_texture.astype(dtype)
    if dtype.startswith("float"):
        data = data / 255.0
    tifffile.imwrite(tmp_path / "a.tif", data)
    image = read_image(tmp_path / "a.tif")
    assert image.dtype == np.dtype(dtype)
    assert image.shape == (128, 128)
    np.testing.assert_array_equal(image.data, data)
    assert not image.lazy and image.pages == 1 and image.format == "TIFF"


@pytest.mark.parametrize("compression", ["lzw", "zlib", "jpeg"])
def test_compressed_tiff(tmp_path, real_texture, compression):
    tifffile.imwrite(tmp_path / "c.tif", real_texture, compression=compression)
    image = read_image(tmp_path / "c.tif")
    if compression == "jpeg":  # lossy: close, not equal
        assert np.abs(image.data.astype(int) - real_texture).mean() < 3
    else:
        np.testing.assert_array_equal(image.data, real_texture)


def test_png_jpeg_and_16bit_png(tmp_path, real_texture, real_texture_12bit):
    import imagecodecs

    (tmp_path / "a.png").write_bytes(imagecodecs.png_encode(real_texture))
    (tmp_path / "b.png").write_bytes(imagecodecs.png_encode(real_texture_12bit))
    (tmp_path / "c.jpg").write_bytes(imagecodecs.jpeg8_encode(real_texture, level=95))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").data, real_texture)
    b = read_image(tmp_path / "b.png")
    assert b.dtype == np.uint16 and b.bits_used == 12
    np.testing.assert_array_equal(b.data, real_texture_12bit)
    c = read_image(tmp_path / "c.jpg")
    assert c.dtype == np.uint8 and np.abs(c.data.astype(int) - real_texture).mean() < 2


def test_rgb_grey_reduced_with_warning(tmp_path, real_texture):
    rgb = np.repeat(real_texture[..., None], 3, axis=2)
    tifffile.imwrite(tmp_path / "g.tif", rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="equal channels"):
        image = read_image(tmp_path / "g.tif")
    np.testing.assert_array_equal(image.data, real_texture)


def test_rgb_colour_to_luminance_with_warning(tmp_path, real_texture):
    rgb = np.stack([real_texture, real_texture // 2, np.full_like(real_texture, 255)], axis=2)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="luminance"):
        image = read_image(tmp_path / "c.tif")
    expected = np.round(0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * 255)
    assert image.dtype == np.uint8
    assert np.abs(image.data.astype(float) - expected).max() <= 1


def test_thumbnail_page_skipped(tmp_path, real_texture):
    thumb = real_texture[::4, ::4]
    with tifffile.TiffWriter(tmp_path / "t.tif") as tw:
        tw.write(thumb, subfiletype=1)  # reduced-resolution copy first
        tw.write(real_texture)
    image = read_image(tmp_path / "t.tif")
    assert image.shape == (128, 128) and image.page == 1 and image.pages == 2
    np.testing.assert_array_equal(image.data, real_texture)


def test_smaller_untyped_page_skipped(tmp_path, real_texture):
    with tifffile.TiffWriter(tmp_path / "t.tif") as tw:
        tw.write(real_texture)
        tw.write(real_texture[:32, :32], metadata=None)  # an unlabeled thumbnail after
    image = read_image(tmp_path / "t.tif")
    assert image.page == 0 and image.shape == (128, 128)


def test_pyramid_subifds_open_full_resolution(tmp_path, real_texture):
    with tifffile.TiffWriter(tmp_path / "p.ome.tif") as tw:
        tw.write(real_texture, subifds=2, metadata={"axes": "YX"})
        tw.write(real_texture[::2, ::2], subfiletype=1)
        tw.write(real_texture[::4, ::4], subfiletype=1)
    image = read_image(tmp_path / "p.ome.tif")
    np.testing.assert_array_equal(image.data, real_texture)


def test_separate_pages_need_page(tmp_path, real_texture):
    stack = np.stack([real_texture, 255 - real_texture])
    tifffile.imwrite(tmp_path / "s.tif", stack)
    with pytest.raises(InputError, match=r"s\.tif: 2 pages hold separate 128x128 images"):
        read_image(tmp_path / "s.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "s.tif", page=1).data, 255 - real_texture)
    with pytest.raises(InputError, match="page 5 does not exist"):
        read_image(tmp_path / "s.tif", page=5)


def test_lazy_memmap_and_zarr(tmp_path, real_texture_12bit):
    tifffile.imwrite(tmp_path / "raw.tif", real_texture_12bit)
    tifffile.imwrite(tmp_path / "lzw.tif", real_texture_12bit, compression="lzw", tile=(64, 64))
    raw = read_image(tmp_path / "raw.tif", lazy=True)
    assert raw.lazy and isinstance(raw.data, np.memmap)
    comp = read_image(tmp_path / "lzw.tif", lazy=True)
    assert comp.lazy and not isinstance(comp.data, np.ndarray)
    np.testing.assert_array_equal(comp.data[10:70, 5:90], real_texture_12bit[10:70, 5:90])
    assert raw.bits_used == comp.bits_used == 12


def test_lazy_by_size_threshold(tmp_path, real_texture, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", real_texture)
    monkeypatch.setattr(tiffmod, "LAZY_BYTES", 1000)
    assert read_image(tmp_path / "a.tif").lazy
    monkeypatch.setattr(tiffmod, "LAZY_BYTES", 10**9)
    assert not read_image(tmp_path / "a.tif").lazy


def test_zarr_array_and_ome_zarr(tmp_path, real_texture):
    import zarr

    arr = zarr.create_array(tmp_path / "a.zarr", shape=real_texture.shape, chunks=(64, 64),
                            dtype=real_texture.dtype)
    arr[...] = real_texture
    image = read_image(tmp_path / "a.zarr")
    np.testing.assert_array_equal(image.data, real_texture)
    assert image.pixel_size_source == "none"

    group = zarr.open_group(tmp_path / "b.ome.zarr", mode="w")
    level = group.create_array("0", shape=(1, 128, 128), chunks=(1, 64, 64), dtype="uint8")
    level[...] = real_texture[None]
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "c", "type": "channel"},
                 {"name": "y", "type": "space", "unit": "nanometer"},
                 {"name": "x", "type": "space", "unit": "nanometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 25.0, 25.0]}]}],
    }]
    ome = read_image(tmp_path / "b.ome.zarr")
    np.testing.assert_array_equal(ome.data, real_texture)
    assert ome.pixel_size_um == pytest.approx(0.025) and ome.pixel_size_source == "ome"


def test_bits_used(tmp_path, real_texture_12bit):
    tifffile.imwrite(tmp_path / "a.tif", real_texture_12bit)
    image = read_image(tmp_path / "a.tif")
    assert (image.bits_used, image.bits_source) == (12, "max_value")
    # MaxSampleValue says 14 bits even if this frame is dark
    tifffile.imwrite(tmp_path / "b.tif", real_texture_12bit // 16,
                     extratags=[(281, "H", 1, 16383, True)])
    b = read_image(tmp_path / "b.tif")
    assert (b.bits_used, b.bits_source) == (14, "metadata")
    # 12-bit packed samples (BitsPerSample 12) decode to uint16
    tifffile.imwrite(tmp_path / "p.tif", real_texture_12bit // 4, bitspersample=12)
    p = read_image(tmp_path / "p.tif")
    assert p.dtype == np.uint16 and (p.bits_used, p.bits_source) == (12, "metadata")
    tifffile.imwrite(tmp_path / "f.tif", real_texture_12bit.astype(np.float32))
    assert read_image(tmp_path / "f.tif").bits_used is None


def test_float16_widened(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "h.tif", (real_texture / 255).astype(np.float16))
    assert read_image(tmp_path / "h.tif").dtype == np.float32


@pytest.mark.parametrize("dtype", ["uint32", "int64", "complex64", "bool"])
def test_unsupported_dtypes(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "u.tif", np.ones((8, 8), dtype=dtype))
    with pytest.raises(InputError, match=r"u\.tif: unsupported pixel type"):
        read_image(tmp_path / "u.tif")


def test_bad_inputs(tmp_path, real_texture):
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_image(tmp_path / "empty.tif")
    (tmp_path / "junk.tif").write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(InputError, match="not a readable TIFF"):
        read_image(tmp_path / "junk.tif")
    with pytest.warns(UserWarning):  # tifffile: "nonconformant TIFF"
        tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 16), np.uint8))
    with pytest.raises(InputError, match="empty image"):
        read_image(tmp_path / "zero.tif")
    tifffile.imwrite(tmp_path / "a.tif", real_texture)
    with pytest.raises(InputError, match="positive"):
        read_image(tmp_path / "a.tif", pixel_size_um=-1.0)


def test_truncated_tiff(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "full.tif", real_texture, compression="zlib")
    raw = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.tif: truncated TIFF"):
        read_image(tmp_path / "cut.tif")


def test_grey_jpeg_saved_as_colour(tmp_path, real_texture):
    import imagecodecs

    rgb = np.repeat(real_texture[..., None], 3, axis=2).astype(np.int16)
    rgb[..., 2] += 1  # a codec's off-by-one in one channel
    (tmp_path / "g.png").write_bytes(imagecodecs.png_encode(rgb.clip(0, 255).astype(np.uint8)))
    with pytest.warns(UserWarning, match="grey image saved as colour"):
        image = read_image(tmp_path / "g.png")
    assert np.abs(image.data.astype(int) - real_texture).max() <= 1


def test_ome_zarr_lazy_keeps_lazy(tmp_path, real_texture):
    import zarr

    group = zarr.open_group(tmp_path / "c.ome.zarr", mode="w")
    level = group.create_array("0", shape=(1, 1, 128, 128), chunks=(1, 1, 64, 64), dtype="uint8")
    level[...] = real_texture[None, None]
    group.attrs["multiscales"] = [{"axes": ["t", "c", "y", "x"], "datasets": [{"path": "0"}]}]
    image = read_image(tmp_path / "c.ome.zarr", lazy=True)
    assert image.lazy and image.shape == (128, 128) and not isinstance(image.data, np.ndarray)
    np.testing.assert_array_equal(np.asarray(image.data[:64, 64:]), real_texture[:64, 64:])
