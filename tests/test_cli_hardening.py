"""The CLI as a hostile user meets it: every bad input or environment ends in one line
naming the file and the problem (exit 2), nothing partial is left, no input is touched.

Tests run as root, so chmod cannot make a folder unwritable: the OSError (ENOSPC, EACCES,
EROFS) is injected at the write instead.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_upscale import _make_model

from dleem.cli import main
from dleem.io.atomic import STALE_PART_S, remove_stale_parts
from dleem.synth import generate
from dleem.workflow import load_config

LR_PX = 0.5


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A small synthetic acquisition: LR 160 px, one HR region of 256 px at ratio 4."""
    out = tmp_path_factory.mktemp("synth") / "d"
    generate(out, seed=0, lr_size=160, hr_size=256, regions=1, lr_pixel_size_um=LR_PX)
    return out


@pytest.fixture(scope="module")
def workspace(data, tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws") / "ws"
    assert main(["register", str(data / "LR.tif"), str(data / "HR_1.tif"), "-o", str(ws), "--no-qc"]) == 0
    return ws


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _make_model(tmp_path_factory.mktemp("m") / "u8")


def _cli(capsys, *args: object) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _one_error(rc: int, err: list[str], command: str) -> str:
    errors = [line for line in err if "error" in line.lower()]
    assert rc == 2 and len(errors) == 1, err
    assert errors[0].startswith(f"dleem {command}: error:"), errors
    return errors[0]


def _files(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def _float_copy(src: Path, dst: Path, bad: float, px: float) -> Path:
    image = tifffile.imread(src).astype(np.float32)
    image[5, 7] = bad
    tifffile.imwrite(dst, image, resolution=(1e4 / px, 1e4 / px), resolutionunit="CENTIMETER")
    return dst


# -- register: NaN / Inf, huge images, directories ---------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("which", ["lr", "hr"])
def test_register_names_nan_or_inf_in_a_float_image(data, tmp_path, capsys, bad, which):
    lr, hr = data / "LR.tif", data / "HR_1.tif"
    if which == "lr":
        lr = _float_copy(lr, tmp_path / "LR_f.tif", bad, LR_PX)
    else:
        hr = _float_copy(hr, tmp_path / "HR_f.tif", bad, LR_PX / 4)
    rc, err = _cli(capsys, "register", lr, hr, "-o", tmp_path / "ws", "--ratio", "4")
    line = _one_error(rc, err, "register")
    kind = "1 NaN and 0 infinite" if np.isnan(bad) else "0 NaN and 1 infinite"
    assert f"{lr if which == 'lr' else hr}: holds {kind} pixels (the first at row 5, column 7)" in line
    assert "flat" not in line and "diverged" not in line
    assert not (tmp_path / "ws").exists()


def _huge_tiff(path: Path, side: int = 100_000) -> Path:
    """A few-KB tiled deflate TIFF declaring side x side pixels (every tile the same bytes)."""
    tifffile.imwrite(path, np.zeros((1024, 1024), np.uint8), tile=(1024, 1024), compression="zlib")
    n = (-(-side // 1024)) ** 2
    with tifffile.TiffFile(path, mode="r+") as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
        page.tags["ImageWidth"].overwrite(side)
        page.tags["ImageLength"].overwrite(side)
        page.tags["TileOffsets"].overwrite([offset] * n)
        page.tags["TileByteCounts"].overwrite([count] * n)
    return path


@pytest.mark.parametrize("which", ["lr", "hr"])
def test_register_refuses_a_declared_size_beyond_memory_before_decoding(data, tmp_path, capsys, which):
    huge = _huge_tiff(tmp_path / "huge.tif")
    assert huge.stat().st_size < 100_000
    t0 = time.perf_counter()
    args = (huge, data / "HR_1.tif") if which == "lr" else (data / "LR.tif", huge)
    rc, err = _cli(capsys, "register", *args, "-o", tmp_path / "ws", "--ratio", "4")
    line = _one_error(rc, err, "register")
    assert f"{huge}: its 100000 x 100000 px" in line and "of memory" in line
    assert line.count(str(huge)) == 1 and time.perf_counter() - t0 < 20  # nothing decoded


def test_a_folder_given_as_an_image(data, tmp_path, capsys):
    rc, err = _cli(capsys, "register", data, data / "HR_1.tif", "-o", tmp_path / "ws")
    assert f"{data}: is a folder, not an image file nor a zarr store" in _one_error(rc, err, "register")


# -- synth --------------------------------------------------------------------------------------
def test_synth_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "d"
    args = ("synth", "-o", out, "--size", "64", "--hr-size", "32", "--regions", "1")
    assert _cli(capsys, *args)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, err = _cli(capsys, *args, "--seed", "1")
    line = _one_error(rc, err, "synth")
    assert "already holds LR.tif, HR_1.tif, truth.json" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _cli(capsys, *args, "--seed", "1", "--force")[0] == 0
    assert (out / "LR.tif").read_bytes() != before["LR.tif"]


def test_synth_force_with_fewer_regions_leaves_no_old_region(tmp_path, capsys):
    out = tmp_path / "d"
    args = ("synth", "-o", out, "--size", "64", "--hr-size", "32")
    assert _cli(capsys, *args, "--regions", "3")[0] == 0
    (out / "LR.tif").unlink()  # even with no LR left, HR_3.tif would pass for a region
    (out / "truth.json").unlink()
    (out / "HR_1.tif").unlink()
    (out / "HR_2.tif").unlink()
    rc, err = _cli(capsys, *args, "--regions", "2")
    assert "already holds HR_3.tif" in _one_error(rc, err, "synth")
    assert _cli(capsys, *args, "--regions", "2", "--force")[0] == 0
    assert sorted(p.name for p in out.glob("HR_*.tif")) == ["HR_1.tif", "HR_2.tif"]


@pytest.mark.parametrize(("flag", "value", "expect"), [
    ("--dose", "nan", "--dose must be a finite number"),
    ("--hr-dose", "inf", "--hr-dose must be a finite number"),
    ("--dose", "1e30", "--dose must be > 0 and at most"),
    ("--lr-gain", "nan", "--lr-gain must be a finite number"),
    ("--read-noise", "-1", "--read-noise must be >= 0"),
    ("--grain-size", "nan", "--grain-size must be a finite number"),
    ("--pixel-size", "inf", "--pixel-size must be a finite number"),
    ("--rotation", "nan", "--rotation must be a finite number"),
    ("--size", "10000000", "of memory"),
])
def test_synth_checks_every_number_before_work(tmp_path, capsys, monkeypatch, flag, value, expect):
    monkeypatch.setattr("dleem.synth.build_specimen", lambda *a, **k: pytest.fail("work started"))
    rc, err = _cli(capsys, "synth", "-o", tmp_path / "d", "--size", "64", "--hr-size", "32", flag, value)
    assert expect in _one_error(rc, err, "synth")
    assert not (tmp_path / "d").exists()


# -- -o on an existing file, unwritable outputs, full disk ----------------------------------------
def _config(tmp_path: Path, data: Path, output: Path) -> Path:
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'lr = "{data / "LR.tif"}"\nhr = ["{data / "HR_1.tif"}"]\noutput = "{output}"\n'
                   '[train]\nsteps = 2\npreset = "tiny"\n')
    return cfg


def _commands(tmp_path: Path, data: Path, workspace: Path, model: Path, out: Path) -> dict[str, list]:
    return {
        "synth": ["synth", "-o", out, "--size", "64", "--hr-size", "32", "--regions", "1"],
        "register": ["register", data / "LR.tif", data / "HR_1.tif", "-o", out],
        "train": ["train", workspace, "-o", out, "--steps", "2", "--preset", "tiny", "--device", "cpu"],
        "run": ["run", _config(tmp_path, data, out)],
        "evaluate": ["evaluate", workspace, "--model", model, "-o", out],
        "upscale": ["upscale", data / "LR.tif", "--model", model, "-o", out / "SR.ome.tif"],
    }


@pytest.mark.parametrize("command", ["synth", "register", "train", "run", "evaluate"])
def test_output_that_is_an_existing_file(data, workspace, model, tmp_path, capsys, command):
    out = tmp_path / "taken"
    out.write_text("mine")
    rc, err = _cli(capsys, *_commands(tmp_path, data, workspace, model, out)[command])
    assert f"{out}: is an existing file" in _one_error(rc, err, command)
    assert out.read_text() == "mine"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
@pytest.mark.parametrize("command", ["synth", "register", "train", "run", "evaluate", "upscale"])
def test_unwritable_output_is_refused_before_work(data, workspace, model, tmp_path, capsys, monkeypatch,
                                                  command, code):
    args = _commands(tmp_path, data, workspace, model, tmp_path / "out")[command]
    before = _files(data), _files(workspace)

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    rc, err = _cli(capsys, *args)
    line = _one_error(rc, err, command)
    assert "cannot write in this folder" in line and os.strerror(code) in line
    assert (_files(data), _files(workspace)) == before
    assert not (tmp_path / "out").exists()


def _full_disk(monkeypatch, target: str) -> None:
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(target, full)


def test_full_disk_at_the_register_qc_figures(data, tmp_path, capsys, monkeypatch):
    _full_disk(monkeypatch, "matplotlib.figure.Figure.savefig")
    rc, err = _cli(capsys, "register", data / "LR.tif", data / "HR_1.tif", "-o", tmp_path / "ws")
    line = _one_error(rc, err, "register")
    assert "qc" in line and ".png: disk full while writing (No space left on device)" in line
    assert not (tmp_path / "ws").exists()  # the pairs written before the figures are removed


@pytest.mark.parametrize(("target", "name"), [("torch.save", "step_000000002.pt"),
                                              ("matplotlib.figure.Figure.savefig", "curves.png")])
def test_full_disk_in_train(workspace, tmp_path, capsys, monkeypatch, target, name):
    _full_disk(monkeypatch, target)
    out = tmp_path / "m"
    rc, err = _cli(capsys, "train", workspace, "-o", out, "--steps", "4", "--preset", "tiny", "--device",
                   "cpu", "--patch", "8", "--batch", "2", "--checkpoint-every", "2")
    line = _one_error(rc, err, "train")
    assert f"{name}: disk full while writing" in line
    assert not list(out.rglob(".*.part"))
    assert not (out / "config.json").exists() and not (out / "generator.safetensors").exists()
    if name == "step_000000002.pt":  # no checkpoint to resume from: no half model folder either
        assert not out.exists()
    if name == "curves.png":  # the final checkpoint was written: resuming finishes the model
        assert "resume (--resume)" in line
        monkeypatch.undo()
        rc, err = _cli(capsys, "train", workspace, "-o", out, "--steps", "4", "--preset", "tiny", "--device",
                       "cpu", "--patch", "8", "--batch", "2", "--checkpoint-every", "2", "--resume")
        assert rc == 0, err
        assert (out / "config.json").is_file() and (out / "curves.png").is_file()


# -- evaluate --sr --------------------------------------------------------------------------------
def test_evaluate_reads_the_sr_file_before_naming_it(data, workspace, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dleem.evaluation.pipeline.evaluate_workspace",
                        lambda *a, **k: pytest.fail("the report was started"))
    good = tmp_path / "SR.tif"
    tifffile.imwrite(good, np.zeros((640, 640), np.uint8))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    noise = tmp_path / "noise.tif"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    cases = {truncated: "truncated TIFF", noise: "not a readable TIFF",
             data / "LR.tif": "160 x 160 px is not the upscaled LR map (4 x 160 x 160 = 640 x 640)"}
    for path, expect in cases.items():
        rc, err = _cli(capsys, "evaluate", workspace, "--model", model, "--sr", path)
        assert f"{path}: {expect}" in _one_error(rc, err, "evaluate")


# -- pages, scenes, channels ----------------------------------------------------------------------
def _stack(path: Path, pages: list[np.ndarray], px: float) -> Path:
    with tifffile.TiffWriter(path) as tw:
        for p in pages:
            tw.write(p, resolution=(1e4 / px, 1e4 / px), resolutionunit="CENTIMETER")
    return path


def test_register_reads_the_page_asked_for_lr_and_hr(data, tmp_path, capsys):
    lr, hr = tifffile.imread(data / "LR.tif"), tifffile.imread(data / "HR_1.tif")
    lr_stack = _stack(tmp_path / "LR_stack.tif", [255 - lr, lr], LR_PX)
    hr_stack = _stack(tmp_path / "HR_stack.tif", [hr, 255 - hr, hr[::-1]], LR_PX / 4)
    rc, err = _cli(capsys, "register", lr_stack, hr_stack, "-o", tmp_path / "ws")
    assert "choose one with page=N (--page N)" in _one_error(rc, err, "register")
    rc, err = _cli(capsys, "register", data / "LR.tif", hr_stack, "-o", tmp_path / "ws")
    assert "(--hr-page N)" in _one_error(rc, err, "register")
    rc, err = _cli(capsys, "register", lr_stack, hr_stack, "-o", tmp_path / "ws", "--page", "1",
                   "--hr-page", "0", "--no-qc")
    assert rc == 0, err
    import json

    record = json.loads((tmp_path / "ws" / "manifest.json").read_text())["steps"]["register"]["parameters"]
    assert (record["lr_page"], record["hr_page"]) == (1, 0)
    entry = json.loads((tmp_path / "ws" / "registration.json").read_text())["regions"][0]
    assert entry["status"] == "ok" and entry["ncc_peak"] > 0.9


def test_upscale_page_and_resume_identity(data, model, tmp_path, capsys):
    from dleem.errors import Cancelled
    from dleem.upscale import upscale_array, upscale_file

    lr = tifffile.imread(data / "LR.tif")[:48, :48]
    stack = _stack(tmp_path / "stack.tif", [lr, 255 - lr], LR_PX)
    out = tmp_path / "SR.ome.tif"
    rc, err = _cli(capsys, "upscale", stack, "--model", model, "-o", out, "--device", "cpu")
    assert "--page N" in _one_error(rc, err, "upscale")

    def cancel(stage, done, total):
        if done >= 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        upscale_file(stack, model, out, page=1, tile=16, device="cpu", progress=cancel)
    rc, err = _cli(capsys, "upscale", stack, "--model", model, "-o", out, "--tile", "16", "--device", "cpu",
                   "--page", "0", "--resume")
    assert "used a different input_plane" in _one_error(rc, err, "upscale")
    rc, err = _cli(capsys, "upscale", stack, "--model", model, "-o", out, "--tile", "16", "--device", "cpu",
                   "--page", "1", "--resume")
    assert rc == 0, err
    np.testing.assert_array_equal(tifffile.imread(out), upscale_array(255 - lr, model, device="cpu"))


def test_run_config_takes_page_scene_channel(data, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'lr = "{data / "LR.tif"}"\nhr = ["{data / "HR_1.tif"}"]\noutput = "ws"\n'
                   "page = 1\nhr_page = 2\nhr_channel = 0\n")
    loaded = load_config(cfg)
    assert (loaded.page, loaded.scene, loaded.channel) == (1, None, None)
    assert (loaded.hr_page, loaded.hr_scene, loaded.hr_channel) == (2, None, 0)


# -- messages -------------------------------------------------------------------------------------
def test_truncated_tiff_gives_one_line_and_no_tifffile_error(data, tmp_path, capsys):
    bad = tmp_path / "LR.tif"
    bad.write_bytes((data / "LR.tif").read_bytes()[:3000])
    rc, err = _cli(capsys, "info", bad)
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"dleem info: error: {bad}: truncated TIFF")


def test_python_warnings_are_one_line_without_source(capsys, monkeypatch, caplog):
    def warn(args):
        warnings.warn("something odd about the file", stacklevel=1)
        warnings.warn("old option", DeprecationWarning, stacklevel=1)
        return 0

    monkeypatch.setattr("dleem.cli.info.run", warn)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["info", "x"]) == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "py.warnings"]
    assert messages == ["something odd about the file", "DeprecationWarning: old option"]


