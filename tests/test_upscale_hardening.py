"""`dleem upscale` as a hostile user meets it: every bad case ends in one line, exit 2 (or
130 when cancelled), nothing under the final name, and advice that can work."""

from __future__ import annotations

import errno
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from test_upscale import _image, _make_model, _write_tif

from dleem.cli import main
from dleem.errors import Cancelled, DleemError
from dleem.models import load_model
from dleem.upscale import stream, upscale_array, upscale_file


@pytest.fixture(scope="module")
def model_u8(tmp_path_factory) -> Path:
    return _make_model(tmp_path_factory.mktemp("m") / "u8")


@pytest.fixture(scope="module")
def model_f32(tmp_path_factory) -> Path:
    return _make_model(tmp_path_factory.mktemp("m") / "f32", scale=2, dtype="float32")


def _cli(capsys, *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(["upscale", *map(str, args)])
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _one_error(rc: int, err: list[str]) -> str:
    errors = [line for line in err if "error:" in line]
    assert rc == 2 and len(errors) == 1, err
    assert errors[0].startswith("dleem upscale: error:")
    return errors[0]


def _hidden(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*"))


@pytest.fixture
def no_model_run(monkeypatch):
    """Fail the test if the model is loaded: the refusal must come before any work."""
    def refuse(*a, **k):
        raise AssertionError("the model was loaded: the check came after the work started")

    monkeypatch.setattr("dleem.upscale.pipeline._load", refuse)


# -- progress and cancel -------------------------------------------------------------------
def test_cancel_from_progress_keeps_the_store_and_resume_finishes(tmp_path, model_u8):
    img = _image((64, 80), np.uint8, seed=1)
    src = _write_tif(tmp_path / "LR.tif", img)
    out = tmp_path / "SR.ome.tif"
    calls: list[tuple[str, int, int]] = []

    def cancel_after_three(stage: str, done: int, total: int) -> None:
        calls.append((stage, done, total))
        if done >= 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        upscale_file(src, model_u8, out, tile=16, batch=1, device="cpu", progress=cancel_after_three)
    assert calls[0] == ("upscale x4", 0, 20) and calls[-1][1] == 3
    assert not out.exists() and not list(tmp_path.glob(".SR.ome.tif.*.part"))
    work = stream.work_store_path(out)
    assert len((work / stream.PROGRESS_FILE).read_text().split()) >= 3
    assert not stream.lock_path(work).exists()  # the lock is released
    seen: list[int] = []
    upscale_file(src, model_u8, out, tile=16, batch=1, device="cpu", resume=True,
                 progress=lambda s, d, t: seen.append(d))
    assert seen[0] >= 3 and seen[-1] == 20
    np.testing.assert_array_equal(tifffile.imread(out), upscale_array(img, model_u8, device="cpu"))
    assert _hidden(tmp_path) == []


def test_cancel_through_the_cli_exits_130(tmp_path, model_u8, capsys, monkeypatch):
    from dleem.progress import ProgressDisplay

    src = _write_tif(tmp_path / "LR.tif", _image((48, 48), np.uint8))
    out = tmp_path / "SR.ome.tif"

    def cancel(self, stage, done, total):
        if done >= 2:
            raise Cancelled

    monkeypatch.setattr(ProgressDisplay, "__call__", cancel)
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", out, "--tile", "16", "--device", "cpu")
    assert rc == 130 and err[-1] == "dleem upscale: interrupted"
    assert not out.exists() and stream.work_store_path(out).exists()


def test_cancel_before_any_tile_leaves_nothing(tmp_path, model_u8):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))

    def cancel(stage, done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        upscale_file(src, model_u8, tmp_path / "SR.ome.tif", tile=16, device="cpu", progress=cancel)
    assert _hidden(tmp_path) == []  # an empty store holds nothing to resume


def test_little_free_space_warns_before_work(tmp_path, model_u8, monkeypatch, caplog):
    import logging
    import shutil

    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with caplog.at_level(logging.WARNING):
        upscale_file(src, model_u8, tmp_path / "SR.ome.tif", tile=16, device="cpu")
    assert "may need up to" in caplog.text and "GB free" in caplog.text


def test_upscale_array_reports_tiles(model_u8):
    calls: list[tuple[str, int, int]] = []
    upscale_array(_image((40, 40), np.uint8), model_u8, tile=16, device="cpu",
                  progress=lambda *a: calls.append(a))
    assert calls[0] == ("upscale x4", 0, 9) and calls[-1] == ("upscale x4", 9, 9)


# -- two runs, one output --------------------------------------------------------------------
def _hold_lock(work: Path) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from dleem.upscale.stream import RunLock; "
            "RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(work)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_refuses_and_a_killed_run_does_not_block(tmp_path, model_u8, capsys):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    out = tmp_path / "SR.ome.tif"
    work = stream.work_store_path(out)
    held = stream.WorkStore.create(work, (160, 160), np.uint8, 64, {"run": "first"})
    proc = _hold_lock(work)
    try:
        rc, err = _cli(capsys, src, "--model", model_u8, "-o", out, "--tile", "16", "--device", "cpu")
        line = _one_error(rc, err)
        assert f"another dleem upscale (pid {proc.pid}) is writing this output" in line
        with pytest.raises(DleemError, match="another dleem upscale"):
            stream.WorkStore.create(work, (160, 160), np.uint8, 64, {"run": "second"})
        assert dict(zarr.open_group(str(held.path)).attrs)["dleem_run"] == {"run": "first"}
    finally:
        proc.kill()  # SIGKILL: no clean-up runs in the holder
        proc.wait()
    assert stream.lock_path(work).exists()  # a stale lock file, not a stuck lock
    rc, _ = _cli(capsys, src, "--model", model_u8, "-o", out, "--tile", "16", "--device", "cpu")
    assert rc == 0 and out.exists() and _hidden(tmp_path) == []


# -- NaN / Inf -------------------------------------------------------------------------------
def test_nan_in_the_sampled_windows_is_refused_before_work(tmp_path, model_f32, capsys):
    img = _image((80, 80), np.float32)
    img[5, 5] = np.nan
    src = _write_tif(tmp_path / "LR.tif", img)
    rc, err = _cli(capsys, src, "--model", model_f32, "-o", tmp_path / "SR.ome.tif", "--device", "cpu")
    line = _one_error(rc, err)
    assert str(src) in line and "NaN or Inf" in line
    assert _hidden(tmp_path) == [] and not (tmp_path / "SR.ome.tif").exists()


def test_inf_in_a_tile_names_the_file_and_box_and_cleans_up(tmp_path, model_f32, capsys):
    img = _image((300, 300), np.float32)
    img[70, 70] = np.inf  # between the 4 x 4 sample windows of 64 px
    src = _write_tif(tmp_path / "LR.tif", img)
    out = tmp_path / "SR.ome.zarr"
    rc, err = _cli(capsys, src, "--model", model_f32, "-o", out, "--tile", "64", "--device", "cpu")
    line = _one_error(rc, err)
    assert str(src) in line and "LR pixel (row 70, column 70)" in line and "box rows" in line
    assert "resume" not in " ".join(err)
    assert not out.exists() and _hidden(tmp_path) == []


# -- arguments and output paths, before the work --------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_bad_pixel_size_is_refused_before_work(tmp_path, model_u8, capsys, no_model_run, value):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "SR.ome.tif", f"--pixel-size={value}")
    line = _one_error(rc, err)
    assert "--pixel-size must be a finite number > 0" in line
    assert _hidden(tmp_path) == []


def test_bad_tile_and_batch_name_the_flag(tmp_path, model_u8, capsys, no_model_run):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "SR.ome.tif", "--tile", "8")
    assert "--tile must be >= 16 LR pixels, got 8" in _one_error(rc, err)
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "SR.ome.tif", "--batch", "0")
    assert "--batch must be >= 1, got 0" in _one_error(rc, err)
    with pytest.raises(DleemError, match="^pixel_size_um must be"):
        upscale_file(src, model_u8, tmp_path / "SR.ome.tif", pixel_size_um=0.0)


