"""Databar detection on real SEM texture with a synthetic info panel burnt in below."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from dleem.io import detect_databar, read_image


def with_databar(texture: np.ndarray, rows: int, *, background: int = 0, ink: int = 255,
                 line: int = 2) -> np.ndarray:
    """`texture` above a databar: a `line`-row separator, then `rows - line` rows of panel."""
    width = texture.shape[1]
    panel = np.full((rows - line, width), background, dtype=np.uint8)
    scale = (rows - line) / 40
    cv2.putText(panel, "HV 15kV WD 10mm", (3, int((rows - line) * 0.45)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, ink, 1, cv2.LINE_AA)
    cv2.putText(panel, "mag 5000x BSE", (3, int((rows - line) * 0.9)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, ink, 1, cv2.LINE_AA)
    panel[int((rows - line) * 0.6):int((rows - line) * 0.6) + 3, width - 60:width - 10] = ink  # scale bar
    separator = np.full((line, width), ink, dtype=np.uint8)
    return np.vstack([texture, separator, panel])


@pytest.fixture(scope="module")
def texture(real_texture):
    return np.tile(real_texture, (2, 2))  # 256 x 256 of real SEM texture


@pytest.mark.parametrize("rows", [12, 24, 40])
def test_black_databar_found_exactly(texture, rows):
    assert detect_databar(with_databar(texture, rows)) == rows


def test_light_databar_dark_text(texture):
    image = with_databar(texture, 30, background=230, ink=10, line=1)
    assert detect_databar(image) == 30


def test_databar_without_separator_line(texture):
    assert detect_databar(with_databar(texture, 24, line=0)) == 24


def test_16bit_and_jpeg(texture):
    import imagecodecs

    image = with_databar(texture, 32)
    assert detect_databar(image.astype(np.uint16) * 16) == 32  # 12-bit data
    jpeg = imagecodecs.jpeg8_decode(imagecodecs.jpeg8_encode(image, level=75))
    assert abs(detect_databar(jpeg) - 32) <= 1  # ringing may blur the separator line


def test_no_databar_in_real_images(real_textures):
    for name, image in real_textures.items():
        for variant in (image, image[::-1], image.T):
            assert detect_databar(variant) == 0, name


def test_no_databar_when_bottom_is_dark_image(texture):
    # a dark but noisy region at the bottom is image, not a databar
    image = texture.copy()
    image[-40:] = (image[-40:] * 0.2).astype(np.uint8)  # a fifth of the contrast
    assert detect_databar(image) == 0


def test_read_image_detect_and_crop(tmp_path, texture):
    tifffile.imwrite(tmp_path / "d.tif", with_databar(texture, 24))
    detected = read_image(tmp_path / "d.tif")
    assert detected.shape == (280, 256)
    assert (detected.databar_rows, detected.databar_source) == (24, "detected")
    cropped = read_image(tmp_path / "d.tif", databar="crop")
    np.testing.assert_array_equal(cropped.data, texture)
    kept = read_image(tmp_path / "d.tif", databar="keep")
    assert kept.databar_rows == 0 and kept.shape == (280, 256)
    assert read_image(tmp_path / "d.tif", databar=10).shape == (270, 256)


def test_lazy_crop_stays_lazy(tmp_path, texture):
    tifffile.imwrite(tmp_path / "z.tif", with_databar(texture, 24), compression="zlib",
                     tile=(64, 64))
    image = read_image(tmp_path / "z.tif", databar="crop", lazy=True)
    assert image.lazy and image.shape == (256, 256)
    assert not isinstance(image.data, np.ndarray)
    np.testing.assert_array_equal(np.asarray(image.data[200:256, :]), texture[200:256])