def test_sigterm_is_an_interruption(monkeypatch, capsys):
    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    monkeypatch.setattr("dleem.cli.info.run", killed)
    before = signal.getsignal(signal.SIGTERM)
    rc, err = _cli(capsys, "info", "x")
    assert rc == 143 and err == ["dleem info: interrupted (SIGTERM)"]
    assert signal.getsignal(signal.SIGTERM) is before


def _part(folder: Path, name: str, age_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{name}.x1y2z3.part"
    part.touch()
    old = time.time() - age_s
    os.utime(part, (old, old))
    return part


def test_stale_parts_of_a_killed_write_are_removed_by_the_next_run(data, workspace, tmp_path, capsys):
    fresh = _part(tmp_path, "busy.tif", 0)
    stale = _part(tmp_path, "LR.tif", 2 * STALE_PART_S)
    assert remove_stale_parts(tmp_path) == [stale] and fresh.exists()

    synth_out = tmp_path / "d"
    synth_part = _part(synth_out, "LR.tif", 2 * STALE_PART_S)
    assert _cli(capsys, "synth", "-o", synth_out, "--size", "64", "--hr-size", "32", "--regions", "1")[0] == 0
    ws = tmp_path / "ws"
    ws_parts = [_part(ws, "registration.json", 3600), _part(ws / "qc", "overview.png", 3600),
                _part(ws / "pairs", "HR_1_hr.tif", 3600)]
    assert _cli(capsys, "register", data / "LR.tif", data / "HR_1.tif", "-o", ws, "--no-qc")[0] == 0
    m = tmp_path / "m"
    m_parts = [_part(m, "generator.safetensors", 3600), _part(m / "checkpoints", "step_000000002.pt", 3600)]
    rc, _ = _cli(capsys, "train", workspace, "-o", m, "--steps", "2", "--preset", "tiny", "--device", "cpu",
                 "--patch", "8", "--batch", "2")
    assert rc == 0
    assert not any(p.exists() for p in [synth_part, *ws_parts, *m_parts])


# -- -q / -v and progress without a terminal ---------------------------------------------------------
def test_quiet_and_verbose(data, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.NOTSET)
    args = ("register", data / "LR.tif", data / "HR_1.tif", "--no-qc")
    seen = []
    monkeypatch.setattr("dleem.progress.ProgressDisplay.__call__",
                        lambda self, *a: seen.append(os.environ.get("DLEEM_NO_PROGRESS")))
    rc, _ = _cli(capsys, "-q", *args, "-o", tmp_path / "a")
    assert rc == 0 and not [r for r in caplog.records if r.levelno < logging.WARNING]
    assert seen and set(seen) == {"1"} and "DLEEM_NO_PROGRESS" not in os.environ  # bars off, then restored
    monkeypatch.undo()
    caplog.clear()
    rc, _ = _cli(capsys, "-v", "synth", "-o", tmp_path / "s", "--size", "64", "--hr-size", "32")
    assert rc == 0 and any(r.levelno == logging.DEBUG and r.name.startswith("dleem") for r in caplog.records)
    caplog.clear()
    rc, _ = _cli(capsys, *args, "-o", tmp_path / "c")
    levels = {r.levelno for r in caplog.records if r.name.startswith("dleem")}
    assert rc == 0 and logging.INFO in levels and logging.DEBUG not in levels


def test_training_without_a_terminal_logs_step_loss_psnr_and_time_left(workspace, tmp_path, capsys, caplog,
                                                                       monkeypatch):
    from dleem.progress import ProgressDisplay

    monkeypatch.setattr(ProgressDisplay.__init__, "__kwdefaults__", {"quiet": False, "interval_s": 0.0})
    caplog.set_level(logging.INFO)
    rc, _ = _cli(capsys, "train", workspace, "-o", tmp_path / "m", "--steps", "40", "--preset", "tiny",
                 "--device", "cpu", "--patch", "8", "--batch", "2")
    assert rc == 0
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("train: ") and "left" in line for line in lines), lines
    assert any(line.startswith("step ") and "loss" in line and "PSNR" in line and "left" in line
               for line in lines), lines


def test_evaluate_reads_the_registered_page(data, model, tmp_path, capsys):
    lr = tifffile.imread(data / "LR.tif")
    stack = _stack(tmp_path / "LR_stack.tif", [255 - lr, lr], LR_PX)
    ws = tmp_path / "ws"
    assert _cli(capsys, "register", stack, data / "HR_1.tif", "-o", ws, "--page", "1", "--no-qc")[0] == 0
    args = ("evaluate", ws, "--model", model, "--tile-size", "64", "--thickness-tiles", "1", "--no-truth")
    rc, err = _cli(capsys, *args, "--page", "0")
    assert "registered on page 1, not 0" in _one_error(rc, err, "evaluate")
    rc, err = _cli(capsys, *args)  # the page recorded at registration
    assert rc == 0, err
    assert (ws / "report" / "index.html").is_file()