def test_output_that_is_a_folder_or_a_file_in_the_way(tmp_path, model_u8, capsys, no_model_run):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))
    (tmp_path / "SR.ome.tif").mkdir()
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "SR.ome.tif")
    line = _one_error(rc, err)
    assert "is an existing folder" in line and "resume" not in line and "partial" not in line
    (tmp_path / "SR.ome.zarr").write_bytes(b"not a zarr")
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "SR.ome.zarr")
    assert "is an existing file" in _one_error(rc, err)
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "x.ome.tif", "--consistency",
                   tmp_path / "cons.png")
    assert "must end in .tif" in _one_error(rc, err)
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", src / "sub" / "SR.ome.tif")
    assert "is a file, not a folder" in _one_error(rc, err)
    assert _hidden(tmp_path) == []


def test_a_refusal_creates_no_output_folder(tmp_path, model_u8, capsys):
    src = _write_tif(tmp_path / "LR16.tif", _image((40, 40), np.uint16))  # the model is 8-bit
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "new" / "SR.ome.tif",
                   "--device", "cpu")
    assert "does not match the model's training dtype" in _one_error(rc, err)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_output_folder_is_refused_before_work(tmp_path, model_u8, capsys, monkeypatch,
                                                         no_model_run, code):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))

    def refuse(*a, **k):
        raise OSError(code, "Permission denied" if code == errno.EACCES else "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # root ignores chmod: inject the error
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "out" / "SR.ome.tif")
    line = _one_error(rc, err)
    assert "cannot write in this folder" in line and "resume" not in line
    assert not list((tmp_path / "out").glob(".*"))


