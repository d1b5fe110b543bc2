"""Zeiss CZI input: lazy plane, stitched mosaic, scene/channel/page choice, pixel size, bad files.

Every CZI here is written by the test itself with pylibCZIrw (no binary is committed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pc = pytest.importorskip("pylibCZIrw.czi")

from dleem.cli import main  # noqa: E402
from dleem.errors import InputError  # noqa: E402
from dleem.io import read_image  # noqa: E402
from dleem.io.czi import CziArray, choose_plane  # noqa: E402

RATIO = 4


def write_czi(path: Path, data: np.ndarray, *, px_um: float | None = None, tile: int | None = None,
              overlap: int = 0, origin: tuple[int, int] = (0, 0), scene: int = 0,
              plane: dict | None = None, writer=None) -> Path:
    """`data` as one tile or as overlapping `tile`-px tiles at `origin` (x, y); scaling in metres."""
    def put(w) -> None:
        h, wd = data.shape[:2]
        step = (tile - overlap) if tile else max(h, wd)
        for y in range(0, h, step):
            for x in range(0, wd, step):
                part = data[y:y + (tile or h), x:x + (tile or wd)]
                w.write(np.ascontiguousarray(part), location=(origin[0] + x, origin[1] + y),
                        scene=scene, plane=plane)

    if writer is not None:
        put(writer)
        return path
    with pc.create_czi(str(path), exist_ok=True) as w:
        put(w)
        scale = px_um * 1e-6 if px_um else 0.0  # CZI Scaling/Items/Distance is in metres
        w.write_metadata(scale_x=scale, scale_y=scale)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """`dleem synth` at LR 256 px, ratio 4, and that LR map as CZI in several layouts."""
    synth = pytest.importorskip("dleem.synth")
    root = tmp_path_factory.mktemp("czi")
    plain = dict(ratio=RATIO, lr_size=256, hr_size=512, regions=1, databar_rows=0,
                 rotation_deg=0.0, scale_error=0.0, shear=0.0, drift_px=(0.0, 0.0), jitter=0.0)
    truth = synth.generate(root / "s", synth.SynthParams(seed=1, **plain)).truth
    lr = np.asarray(read_image(root / "s" / "LR.tif", databar="keep").data)
    px = float(truth["lr_pixel_size_um"])
    files = {
        "single": write_czi(root / "single.czi", lr, px_um=px),
        "mosaic": write_czi(root / "mosaic.czi", lr, px_um=px, tile=96, overlap=16, origin=(1500, 700)),
        "gray16": write_czi(root / "gray16.czi", lr.astype(np.uint16) * 257, px_um=px, tile=128,
                            overlap=8),
    }
    other = np.random.default_rng(3).integers(0, 255, (64, 80), dtype=np.uint8)
    with pc.create_czi(str(root / "scenes.czi")) as w:
        write_czi(root / "scenes.czi", lr, tile=128, overlap=8, scene=0, writer=w)
        write_czi(root / "scenes.czi", other, origin=(5000, 5000), scene=1, writer=w)
        w.write_metadata(scale_x=px * 1e-6, scale_y=px * 1e-6)
    files["scenes"] = root / "scenes.czi"
    return {"lr": lr, "other": other, "px": px, "hr": root / "s" / "HR_1.tif", **files}


# -- reading ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["single", "mosaic", "gray16"])
def test_read_lazily_equals_the_image(scene, name):
    image = read_image(scene[name], lazy=True)
    expect = scene["lr"].astype(np.uint16) * 257 if name == "gray16" else scene["lr"]
    assert isinstance(image.data, CziArray) and image.lazy and image.format == "CZI"
    assert image.shape == expect.shape and image.dtype == expect.dtype and image.data.ndim == 2
    assert image.pixel_size_um == pytest.approx(scene["px"]) and image.pixel_size_source == "czi_metadata"
    np.testing.assert_array_equal(np.asarray(image.data), expect)
    np.testing.assert_array_equal(image.data[70:130, 85:200], expect[70:130, 85:200])  # across seams
    np.testing.assert_array_equal(image.data[-5:, ::3], expect[-5:, ::3])
    np.testing.assert_array_equal(image.data[7], expect[7])
    whole = read_image(scene[name])  # small: read into memory
    assert isinstance(whole.data, np.ndarray) and not whole.lazy
    np.testing.assert_array_equal(whole.data, expect)


def test_gray32float_and_a_lazy_databar_crop(tmp_path):
    a = np.random.default_rng(1).random((60, 70)).astype(np.float32)
    image = read_image(write_czi(tmp_path / "f.czi", a, px_um=0.2), lazy=True, databar=10)
    assert image.dtype == np.float32 and image.bits_used is None
    assert isinstance(image.data, CziArray) and image.shape == (50, 70)
    np.testing.assert_array_equal(np.asarray(image.data), a[:50])


def test_a_window_reads_only_its_region(tmp_path, monkeypatch):
    path = write_czi(tmp_path / "big.czi", np.zeros((1024, 1024), np.uint16), px_um=0.1, tile=256)
    image = read_image(path, lazy=True, databar="keep")
    rois = []
    reader_read = type(image.data)._read

    def spy(self, y0, y1, x0, x1):
        rois.append((y1 - y0) * (x1 - x0))
        return reader_read(self, y0, y1, x0, x1)

    monkeypatch.setattr(CziArray, "_read", spy)
    assert image.data[500:564, 10:74].shape == (64, 64)
    assert rois == [64 * 64]


def test_multi_scene_needs_a_choice_that_lists_the_scenes(scene, capsys):
    with pytest.raises(InputError, match=r"2 scenes \(0: 256x256, 1: 64x80\).*--scene"):
        read_image(scene["scenes"])
    np.testing.assert_array_equal(read_image(scene["scenes"], scene=0).data, scene["lr"])
    one = read_image(scene["scenes"], scene=1)
    np.testing.assert_array_equal(one.data, scene["other"])
    assert one.metadata["czi"]["origin_px"] == [5000, 5000] and one.page_reason == "scene 1 as asked"
    with pytest.raises(InputError, match="scene 7 does not exist"):
        read_image(scene["scenes"], scene=7)
    assert main(["info", str(scene["scenes"]), "--scene", "1"]) == 0
    assert "scene 1 of 2" in capsys.readouterr().out
    assert main(["info", str(scene["scenes"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 scenes" in err[0]


def test_channels_and_z_planes_are_chosen_not_guessed(tmp_path, capsys):
    a = np.full((40, 50), 10, np.uint8)
    path = tmp_path / "cz.czi"
    with pc.create_czi(str(path)) as w:
        w.write(a, plane={"C": 0, "Z": 0})
        w.write(a + 1, plane={"C": 0, "Z": 1})
        w.write(np.full((40, 50), 1000, np.uint16), plane={"C": 1, "Z": 0})
        w.write(np.full((40, 50), 1001, np.uint16), plane={"C": 1, "Z": 1})
        w.write_metadata()
    with pytest.raises(InputError, match=r"2 channels \(0: Gray8, 1: Gray16\), 2 Z.*--channel"):
        read_image(path)
    with pytest.raises(InputError, match=r"--page N\), N in 0..1 over Z"):
        read_image(path, channel=1)
    image = read_image(path, channel=1, page=1)
    assert image.dtype == np.uint16 and int(image.data[0, 0]) == 1001 and image.pages == 2
    assert image.pixel_size_um is None and image.pixel_size_source == "none"  # no scaling
    with pytest.raises(InputError, match="channel 2 does not exist"):
        read_image(path, channel=2, page=0)
    tif = tmp_path / "x.tif"
    tif.write_bytes(b"II*\x00")
    with pytest.raises(InputError, match="CZI files only"):
        read_image(tif, channel=0)
    assert main(["info", str(path), "--channel", "0", "--page", "1"]) == 0
    assert "channel 0 of 2 (Gray8)" in capsys.readouterr().out


def test_info_names_the_pixel_size_source(scene, capsys):
    assert main(["info", str(scene["mosaic"])]) == 0
    out = capsys.readouterr().out
    assert "format:      CZI" in out and "(czi_metadata)" in out and "origin (1500, 700)" in out


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, kind", [(np.uint8, "Bgr24"), (np.uint16, "Bgr48")])
def test_rgb_is_refused(tmp_path, dtype, kind):
    path = write_czi(tmp_path / "rgb.czi", np.zeros((30, 40, 3), dtype))
    with pytest.raises(InputError, match=f"unsupported RGB pixel type {kind}"):
        read_image(path)


def test_complex_pixel_type_is_refused():
    box = {"C": (0, 1), "Z": (0, 1), "T": (0, 1), "X": (0, 8), "Y": (0, 8)}
    with pytest.raises(InputError, match="unsupported pixel type Gray64ComplexFloat"):
        choose_plane(Path("c.czi"), box, {0: (0, 0, 8, 8)}, {0: "Gray64ComplexFloat"}, None, None, None)


def test_truncated_and_corrupt_files_give_one_line(scene, tmp_path, capsys):
    data = scene["single"].read_bytes()
    cut = tmp_path / "cut.czi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated CZI"):
        read_image(cut)
    junk = tmp_path / "junk.czi"
    junk.write_bytes(b"not a czi" * 50)
    with pytest.raises(InputError, match="not a CZI file"):
        read_image(junk)
    broken = bytearray(data)  # a subblock whose header is overwritten: found only when read
    i = broken.find(b"ZISRAWSUBBLOCK")
    broken[i:i + 14] = b"X" * 14
    bad = tmp_path / "bad.czi"
    bad.write_bytes(bytes(broken))
    with pytest.raises(InputError, match="corrupt CZI"):
        read_image(bad)
    for path in (cut, junk, bad):
        assert main(["info", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0]


# -- through the CLI -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["single", "mosaic", "gray16"])
def test_register_a_czi_map(scene, name, tmp_path):
    ws = tmp_path / "ws"
    assert main(["register", str(scene[name]), str(scene["hr"]), "-o", str(ws), "--no-qc"]) == 0
    reg = json.loads((ws / "registration.json").read_text())
    (entry,) = reg["regions"]
    assert entry["status"] == "ok" and entry["ratio_source"] == "pixel_size"
    assert entry["ratio"] == pytest.approx(RATIO, rel=0.02)
    manifest = json.loads((ws / "pairs" / "manifest.json").read_text())
    assert manifest["lr_pixel_size_um"] == pytest.approx(scene["px"])


@pytest.fixture(scope="module")
def models(tmp_path_factory, scene):
    """Untrained tiny generators (uint8, uint16) at the scene's pixel size: enough to stream."""
    torch = pytest.importorskip("torch")
    from dleem.models import ModelConfig, build_generator, save_model

    out = {}
    for dtype in ("uint8", "uint16"):
        cfg = ModelConfig.tiny(scale=RATIO, input_dtype=dtype, mean=0.5, std=0.25,
                               lr_pixel_size_um=scene["px"], hr_pixel_size_um=scene["px"] / RATIO,
                               lr_blur_sigma_px=0.8)
        torch.manual_seed(0)
        out[dtype] = tmp_path_factory.mktemp("m") / dtype
        save_model(out[dtype], build_generator(cfg.arch, RATIO), cfg)
    return out


