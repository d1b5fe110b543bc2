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


# --- the databar of `dleem synth --databar N` (dense text at small widths) ------------


@pytest.mark.parametrize("width", [128, 192, 256, 512])
@pytest.mark.parametrize("rows", [8, 12, 20, 40])
def test_synth_style_databar_on_real_texture(real_textures, width, rows):
    """Before the text-line bridging, the synth panel was missed at widths <= 256: its
    5-row text line lies below the background fraction for more than 3 rows."""
    from dleem.synth.acquisition import add_databar

    image = np.tile(real_textures["shale_crop_128"], (4, 4))[:width, :width]
    text = "HV 15.00 kV  WD 10.0 mm  HFW 16.0 um  BSED  HR_12.tif  dleem synth"
    barred = add_databar(image, rows, text)
    assert detect_databar(barred) == rows
    light = barred.copy()
    light[width:] = 255 - light[width:]  # light panel, dark text and line (Tescan, JEOL)
    assert detect_databar(light) == rows
    assert detect_databar(add_databar(image.astype(np.uint16) * 16, rows, text)) == rows


def test_dark_image_above_black_databar_is_not_text(texture):
    from dleem.synth.acquisition import add_databar

    dark = (texture * 0.15).astype(np.uint8)  # 0-35: much of it at the panel's black
    assert detect_databar(add_databar(dark, 20, "HV 15.00 kV  WD 10.0 mm")) == 20


@pytest.fixture(scope="module")
def synth_sets(tmp_path_factory):
    """`dleem synth --databar 20`: LR 512 / HR 256 (noisy) and LR 256 / HR 128 (noise-free)."""
    from dleem.cli import main

    root = tmp_path_factory.mktemp("synth_databar")
    sets = {}
    for name, extra in (("512", ["--size", "512", "--hr-size", "256"]),
                        ("256", ["--size", "256", "--hr-size", "128", "--no-noise"])):
        assert main(["synth", "-o", str(root / name), "--regions", "1", "--seed", "0",
                     "--databar", "20", *extra]) == 0
        sets[name] = root / name
    return sets


@pytest.mark.parametrize("name", ["512", "256"])
def test_synth_databar_detected_exactly(synth_sets, name):
    for file in ("LR.tif", "HR_1.tif"):  # widths 512, 256 / 256, 128
        image = read_image(synth_sets[name] / file)
        assert (image.databar_rows, image.databar_source) == (20, "detected"), file


@pytest.mark.parametrize("name", ["512", "256"])
def test_register_masks_synth_databar(synth_sets, name, tmp_path):
    """With the databar missed in HR, registration was 0.58 LR px off (512 / 256) or failed
    (256 / 128); masked it is as good as without a databar (0.062 and 0.010 LR px)."""
    import json

    from dleem.cli import main
    from dleem.registration import AffineMap

    folder = synth_sets[name]
    assert main(["register", str(folder / "LR.tif"), str(folder / "HR_1.tif"),
                 "-o", str(tmp_path / "ws"), "--no-qc"]) == 0
    found = json.loads((tmp_path / "ws" / "registration.json").read_text())
    truth = json.loads((folder / "truth.json").read_text())["regions"][0]
    assert found["lr_databar_rows"] == found["regions"][0]["hr_databar_rows"] == 20
    fit = AffineMap.from_list(found["regions"][0]["hr_to_lr"])
    error = fit.corners_rms_error(AffineMap.from_list(truth["hr_to_lr"]), tuple(truth["shape"]))
    assert error < 0.1