# -- late failures -------------------------------------------------------------------------------
def _failing_tiff_writes(monkeypatch, code: int, after: int = 2) -> dict[str, int]:
    """The TIFF's file handle fails with ``code`` after ``after`` writes."""
    n = {"writes": 0}
    for name in ("write", "write_array"):
        real = getattr(tifffile.FileHandle, name)

        def failing(self, *a, _real=real, **k):
            n["writes"] += 1
            if n["writes"] > after:
                raise OSError(code, {errno.ENOSPC: "No space left on device"}.get(code, "Permission denied"))
            return _real(self, *a, **k)

        monkeypatch.setattr(tifffile.FileHandle, name, failing)
    return n


def test_full_disk_during_the_tiff_write_is_called_a_full_disk(tmp_path, model_u8, capsys, monkeypatch):
    img = _image((48, 48), np.uint8)
    src = _write_tif(tmp_path / "LR.tif", img)
    out = tmp_path / "SR.ome.tif"
    args = (src, "--model", model_u8, "-o", out, "--tile", "16", "--device", "cpu")
    with monkeypatch.context() as m:
        _failing_tiff_writes(m, errno.ENOSPC)
        rc, err = _cli(capsys, *args)
    line = _one_error(rc, err)
    work = stream.work_store_path(out)
    assert "disk full" in line and "--resume" in line and str(work) in line
    assert not out.exists() and work.exists() and not list(tmp_path.glob(".SR.ome.tif.*.part"))
    rc, _ = _cli(capsys, *args, "--resume")
    assert rc == 0 and _hidden(tmp_path) == []
    np.testing.assert_array_equal(tifffile.imread(out), upscale_array(img, model_u8, device="cpu"))


def test_final_write_failure_cleans_up_and_does_not_suggest_resume(tmp_path, model_u8, capsys, monkeypatch):
    src = _write_tif(tmp_path / "LR.tif", _image((48, 48), np.uint8))
    out = tmp_path / "SR.ome.tif"
    _failing_tiff_writes(monkeypatch, errno.EACCES)
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", out, "--tile", "16", "--device", "cpu")
    line = _one_error(rc, err)
    assert "cannot write the output" in line and "Permission denied" in line
    assert "resume" not in " ".join(err) and "partial" not in " ".join(err)
    assert not out.exists() and _hidden(tmp_path) == []


def test_disk_full_before_any_tile_does_not_point_to_a_store(tmp_path, model_u8, capsys, monkeypatch):
    src = _write_tif(tmp_path / "LR.tif", _image((40, 40), np.uint8))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stream.WorkStore, "create", full)
    rc, err = _cli(capsys, src, "--model", model_u8, "-o", tmp_path / "SR.ome.tif", "--device", "cpu")
    line = _one_error(rc, err)
    assert "disk full" in line and "partial" not in line and "resume" not in line


# -- what upscale_array accepts ----------------------------------------------------------------
def test_upscale_array_takes_numpy_zarr_dask_list_and_torch(tmp_path, model_u8):
    import dask.array as da
    import torch

    m = load_model(model_u8)
    img = _image((40, 36), np.uint8, seed=7)
    ref = upscale_array(img, m, tile=16, device="cpu")
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=img.shape, dtype=img.dtype, chunks=(16, 16))
    z[:] = img
    for lr in (z, da.from_array(img, chunks=20), img.tolist(), torch.from_numpy(img)):
        out = upscale_array(lr, m, tile=16, device="cpu")
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8
        d = np.abs(out.astype(int) - ref.astype(int))
        assert d.max() <= 1 and (d > 0).mean() < 1e-3, type(lr)
    with pytest.raises(DleemError, match="not all uint8 grey levels"):
        upscale_array([[0.5, 300.0]] * 20, m, tile=16, device="cpu")
