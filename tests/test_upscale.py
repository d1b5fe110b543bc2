"""Upscaling: seam-free tiling, streaming files, dtype and pixel size, resume, dask, errors."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from dleem.errors import DleemError, InputError
from dleem.models import ModelConfig, build_generator, load_model, save_model
from dleem.upscale import TileGrid, upscale_array, upscale_file
from dleem.upscale import stream as stream_mod
from dleem.upscale.engine import choose_precision
from dleem.upscale.tiling import predict

LR_PX = 0.4


def _make_model(path: Path, *, scale: int = 4, dtype: str = "uint8", mean: float = 0.5,
                std: float = 0.25, sigma: float = 0.8) -> Path:
    """A tiny generator with a strong (non-bicubic) learned branch, saved as a model folder."""
    cfg = ModelConfig.tiny(scale=scale, input_dtype=dtype, mean=mean, std=std,
                           lr_pixel_size_um=LR_PX, hr_pixel_size_um=LR_PX / scale, lr_blur_sigma_px=sigma)
    torch.manual_seed(0)
    gen = build_generator(cfg.arch, scale)
    with torch.no_grad():
        gen.upsample.weight.mul_(30.0)
        gen.upsample.bias.normal_(0, 0.05)
    save_model(path, gen, cfg)
    return path


@pytest.fixture(scope="module")
def model_u8(tmp_path_factory) -> Path:
    return _make_model(tmp_path_factory.mktemp("m") / "u8")


@pytest.fixture(scope="module")
def model_f32(tmp_path_factory) -> Path:
    return _make_model(tmp_path_factory.mktemp("m") / "f32", scale=3, dtype="float32")


def _image(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    x = ndimage.gaussian_filter(rng.random(shape), 2.0)
    x = (x - x.min()) / (x.max() - x.min())
    if np.dtype(dtype).kind == "f":
        return x.astype(dtype)
    return (x * np.iinfo(dtype).max * 0.9).astype(dtype)


def _write_tif(path: Path, data: np.ndarray, px: float | None = LR_PX, tile: int | None = None) -> Path:
    md = {"axes": "YX"}
    if px:
        md.update(PhysicalSizeX=px, PhysicalSizeXUnit="µm", PhysicalSizeY=px, PhysicalSizeYUnit="µm")
    tifffile.imwrite(path, data, ome=True, metadata=md, tile=(tile, tile) if tile else None)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- geometry ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape,tile,halo", [((100, 77), 16, 7), ((40, 300), 37, 11), ((20, 20), 64, 9)])
def test_grid_covers_once_with_context(shape, tile, halo):
    grid = TileGrid(shape, tile, halo)
    cover = np.zeros(shape, int)
    for t in grid:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        assert (t.read[1] - t.read[0], t.read[3] - t.read[2]) == grid.read_shape
        # every core pixel has `halo` pixels of context or the image edge on each side
        assert t.read[0] <= max(y0 - halo, 0) and t.read[1] >= min(y1 + halo, shape[0])
        assert t.read[2] <= max(x0 - halo, 0) and t.read[3] >= min(x1 + halo, shape[1])
    assert (cover == 1).all()


# -- seam-free ---------------------------------------------------------------------------
def test_tiled_equals_whole_image_float32(model_f32):
    m = load_model(model_f32)
    img = _image((157, 203), np.float32)
    whole = m.denormalize(predict(m, img[None])[0], np.float32)
    for tile, batch in ((16, 3), (37, 4)):
        assert 203 % tile and 157 % tile
        tiled = upscale_array(img, m, tile=tile, batch=batch, device="cpu")
        assert tiled.dtype == np.float32 and tiled.shape == (3 * 157, 3 * 203)
        assert len(TileGrid(img.shape, tile, m.halo_lr_px)) >= 12
        assert np.abs(tiled - whole).max() <= 1e-5


def test_tiled_equals_whole_image_uint8_and_zarr_input(model_u8, tmp_path):
    m = load_model(model_u8)
    img = _image((90, 130), np.uint8)
    whole = m.denormalize(predict(m, img[None])[0], np.uint8)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=img.shape, dtype=img.dtype, chunks=(32, 32))
    z[:] = img
    tiled = upscale_array(z, model_u8, tile=24, batch=2, device="cpu")
    assert tiled.dtype == np.uint8
    # rounding of values within 1e-6 of a half level may flip: allow a handful of 1-level differences
    d = np.abs(tiled.astype(int) - whole.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3


def test_oom_retries_with_smaller_batches_and_tiles(model_u8):
    m = load_model(model_u8)
    img = _image((70, 70), np.uint8, seed=3)
    ref = upscale_array(img, m, tile=32, device="cpu")
    real = m.generator

    class Flaky(torch.nn.Module):
        calls: list = []

        def forward(self, x):
            Flaky.calls.append(tuple(x.shape))
            if x.shape[0] > 1 or x.shape[-1] > 40:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return real(x)

    m.generator = Flaky()
    out = upscale_array(img, m, tile=32, batch=4, device="cpu")
    d = np.abs(out.astype(int) - ref.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3  # exact up to float rounding at half levels
    assert any(s[-1] <= 40 for s in Flaky.calls)  # quadrants ran


def test_precision_is_fp32_off_cuda(model_u8):
    m = load_model(model_u8)
    assert choose_precision(m, _image((2, 40, 40), np.uint8), np.uint8, "cpu") is None


# -- files -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_upscale_file_ome_tiff(tmp_path, dtype):
    model_dir = _make_model(tmp_path / "model", dtype=dtype)
    img = _image((150, 140), dtype, seed=1)
    src = _write_tif(tmp_path / "LR.tif", img, tile=64)  # tiled: read through zarr
    digest = _sha(src)
    out = upscale_file(src, model_dir, tmp_path / "SR.ome.tif", tile=48, batch=2, device="cpu")
    assert _sha(src) == digest
    ref = upscale_array(img, model_dir, tile=150, device="cpu")
    with tifffile.TiffFile(out) as tif:
        assert not tif.is_bigtiff and tif.is_ome
        series = tif.series[0]
        assert series.dtype == np.dtype(dtype) and series.shape == (600, 560)
        np.testing.assert_array_equal(series.asarray(), ref)
        assert [lv.shape for lv in series.levels] == [(600, 560), (300, 280)]
        page = tif.pages.first
        assert not page.is_tiled and page.rowsperstrip < 600  # strips: ImageJ opens it
        assert page.tags["ResolutionUnit"].value == 3  # centimetre
        xres = page.tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(1e5)  # 0.1 µm = 1e-5 cm
        ome = tif.ome_metadata
    assert 'PhysicalSizeX="0.1"' in ome and "PhysicalSizeXUnit=\"µm\"" in ome
    assert "sr_origin_lr_px" in ome and "-0.375" in ome
    from dleem.io import read_image

    assert read_image(out).pixel_size_um == pytest.approx(0.1)
    assert not list(tmp_path.glob(".*"))  # no work store or temp file left


def test_upscale_file_ome_zarr_and_zarr_input(tmp_path, model_u8):
    img = _image((150, 140), np.uint8, seed=2)
    src = _write_tif(tmp_path / "LR.tif", img)
    out = upscale_file(src, model_u8, tmp_path / "SR.ome.zarr", tile=40, device="cpu")
    g = zarr.open_group(str(out), mode="r")
    ome = g.attrs["ome"]
    assert ome["version"] == "0.5"
    ds = ome["multiscales"][0]["datasets"]
    assert [d["path"] for d in ds] == [str(i) for i in range(len(ds))]
    s0 = ds[0]["coordinateTransformations"]
    assert s0[0]["scale"] == pytest.approx([0.1, 0.1])
    assert s0[1]["translation"] == pytest.approx([-0.15, -0.15])  # -(k-1)/(2k) LR px * 0.4 µm
    assert ome["multiscales"][0]["axes"][0]["unit"] == "micrometer"
    level0 = np.asarray(g["0"])
    np.testing.assert_array_equal(level0, upscale_array(img, model_u8, device="cpu"))
    assert g["1"].shape == (300, 280) and "2" not in g
    assert not (out / stream_mod.PROGRESS_FILE).exists()
    # an OME-Zarr is also an input (level 0 and its pixel size)
    data, px, source = stream_mod.open_lazy(out)
    assert px == pytest.approx(0.1) and source == "ome" and data.shape == (600, 560)


def test_pixel_size_warning_not_refusal(tmp_path, model_u8, caplog):
    img = _image((40, 40), np.uint8)
    src = _write_tif(tmp_path / "LR.tif", img, px=0.5)
    with caplog.at_level(logging.WARNING):
        out = upscale_file(src, model_u8, tmp_path / "SR.tif", tile=16, device="cpu")
    assert out.exists() and "differs by 25%" in caplog.text


# -- errors --------------------------------------------------------------------------------
def test_dtype_mismatch_is_an_error(tmp_path, model_u8):
    src = _write_tif(tmp_path / "LR16.tif", _image((40, 40), np.uint16))
    with pytest.raises(InputError, match="uint16 does not match the model's training dtype uint8"):
        upscale_file(src, model_u8, tmp_path / "SR.tif", device="cpu")
    with pytest.raises(InputError, match="2-D"):
        upscale_array(np.zeros((2, 30, 30), np.uint8), model_u8, device="cpu")
    assert not (tmp_path / "SR.tif").exists()


def test_output_equal_to_input_and_bad_options(tmp_path, model_u8):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    digest = _sha(src)
    for out in (src, tmp_path / "." / "LR.tif"):
        with pytest.raises(DleemError, match="output path is the input"):
            upscale_file(src, model_u8, out, device="cpu")
    with pytest.raises(DleemError, match="tile must be >= 16"):
        upscale_file(src, model_u8, tmp_path / "SR.tif", tile=8, device="cpu")
    with pytest.raises(DleemError, match="must end in"):
        upscale_file(src, model_u8, tmp_path / "SR.png", device="cpu")
    assert _sha(src) == digest


def test_disk_full_leaves_no_output_and_resume_finishes(tmp_path, model_u8, monkeypatch):
    img = _image((64, 80), np.uint8)
    src = _write_tif(tmp_path / "LR.tif", img)
    digest = _sha(src)
    out = tmp_path / "SR.tif"
    m = load_model(model_u8)
    orig = m.generator.forward
    calls: list[int] = []
    m.generator.forward = lambda x: (calls.append(x.shape[0]), orig(x))[1]
    monkeypatch.setattr("dleem.upscale.pipeline._load", lambda model, dev, tta=False: m)

    # 1. the tile writer fails mid-way (20 tiles of 16 px; the 8th write hits a full disk)
    real_write_tile = stream_mod.WorkStore.write_tile
    n = {"writes": 0}

    def full_tile(self, *a, **k):
        n["writes"] += 1
        if n["writes"] == 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_tile(self, *a, **k)

    monkeypatch.setattr(stream_mod.WorkStore, "write_tile", full_tile)
    with pytest.raises(DleemError, match="disk full.*--resume") as info:
        upscale_file(src, model_u8, out, tile=16, batch=1, device="cpu")
    assert "\n" not in str(info.value)
    assert not out.exists() and _sha(src) == digest
    monkeypatch.setattr(stream_mod.WorkStore, "write_tile", real_write_tile)

    # 2. the final TIFF writer fails: no temp file, no output, tiles kept
    real = tifffile.TiffWriter.write

    def full(self, data=None, *a, **k):
        def gen():
            for _t in data:
                raise OSError(errno.ENOSPC, "No space left on device")
                yield _t
        return real(self, gen(), *a, **k)

    monkeypatch.setattr(tifffile.TiffWriter, "write", full)
    calls.clear()
    with pytest.raises(DleemError, match="disk full"):
        upscale_file(src, model_u8, out, tile=16, batch=1, device="cpu", resume=True)
    assert sum(calls) == 20 - 7  # only the tiles not on disk were computed
    assert not out.exists() and not list(tmp_path.glob(".SR.tif.tmp"))

    # 3. space again: resume only exports
    monkeypatch.setattr(tifffile.TiffWriter, "write", real)
    calls.clear()
    upscale_file(src, model_u8, out, tile=16, batch=1, device="cpu", resume=True)
    assert sum(calls) == 0
    d = np.abs(tifffile.imread(out).astype(int) - upscale_array(img, m, device="cpu").astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3
    assert _sha(src) == digest


def test_interrupted_run_resumes_without_recomputing(tmp_path, model_u8, monkeypatch):
    img = _image((96, 80), np.uint8, seed=5)
    src = _write_tif(tmp_path / "LR.tif", img)
    digest = _sha(src)
    out = tmp_path / "SR.ome.zarr"
    m = load_model(model_u8)
    orig = m.generator.forward
    seen: list[int] = []

    def interrupting(x):
        if len(seen) >= 3:
            raise KeyboardInterrupt
        seen.append(x.shape[0])
        return orig(x)

    m.generator.forward = interrupting
    monkeypatch.setattr("dleem.upscale.pipeline._load", lambda model, dev, tta=False: m)
    with pytest.raises(KeyboardInterrupt):
        upscale_file(src, model_u8, out, tile=16, batch=2, device="cpu")  # 30 tiles
    assert not out.exists() and _sha(src) == digest
    work = stream_mod.work_store_path(out)
    done = (work / stream_mod.PROGRESS_FILE).read_text().split()
    assert len(done) == 6
    computed: list[int] = []
    m.generator.forward = lambda x: (computed.append(x.shape[0]), orig(x))[1]
    upscale_file(src, model_u8, out, tile=16, batch=2, device="cpu", resume=True)
    assert sum(computed) == 30 - 6
    np.testing.assert_array_equal(np.asarray(zarr.open_group(str(out))["0"]),
                                  upscale_array(img, m, device="cpu"))
    assert not work.exists()


def test_resume_with_other_settings_is_refused(tmp_path, model_u8, monkeypatch):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    out = tmp_path / "SR.tif"
    work = stream_mod.work_store_path(out)
    stream_mod.WorkStore.create(work, (160, 160), np.uint8, 64, {"scale": 2})
    with pytest.raises(DleemError, match="different .*start over without resume"):
        upscale_file(src, model_u8, out, tile=16, device="cpu", resume=True)


# -- CLI -------------------------------------------------------------------------------------
def test_cli_upscale_and_one_line_error(tmp_path, model_u8, capsys):
    from dleem.cli import main

    img = _image((48, 40), np.uint8)
    src = _write_tif(tmp_path / "LR.tif", img)
    out = tmp_path / "SR.tif"
    cmap = tmp_path / "cons.tif"
    rc = main(["upscale", str(src), "--model", str(model_u8), "-o", str(out), "--tile", "16",
               "--device", "cpu", "--batch", "3", "--consistency", str(cmap)])
    assert rc == 0 and out.exists() and cmap.exists() and (tmp_path / "cons_summary.png").exists()
    assert tifffile.imread(cmap).dtype == np.float32
    rc = main(["upscale", str(src), "--model", str(model_u8), "-o", str(src)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("dleem upscale: error:")
    info = json.loads(json.dumps({"ok": True}))
    assert info["ok"]


def test_pyramid_and_tiff_flavour_helpers():
    from dleem.upscale.stream import downsample2, needs_bigtiff

    band = np.array([[0, 2, 4], [2, 4, 7], [10, 10, 10]], np.uint8)
    np.testing.assert_array_equal(downsample2(band, np.uint8), [[2, 6], [10, 10]])
    assert not needs_bigtiff([(30000, 30000), (15000, 15000), (7500, 7500)], np.uint8)  # 1.1 GiB
    assert needs_bigtiff([(46000, 46000)], np.uint16)  # 3.9 GiB of pixels + pyramid
    assert needs_bigtiff([(65536, 65536)], np.uint8)


def test_mean_far_from_training_warns(model_u8, caplog):
    dark = np.full((40, 40), 3, np.uint8)  # model trained at mean 0.5 +- 0.25 of full scale
    with caplog.at_level(logging.WARNING):
        upscale_array(dark, model_u8, tile=16, device="cpu")
    assert "training std" in caplog.text


def test_bigtiff_above_the_classic_limit(tmp_path, model_u8, monkeypatch):
    monkeypatch.setattr("dleem.io.write.CLASSIC_TIFF_LIMIT", 10_000)  # pretend 4 GiB is 10 kB
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    out = upscale_file(src, model_u8, tmp_path / "SR.tif", tile=16, device="cpu")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and tif.is_ome and tif.series[0].shape == (160, 160)


def test_generator_scale_not_matching_its_config_is_an_error(model_u8):
    m = load_model(model_u8)
    m.generator = build_generator(m.config.arch, 2).eval()  # weights for x2, config says x4
    with pytest.raises(DleemError, match="not scale 4 as its config says"):
        upscale_array(_image((32, 32), np.uint8), m, tile=16, device="cpu")


def test_tta_is_the_mean_of_the_eight_views_and_stays_exact_when_tiled(model_u8, tmp_path):
    lr = _image((70, 90), np.uint8, seed=3)
    m = load_model(model_u8)
    x = torch.from_numpy(m.normalize(lr))[None, None]
    with torch.no_grad():
        views = []
        for t in (False, True):
            for dims in ((), (-2,), (-1,), (-2, -1)):
                v = x.transpose(-2, -1) if t else x
                y = m.generator(v.flip(dims) if dims else v)
                y = y.flip(dims) if dims else y
                views.append(y.transpose(-2, -1) if t else y)
        expected = m.denormalize(torch.stack(views).mean(0)[0, 0])
    whole = upscale_array(lr, model_u8, tile=256, device="cpu", tta=True)
    np.testing.assert_array_equal(upscale_array(lr, model_u8, tile=16, device="cpu", tta=True), whole)
    assert np.abs(whole.astype(int) - expected.astype(int)).max() <= 1  # rounding only
    plain = upscale_array(lr, model_u8, tile=256, device="cpu")
    assert not np.array_equal(plain, whole)
    # the file path draws the same pixels
    src = tmp_path / "lr.tif"
    tifffile.imwrite(src, lr)
    out = upscale_file(src, model_u8, tmp_path / "sr.ome.tif", tile=32, device="cpu", tta=True)
    np.testing.assert_array_equal(tifffile.imread(out), whole)