@pytest.mark.parametrize("name", ["single", "mosaic", "gray16"])
def test_upscale_a_czi_map(scene, models, name, tmp_path):
    model = models["uint16" if name == "gray16" else "uint8"]
    out = tmp_path / "SR.ome.tif"
    assert main(["upscale", str(scene[name]), "--model", str(model), "-o", str(out),
                 "--tile", "64", "--device", "cpu"]) == 0
    sr = read_image(out, databar="keep")
    assert sr.shape == (256 * RATIO, 256 * RATIO)
    assert sr.dtype == (np.uint16 if name == "gray16" else np.uint8)
    assert sr.pixel_size_um == pytest.approx(scene["px"] / RATIO)
    import tifffile

    with tifffile.TiffFile(out) as tif:
        assert str(scene[name].resolve()) in tif.ome_metadata and "czi_metadata" in tif.ome_metadata


def test_register_and_upscale_refuse_an_ambiguous_czi(scene, models, tmp_path, capsys):
    for args in (["register", str(scene["scenes"]), str(scene["hr"]), "-o", str(tmp_path / "ws")],
                 ["upscale", str(scene["scenes"]), "--model", str(models["uint8"]),
                  "-o", str(tmp_path / "SR.tif")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "2 scenes" in err[0]


def test_a_czi_without_scaling_asks_for_the_ratio(scene, tmp_path, capsys):
    path = write_czi(tmp_path / "nopx.czi", scene["lr"])
    image = read_image(path)
    assert image.pixel_size_um is None and image.pixel_size_source == "none"
    assert main(["register", str(path), str(scene["hr"]), "-o", str(tmp_path / "ws"), "--no-qc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ratio" in err[0]


def test_run_takes_a_scene_of_a_czi_map(scene, tmp_path):
    """`dleem run` on a two-scene CZI: the config's `scene` picks the map, every step reads it."""
    config = tmp_path / "run.toml"
    config.write_text(f'''lr = "{scene["scenes"]}"
hr = ["{scene["hr"]}"]
output = "{tmp_path / "ws"}"
scene = 0
[train]
losses = ["mae"]
steps = 2
preset = "tiny"
device = "cpu"
[upscale]
tile = 64
[evaluate]
tiles = 4
tile_size = 64
thickness_tiles = 1
''')
    assert main(["run", str(config)]) == 0
    sr = read_image(tmp_path / "ws" / "upscale" / "SR.ome.tif")
    assert sr.shape == (RATIO * scene["lr"].shape[0], RATIO * scene["lr"].shape[1])
    assert sr.pixel_size_um == pytest.approx(scene["px"] / RATIO)
    assert (tmp_path / "ws" / "report" / "index.html").is_file()
