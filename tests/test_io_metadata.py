"""Pixel size and its source, from TIFFs written with each vendor's metadata layout."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dleem.io import read_image

# Thermo Fisher / FEI xT: an INI text in tag 34682 (Helios) or 34680 (S-FEG);
# [Scan] PixelWidth in metres; [Image] ResolutionY is the height without databar.
FEI_TEXT = (
    "[User]\r\nDate=11/25/2026\r\nTime=10:00:00 AM\r\nUser=supervisor\r\n"
    "[System]\r\nType=DualBeam\r\nDnumber=9922345\r\nSoftware=8.8.1.3451\r\n"
    "[Beam]\r\nHV=15000\r\nSpot=3\r\n"
    "[Scan]\r\nInternalScan=true\r\nDwelltime=3e-06\r\nPixelWidth=4.9609375e-08\r\n"
    "PixelHeight=4.9609375e-08\r\nHorFieldsize=6.35e-06\r\nVerFieldsize=5.5e-06\r\n"
    "[Image]\r\nDigitalContrast=1\r\nResolutionX=128\r\nResolutionY={resy}\r\n"
)

# Zeiss SmartSEM tag 34118: leading numbers, then NAME / "Label = value unit" line pairs.
ZEISS_TEXT = (
    "0\r\n0\r\n0\r\n"
    "SV_USER_NAME\r\nUser Name = ZEISS\r\n"
    "AP_PIXEL_SIZE\r\nPixel Size = 12.4 nm\r\n"
    "AP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = 12.4 nm\r\n"
    "AP_MAG\r\nMag = 9.00 K X\r\n"
    "DP_SCANRATE\r\nScan Speed = 5\r\n"
)

# Tescan tag 50431: a binary preamble then "key=value" lines under [MAIN], sizes in metres.
TESCAN_TEXT = (
    "[MAIN]\r\nCompany=TESCAN\r\nDate=2026-11-25\r\nDescription=\r\nDevice=MIRA3\r\n"
    "Magnification=2000\r\nPixelSizeX=1.2345e-07\r\nPixelSizeY=1.2345e-07\r\n"
    "UserName=user\r\n[SEM]\r\nHV=20000.0\r\nWD=0.0150\r\n"
)

# JEOL .txt sidecar: "$KEY value" lines; the scale bar of MARKER spans BAR pixels of
# an image CM_FULL_SIZE wide.
JEOL_TEXT = (
    "$CM_FORMAT JEOL-SEM\n$CM_VERSION 1.0\n$CM_INSTRUMENT 6610LV\n$CM_SIGNAL SEI\n"
    "$CM_MAG 5000\n$CM_FULL_SIZE {full} {full_h}\n$CM_LABEL JEOL\n"
    "$$SM_MICRON_BAR 150\n$$SM_MICRON_MARKER 5um\n$SEM_DATA_VERSION 1\n"
)


def test_fei(tmp_path, real_texture):
    # 128 image rows + a 24-row databar; FEI says ResolutionY=128
    data = np.vstack([real_texture, np.zeros((24, 128), np.uint8)])
    tifffile.imwrite(tmp_path / "fei.tif", data,
                     extratags=[(34682, "s", 0, FEI_TEXT.format(resy=128), True)])
    image = read_image(tmp_path / "fei.tif")
    assert image.pixel_size_source == "fei_metadata"
    assert image.pixel_size_um == pytest.approx(0.049609375)
    assert (image.databar_rows, image.databar_source) == (24, "fei_metadata")
    assert image.shape == (152, 128)  # "detect" keeps the pixels
    cropped = read_image(tmp_path / "fei.tif", databar="crop")
    np.testing.assert_array_equal(cropped.data, real_texture)


def test_fei_sfeg_tag(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "sfeg.tif", real_texture,
                     extratags=[(34680, "s", 0, FEI_TEXT.format(resy=128), True)])
    image = read_image(tmp_path / "sfeg.tif")
    assert image.pixel_size_source == "fei_metadata" and image.databar_rows == 0


def test_zeiss(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "zeiss.tif", real_texture,
                     extratags=[(34118, "s", 0, ZEISS_TEXT, True)])
    image = read_image(tmp_path / "zeiss.tif")
    assert image.pixel_size_source == "sem_metadata"
    assert image.pixel_size_um == pytest.approx(0.0124)


def test_zeiss_micrometres(tmp_path, real_texture):
    # SmartSEM writes the micro sign as one Latin-1 byte (0xB5)
    text = ZEISS_TEXT.replace("12.4 nm", "1.5 µm").encode("latin-1")
    tifffile.imwrite(tmp_path / "z.tif", real_texture, extratags=[(34118, "s", 0, text, True)])
    assert read_image(tmp_path / "z.tif").pixel_size_um == pytest.approx(1.5)


def test_tescan_tag(tmp_path, real_texture):
    text = TESCAN_TEXT.encode("ascii")
    # a binary preamble, and NUL padding inside the text, as the tag carries
    payload = b"\x01\x00\x00\x00\x10\x00\xff\x00" + text[:40] + b"\x00\x00" + text[40:]
    tifffile.imwrite(tmp_path / "tescan.tif", real_texture,
                     extratags=[(50431, "B", len(payload), payload, True)])
    image = read_image(tmp_path / "tescan.tif")
    assert image.pixel_size_source == "tescan"
    assert image.pixel_size_um == pytest.approx(0.12345)


def test_tescan_hdr_sidecar(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "scan.tif", real_texture)
    (tmp_path / "scan.hdr").write_text(TESCAN_TEXT.replace("1.2345e-07", "2.5e-08"))
    image = read_image(tmp_path / "scan.tif")
    assert image.pixel_size_source == "tescan" and image.pixel_size_um == pytest.approx(0.025)


def test_jeol_txt_sidecar(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "jeol.tif", real_texture)
    (tmp_path / "jeol.txt").write_text(JEOL_TEXT.format(full=128, full_h=128))
    image = read_image(tmp_path / "jeol.tif")
    assert image.pixel_size_source == "jeol"
    assert image.pixel_size_um == pytest.approx(5 / 150)


def test_jeol_reduced_save_scales(tmp_path, real_texture):
    # the bar was measured on a 1280-wide acquisition; the file is 128 wide: 10x larger pixels
    tifffile.imwrite(tmp_path / "small.tif", real_texture)
    (tmp_path / "small.txt").write_text(JEOL_TEXT.format(full=1280, full_h=960))
    assert read_image(tmp_path / "small.tif").pixel_size_um == pytest.approx(10 * 5 / 150)


def test_jeol_sidecar_for_jpeg(tmp_path, real_texture):
    import imagecodecs

    (tmp_path / "j.jpg").write_bytes(imagecodecs.jpeg8_encode(real_texture, level=95))
    (tmp_path / "j.txt").write_text(JEOL_TEXT.format(full=128, full_h=128))
    image = read_image(tmp_path / "j.jpg")
    assert image.pixel_size_source == "jeol"


def test_ome(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "o.ome.tif", real_texture, ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 35.0, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 35.0, "PhysicalSizeYUnit": "nm"})
    image = read_image(tmp_path / "o.ome.tif")
    assert image.pixel_size_source == "ome" and image.pixel_size_um == pytest.approx(0.035)


def test_resolution_tags(tmp_path, real_texture):
    # 20000 pixels per cm = 0.5 µm
    tifffile.imwrite(tmp_path / "cm.tif", real_texture, resolution=(20000, 20000),
                     resolutionunit="CENTIMETER")
    image = read_image(tmp_path / "cm.tif")
    assert image.pixel_size_source == "resolution_tags"
    assert image.pixel_size_um == pytest.approx(0.5)
    # 50800 dpi = 0.5 µm
    tifffile.imwrite(tmp_path / "in.tif", real_texture, resolution=(50800, 50800),
                     resolutionunit="INCH")
    assert read_image(tmp_path / "in.tif").pixel_size_um == pytest.approx(0.5)


@pytest.mark.parametrize(("resolution", "unit"), [((1, 1), "NONE"), ((1, 1), None),
                                                  ((72, 72), "INCH"), ((300, 300), "INCH"),
                                                  ((5000, 5000), "NONE")])
def test_meaningless_resolution_is_no_pixel_size(tmp_path, real_texture, resolution, unit):
    kwargs = {"resolution": resolution}
    if unit:
        kwargs["resolutionunit"] = unit
    tifffile.imwrite(tmp_path / "r.tif", real_texture, **kwargs)
    image = read_image(tmp_path / "r.tif")
    assert image.pixel_size_um is None and image.pixel_size_source == "none"


def test_imagej_unit(tmp_path, real_texture):
    # ImageJ/Fiji: pixels per unit with ResolutionUnit NONE and "unit=micron" in the description
    tifffile.imwrite(tmp_path / "ij.tif", real_texture, imagej=True, resolution=(4.0, 4.0),
                     metadata={"unit": "micron"})
    image = read_image(tmp_path / "ij.tif")
    assert image.pixel_size_source == "resolution_tags"
    assert image.pixel_size_um == pytest.approx(0.25)


def test_imagej_escaped_micrometre_unit(tmp_path, real_texture, capsys):
    # Fiji's Set Scale in µm is saved as the six ASCII characters \u00B5m (descriptions are ASCII)
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, real_texture, imagej=True, resolution=(20.0, 20.0),
                     metadata={"unit": "\\u00B5m"})
    with tifffile.TiffFile(path) as tif:
        assert "unit=\\u00B5m" in tif.pages[0].description  # what tifffile really writes
        assert tif.pages[0].tags["ResolutionUnit"].value == 1
    image = read_image(path)
    assert (image.pixel_size_um, image.pixel_size_source) == (pytest.approx(0.05), "resolution_tags")
    from dleem.cli import main

    assert main(["info", str(path)]) == 0
    assert "pixel size:  0.05 µm (resolution_tags)" in capsys.readouterr().out


def test_imagej_hand_made_description(tmp_path, real_texture):
    # the description as ImageJ 1.x itself writes it (not through tifffile's imagej=True)
    description = "ImageJ=1.54f\nunit=\\u00B5m\nspacing=1.0\nloop=false\n"
    path = tmp_path / "imagej.tif"
    tifffile.imwrite(path, real_texture, description=description, resolution=(8.0, 8.0),
                     resolutionunit="NONE", metadata=None)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "\\u00B5m"
    assert read_image(path).pixel_size_um == pytest.approx(0.125)


def test_user_override_wins(tmp_path, real_texture):
    tifffile.imwrite(tmp_path / "zeiss.tif", real_texture,
                     extratags=[(34118, "s", 0, ZEISS_TEXT, True)])
    image = read_image(tmp_path / "zeiss.tif", pixel_size_um=0.3)
    assert (image.pixel_size_um, image.pixel_size_source) == (0.3, "user")


def test_vendor_before_generic_tags(tmp_path, real_texture):
    # image software rewrote 72 dpi resolution; the vendor tag is what the microscope said
    tifffile.imwrite(tmp_path / "both.tif", real_texture, resolution=(20000, 20000),
                     resolutionunit="CENTIMETER",
                     extratags=[(34682, "s", 0, FEI_TEXT.format(resy=128), True)])
    assert read_image(tmp_path / "both.tif").pixel_size_source == "fei_metadata"
