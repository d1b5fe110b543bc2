"""`dleem info`: the report, and every input error as one line with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dleem.cli import main

# Thermo Fisher / FEI layout (see test_io_metadata.py for a fuller header)
FEI_TEXT = "[Scan]\r\nPixelWidth=4.9609375e-08\r\n[Image]\r\nResolutionX=128\r\nResolutionY={resy}\r\n"


def run_info(capsys, *args):
    code = main(["info", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_report_fei_12bit_with_databar(tmp_path, capsys, real_texture_12bit):
    data = np.vstack([real_texture_12bit, np.zeros((20, 128), np.uint16)])
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, data, extratags=[(34682, "s", 0, FEI_TEXT.format(resy=128), True)])
    code, out, err = run_info(capsys, path)
    assert code == 0 and err == ""
    assert "shape:       148 x 128 (rows x columns)" in out
    assert "dtype:       uint16" in out
    assert "bits used:   12 (max_value)" in out
    assert "pixel size:  0.0496094 µm (fei_metadata)" in out
    assert "pages:       1 (reading page 0)" in out
    assert "databar:     20 rows at the bottom (fei_metadata)" in out
    assert "lazy:        no" in out


def test_report_png_override_and_page(tmp_path, capsys, real_texture, data_dir):
    code, out, _ = run_info(capsys, data_dir / "shale_crop_128.png", "--pixel-size", "0.2")
    assert code == 0
    assert "pixel size:  0.2 µm (user)" in out and "bits used:   8" in out
    tifffile.imwrite(tmp_path / "s.tif", np.stack([real_texture, real_texture]))
    code, out, _ = run_info(capsys, tmp_path / "s.tif", "--page", "1")
    assert code == 0 and "pages:       2 (reading page 1: page 1 as asked)" in out
    with tifffile.TiffWriter(tmp_path / "t.tif") as tw:
        tw.write(real_texture[::4, ::4], subfiletype=1)
        tw.write(real_texture)
    code, out, _ = run_info(capsys, tmp_path / "t.tif")
    assert "pages:       2 (reading page 1: full resolution (the other pages are reduced copies))" in out
    code, out, _ = run_info(capsys, data_dir / "ceramic_crop_96.png")
    assert "pixel size:  unknown" in out and "databar:     none found" in out


def _truncated(tmp_path, real_texture):
    path = tmp_path / "real.tif"
    tifffile.imwrite(path, real_texture)  # a real SEM crop as an uncompressed TIFF
    raw = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    return cut


def _complex(tmp_path, real_texture):
    path = tmp_path / "complex.tif"
    tifffile.imwrite(path, real_texture.astype(np.complex64))
    return path


def _uint32(tmp_path, real_texture):
    path = tmp_path / "u32.tif"
    tifffile.imwrite(path, real_texture.astype(np.uint32))
    return path


def _empty_image(tmp_path, real_texture):
    path = tmp_path / "empty.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(path, np.zeros((0, 128), np.uint8))
    return path


def _empty_file(tmp_path, real_texture):
    path = tmp_path / "zero.png"
    path.write_bytes(b"")
    return path


def _pages(tmp_path, real_texture):
    path = tmp_path / "stack.tif"
    stack = np.stack([real_texture, real_texture[::-1], real_texture.T])
    tifffile.imwrite(path, stack, photometric="minisblack")  # 3 pages, not planar RGB
    return path


def _garbage(tmp_path, real_texture):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    return path


def _missing(tmp_path, real_texture):
    return tmp_path / "missing.tif"


@pytest.mark.parametrize(("make", "problem"), [
    (_missing, "file not found"),
    (_truncated, "truncated TIFF"),
    (_garbage, "TIFF"),
    (_complex, "unsupported pixel type complex64"),
    (_uint32, "unsupported pixel type uint32"),
    (_empty_image, "empty image"),
    (_empty_file, "empty file"),
    (_pages, "3 pages hold separate 128x128 images; choose one with page=N (--page N)"),
])
def test_errors_one_line_exit_2(tmp_path, capsys, real_texture, make, problem):
    path = make(tmp_path, real_texture)
    code, out, err = run_info(capsys, path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"dleem info: error: {path}: ")
    assert problem in lines[0]
    assert "Traceback" not in err


def test_page_out_of_range(tmp_path, capsys, real_texture):
    path = _pages(tmp_path, real_texture)
    code, _, err = run_info(capsys, path, "--page", "3")
    assert code == 2 and "page 3 does not exist (the file has 3 pages: 0..2)" in err


def test_bad_pixel_size_option(capsys, data_dir):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(data_dir / "shale_crop_128.png"), "--pixel-size", "-1"])
    assert exit_info.value.code == 2
    assert "positive" in capsys.readouterr().err
