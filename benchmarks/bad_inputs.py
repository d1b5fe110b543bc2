"""Every bad input and environment the hardening covers, through the CLI, each in a fresh
subprocess: how each ends.

For every case this records the exit code, the last line of stderr, the files left
behind that should not be (hidden ``.part`` / ``.partial`` files; for a failure, any new
file at all) and whether every input file kept its SHA-256. The goal is every case clean:
a correct result, or exit 2 with one line naming the file and the problem, nothing
partial, no input touched. Cases that need a full disk or a read-only file system get
the OSError injected at the write (``python -c`` wrapper around ``dleem.cli.main``), as
the tests do: no tmpfs is needed.

Run: ``python benchmarks/bad_inputs.py`` (a few minutes on 2 cores; tiny images and a
tiny model trained first). Writes benchmarks/results/bad_inputs.md.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "bad_inputs.md"
LR_PX = 0.5
#: What a failed or interrupted run keeps on purpose for ``--resume``: training checkpoints
#: and their log, the upscale work store.
RESUMABLE = ("checkpoints", "log.csv", ".partial.zarr")

INJECT = {
    "ENOSPC": "OSError(errno.ENOSPC, 'No space left on device')",
    "EACCES": "OSError(errno.EACCES, 'Permission denied')",
    "EROFS": "OSError(errno.EROFS, 'Read-only file system')",
}


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str  # "ok" (a correct result) or "refused"
    inputs: list[Path] = field(default_factory=list)
    inject: tuple[str, str] | None = None  # (dotted target, errno name): raise there
    setup: object = None  # callable run first (may create files)
    check: object = None  # callable(stdout) -> str problem or "" for "ok" cases
    sigterm_after_s: float | None = None


def sha(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256("".join(sha(p) for p in sorted(path.rglob("*")) if p.is_file()).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def dleem(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dleem", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"setup failed: dleem {' '.join(map(str, args))}\n{proc.stderr}")
    return proc


def command(case: Case) -> list[str]:
    if case.inject is None:
        return [sys.executable, "-m", "dleem", *case.args]
    target, code = case.inject
    module, attr = target.rsplit(".", 1)
    code = (f"import errno, sys, importlib\n"
            f"def fail(*a, **k):\n    raise {INJECT[code]}\n"
            f"parts = {module!r}.split('.')\n"
            f"for i in range(len(parts), 0, -1):\n"
            f"    try:\n        obj = importlib.import_module('.'.join(parts[:i])); break\n"
            f"    except ImportError:\n        continue\n"
            f"for p in parts[i:]:\n    obj = getattr(obj, p)\n"
            f"setattr(obj, {attr!r}, fail)\n"
            f"from dleem.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return [sys.executable, "-c", code, *case.args]


def shown(case: Case, tmp: Path) -> str:
    text = "dleem " + " ".join(a.replace(str(tmp) + "/", "") for a in case.args)
    if case.inject:
        text += f"  ({case.inject[1]} injected at {case.inject[0]})"
    if case.sigterm_after_s:
        text += f"  (SIGTERM after {case.sigterm_after_s:g} s)"
    return text


def run_case(case: Case, tmp: Path) -> dict:
    if callable(case.setup):
        case.setup()
    before_files = snapshot(tmp)
    before = {p: sha(p) for p in case.inputs}
    t0 = time.perf_counter()
    proc = subprocess.Popen(command(case), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
    if case.sigterm_after_s:
        time.sleep(case.sigterm_after_s)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    seconds = time.perf_counter() - t0
    new = sorted(snapshot(tmp) - before_files)
    hidden = [n for n in new if any(part.startswith(".") and any(w in part for w in ("part", "lock", "write-test"))
                                    for part in Path(n).parts)]
    left = hidden if proc.returncode == 0 else new
    last = err.strip().splitlines()[-1] if err.strip() else ""
    kept: list[str] = []
    if proc.returncode == 143 or "resume" in last:  # state kept on purpose, and the message says so
        kept = [n for n in left if any(k in n for k in RESUMABLE)]
        left = [n for n in left if n not in kept and not any(k.startswith(n + "/") for k in kept)]
    untouched = all(sha(p) == h for p, h in before.items())
    error_lines = [line for line in err.splitlines()
                   if ": error:" in line or line.startswith(("ERROR", "Traceback"))]
    problem = ""
    if case.expect == "ok":
        if proc.returncode != 0:
            problem = "failed"
        elif callable(case.check):
            problem = case.check(out)
    else:
        if proc.returncode not in (2, 143):
            problem = f"exit {proc.returncode}"
        elif len(error_lines) > 1 or "Traceback" in err:
            problem = "more than one error line"
    clean = not problem and not left and untouched
    return {"case": case.name, "command": shown(case, tmp), "rc": proc.returncode,
            "last": last.replace(str(tmp) + "/", "").replace("|", "\\|")[:300], "left": left, "kept": kept,
            "untouched": untouched, "clean": clean, "problem": problem, "seconds": seconds}


# ------------------------------------------------------------------------------ the data
def make_data(tmp: Path) -> dict[str, Path]:
    d = tmp / "data"
    dleem("synth", "-o", d, "--size", "160", "--hr-size", "256", "--regions", "1")
    dleem("register", d / "LR.tif", d / "HR_1.tif", "-o", tmp / "ws", "--no-qc")
    dleem("train", tmp / "ws", "-o", tmp / "model", "--steps", "20", "--preset", "tiny", "--device", "cpu",
          "--patch", "8", "--batch", "2", "--checkpoint-every", "0")
    lr, hr = tifffile.imread(d / "LR.tif"), tifffile.imread(d / "HR_1.tif")
    res = {"resolution": (1e4 / LR_PX, 1e4 / LR_PX), "resolutionunit": "CENTIMETER"}
    f = {"lr": d / "LR.tif", "hr": d / "HR_1.tif", "ws": tmp / "ws", "model": tmp / "model"}
    bad = tmp / "bad"
    bad.mkdir()
    x = lr.astype(np.float32)
    x[5, 7] = np.nan
    tifffile.imwrite(bad / "LR_nan.tif", x, **res)
    y = hr.astype(np.float32)
    y[3, 3] = np.inf
    tifffile.imwrite(bad / "HR_inf.tif", y, resolution=(4e4 / LR_PX, 4e4 / LR_PX), resolutionunit="CENTIMETER")
    (bad / "empty.tif").write_bytes(b"")
    (bad / "truncated.tif").write_bytes(f["lr"].read_bytes()[:3000])
    (bad / "random.tif").write_bytes(np.random.default_rng(0).bytes(5000))
    tifffile.imwrite(bad / "one_px.tif", np.zeros((1, 1), np.uint8))
    (bad / "folder").mkdir()
    with tifffile.TiffWriter(bad / "stack.tif") as tw:
        for page in (255 - lr, lr):
            tw.write(page, **res)
    with tifffile.TiffWriter(bad / "HR_stack.tif") as tw:
        for page in (hr, 255 - hr):
            tw.write(page, resolution=(4e4 / LR_PX, 4e4 / LR_PX), resolutionunit="CENTIMETER")
    huge = bad / "huge.tif"
    tifffile.imwrite(huge, np.zeros((1024, 1024), np.uint8), tile=(1024, 1024), compression="zlib")
    n = (-(-100_000 // 1024)) ** 2
    with tifffile.TiffFile(huge, mode="r+") as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
        page.tags["ImageWidth"].overwrite(100_000)
        page.tags["ImageLength"].overwrite(100_000)
        page.tags["TileOffsets"].overwrite([offset] * n)
        page.tags["TileByteCounts"].overwrite([count] * n)
    tifffile.imwrite(bad / "fiji_um.tif", lr, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "\\u00B5m"})
    (bad / "taken").write_text("a file the user owns\n")
    sr = tmp / "sr_small.tif"
    tifffile.imwrite(sr, np.zeros((64, 64), np.uint8))
    cfg = tmp / "run_taken.toml"
    cfg.write_text(f'lr = "{f["lr"]}"\nhr = ["{f["hr"]}"]\noutput = "{bad / "taken"}"\n')
    (tmp / "run_bad.toml").write_text("lr = \n")
    (tmp / "run_key.toml").write_text(f'lr = "{f["lr"]}"\nhr = ["{f["hr"]}"]\noutput = "o"\nlr_pgae = 1\n')
    # a float32 acquisition and a float model (NaN in a float LR given to a float model)
    fl = tmp / "data_f32"
    fl.mkdir()
    tifffile.imwrite(fl / "LR.tif", lr.astype(np.float32), **res)
    tifffile.imwrite(fl / "HR_1.tif", hr.astype(np.float32), resolution=(4e4 / LR_PX, 4e4 / LR_PX),
                     resolutionunit="CENTIMETER")
    dleem("register", fl / "LR.tif", fl / "HR_1.tif", "-o", tmp / "ws_f32", "--no-qc")
    dleem("train", tmp / "ws_f32", "-o", tmp / "model_f32", "--steps", "10", "--preset", "tiny", "--device",
          "cpu", "--patch", "8", "--batch", "2", "--checkpoint-every", "0")
    # a model folder whose weights hold a NaN
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copytree(tmp / "model", tmp / "model_nan")
    weights = load_file(tmp / "model_nan" / "generator.safetensors")
    first = sorted(weights)[0]
    weights[first] = weights[first].copy()
    weights[first].flat[0] = np.nan
    save_file(weights, tmp / "model_nan" / "generator.safetensors", metadata={"format": "pt"})
    # a run with a checkpoint, to resume wrongly, and one with a corrupt checkpoint
    for name in ("m_ck", "m_bad_ck"):
        dleem("train", tmp / "ws", "-o", tmp / name, "--steps", "4", "--preset", "tiny", "--device", "cpu",
              "--patch", "8", "--batch", "2", "--checkpoint-every", "2")
    for ck in (tmp / "m_bad_ck" / "checkpoints").glob("*.pt"):
        ck.write_bytes(b"\x80\x02garbage")
    f.update({"lr_f32": fl / "LR.tif", "model_f32": tmp / "model_f32", "model_nan": tmp / "model_nan",
              "m_ck": tmp / "m_ck", "m_bad_ck": tmp / "m_bad_ck"})
    f.update({p.stem: p for p in bad.iterdir()})
    f.update({"sr_small": sr, "run_taken": cfg, "run_bad": tmp / "run_bad.toml", "run_key": tmp / "run_key.toml"})
    return f


def stale_part(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / ".registration.json.ab12cd.part"
    part.touch()
    os.utime(part, (time.time() - 3600, time.time() - 3600))


def cases(f: dict[str, Path], tmp: Path) -> list[Case]:
    lr, hr, ws, model, s = f["lr"], f["hr"], f["ws"], f["model"], str
    data = [lr, hr]
    tiny = ["--steps", "4", "--preset", "tiny", "--device", "cpu", "--patch", "8", "--batch", "2"]
    up = ["--model", s(model), "--device", "cpu", "--tile", "32"]
    c = [
        # synth
        Case("synth: --dose nan", ["synth", "-o", "s1", "--size", "128", "--dose", "nan"], "refused"),
        Case("synth: --lr-gain inf", ["synth", "-o", "s1", "--size", "128", "--lr-gain", "inf"], "refused"),
        Case("synth: --dose 1e30 (Poisson overflow)", ["synth", "-o", "s1", "--size", "128", "--dose", "1e30"], "refused"),
        Case("synth: --size 10000000", ["synth", "-o", "s1", "--size", "10000000"], "refused"),
        Case("synth: --ratio 0.5", ["synth", "-o", "s1", "--size", "128", "--ratio", "0.5"], "refused"),
        Case("synth: -o an existing file", ["synth", "-o", s(f["taken"]), "--size", "128"], "refused", [f["taken"]]),
        Case("synth: over an earlier run without --force",
             ["synth", "-o", s(lr.parent), "--size", "160", "--hr-size", "256", "--regions", "1", "--seed", "3"],
             "refused", data),
        Case("synth: unwritable folder", ["synth", "-o", "s2", "--size", "128"], "refused",
             inject=("tempfile.mkstemp", "EACCES")),
        # register
        Case("register: NaN in a float LR", ["register", s(f["LR_nan"]), s(hr), "-o", "w1", "--ratio", "4"],
             "refused", [f["LR_nan"], hr]),
        Case("register: Inf in a float HR", ["register", s(lr), s(f["HR_inf"]), "-o", "w1", "--ratio", "4"],
             "refused", [lr, f["HR_inf"]]),
        Case("register: 78 KB TIFF declaring 100000² px", ["register", s(f["huge"]), s(hr), "-o", "w1",
                                                           "--ratio", "4"], "refused", [f["huge"], hr]),
        Case("register: truncated LR", ["register", s(f["truncated"]), s(hr), "-o", "w1"], "refused", [hr]),
        Case("register: random bytes as LR", ["register", s(f["random"]), s(hr), "-o", "w1"], "refused", [hr]),
        Case("register: empty file as LR", ["register", s(f["empty"]), s(hr), "-o", "w1"], "refused", [hr]),
        Case("register: a folder as LR", ["register", s(f["folder"]), s(hr), "-o", "w1"], "refused", [hr]),
        Case("register: missing HR", ["register", s(lr), "nope.tif", "-o", "w1"], "refused", [lr]),
        Case("register: 1x1 HR", ["register", s(lr), s(f["one_px"]), "-o", "w1", "--ratio", "4"], "refused", [lr]),
        Case("register: HR larger than the LR map", ["register", s(f["one_px"]), s(hr), "-o", "w1", "--ratio", "4"],
             "refused", [hr]),
        Case("register: the LR given as its own HR", ["register", s(lr), s(lr), "-o", "w1", "--ratio", "4"],
             "refused", [lr]),
        Case("register: stack without --page", ["register", s(f["stack"]), s(hr), "-o", "w1"], "refused",
             [f["stack"], hr]),
        Case("register: HR stack without --hr-page", ["register", s(lr), s(f["HR_stack"]), "-o", "w1"], "refused",
             [lr, f["HR_stack"]]),
        Case("register: --page 1 --hr-page 0", ["register", s(f["stack"]), s(f["HR_stack"]), "-o", "w2",
                                                "--page", "1", "--hr-page", "0", "--no-qc"], "ok",
             [f["stack"], f["HR_stack"]]),
        Case("register: --scale 16 at ratio 4", ["register", s(lr), s(hr), "-o", "w1", "--scale", "16"], "refused",
             data),
        Case("register: -o an existing file", ["register", s(lr), s(hr), "-o", s(f["taken"])], "refused",
             [*data, f["taken"]]),
        Case("register: unwritable workspace", ["register", s(lr), s(hr), "-o", "w3"], "refused", data,
             inject=("tempfile.mkstemp", "EACCES")),
        Case("register: read-only file system", ["register", s(lr), s(hr), "-o", "w3"], "refused", data,
             inject=("tempfile.mkstemp", "EROFS")),
        Case("register: full disk at the QC figures", ["register", s(lr), s(hr), "-o", "w4"], "refused", data,
             inject=("matplotlib.figure.Figure.savefig", "ENOSPC")),
        Case("register: stale .part of a killed run", ["register", s(lr), s(hr), "-o", "w5", "--no-qc"], "ok",
             data, setup=lambda: stale_part(tmp / "w5"),
             check=lambda out: "the stale .part was kept" if list((tmp / "w5").glob(".*.part")) else ""),
        # train
        Case("train: -o an existing file", ["train", s(ws), "-o", s(f["taken"]), *tiny], "refused", [f["taken"]]),
        Case("train: --lr nan", ["train", s(ws), "-o", "m1", *tiny, "--lr", "nan"], "refused"),
        Case("train: --lr -1", ["train", s(ws), "-o", "m1", *tiny, "--lr", "-1"], "refused"),
        Case("train: --lr 1e9 (divergence)", ["train", s(ws), "-o", "m1", *tiny, "--lr", "1e9", "--steps", "30"],
             "refused"),
        Case("train: missing workspace", ["train", "nope", "-o", "m1", *tiny], "refused"),
        Case("train: --consistency-weight -1", ["train", s(ws), "-o", "m1", *tiny, "--consistency-weight", "-1"],
             "refused"),
        Case("train: --pore-weight nan", ["train", s(ws), "-o", "m1", *tiny, "--pore-weight", "nan"], "refused"),
        Case("train: --adv-weight inf", ["train", s(ws), "-o", "m1", *tiny, "--adv-weight", "inf"], "refused"),
        Case("train: --recipe pixel with --pore-weight 0.1",
             ["train", s(ws), "-o", "m1", *tiny, "--recipe", "pixel", "--pore-weight", "0.1"], "refused"),
        Case("train: unwritable model folder", ["train", s(ws), "-o", "m2", *tiny], "refused",
             inject=("tempfile.mkstemp", "EROFS")),
        Case("train: full disk at a checkpoint", ["train", s(ws), "-o", "m3", *tiny, "--checkpoint-every", "2"],
             "refused", inject=("torch.save", "ENOSPC")),
        Case("train: full disk at curves.png", ["train", s(ws), "-o", "m4", *tiny], "refused",
             inject=("matplotlib.figure.Figure.savefig", "ENOSPC")),
        Case("train: SIGTERM", ["train", s(ws), "-o", "m_term", "--minutes", "2", "--preset", "tiny", "--device",
                                "cpu", "--patch", "8", "--batch", "2", "--checkpoint-every", "50"], "refused",
             sigterm_after_s=12.0),
        # upscale
        Case("upscale: --pixel-size 0", ["upscale", s(lr), *up, "-o", "u1.ome.tif", "--pixel-size", "0"], "refused",
             [lr]),
        Case("upscale: --pixel-size nan", ["upscale", s(lr), *up, "-o", "u1.ome.tif", "--pixel-size", "nan"],
             "refused", [lr]),
        Case("upscale: NaN float LR, uint8 model", ["upscale", s(f["LR_nan"]), *up, "-o", "u1.ome.tif"], "refused",
             [f["LR_nan"]]),
        Case("upscale: output = input", ["upscale", s(lr), *up, "-o", s(lr)], "refused", [lr]),
        Case("upscale: output under a file", ["upscale", s(lr), *up, "-o", s(f["taken"] / "SR.ome.tif")], "refused",
             [lr, f["taken"]]),
        Case("upscale: a data folder as --model", ["upscale", s(lr), "--model", s(lr.parent), "-o", "u1.ome.tif"],
             "refused", [lr]),
        Case("upscale: stack without --page", ["upscale", s(f["stack"]), *up, "-o", "u1.ome.tif"], "refused",
             [f["stack"]]),
        Case("upscale: stack --page 1", ["upscale", s(f["stack"]), *up, "-o", "u2.ome.tif", "--page", "1"], "ok",
             [f["stack"]]),
        Case("upscale: read-only output folder", ["upscale", s(lr), *up, "-o", "u3/SR.ome.tif"], "refused", [lr],
             inject=("tempfile.mkstemp", "EROFS")),
        Case("upscale: full disk in the TIFF write", ["upscale", s(lr), *up, "-o", "u4.ome.tif"], "refused", [lr],
             inject=("tifffile.FileHandle.write_array", "ENOSPC")),
        Case("upscale: NaN in a float LR, float model", ["upscale", s(f["LR_nan"]), "--model", s(f["model_f32"]),
                                                        "--device", "cpu", "-o", "u5.ome.tif"], "refused",
             [f["LR_nan"], f["model_f32"]]),
        Case("upscale: float LR, float model", ["upscale", s(f["lr_f32"]), "--model", s(f["model_f32"]), "--device",
                                                "cpu", "-o", "u6.ome.tif"], "ok", [f["lr_f32"], f["model_f32"]]),
        Case("upscale: a model with a NaN weight", ["upscale", s(lr), "--model", s(f["model_nan"]), "--device", "cpu",
                                                    "-o", "u7.ome.tif"], "refused", [lr, f["model_nan"]]),
        Case("upscale: -o SR.tif (warning, same OME-TIFF)", ["upscale", s(lr), *up, "-o", "u8.tif"], "ok", [lr]),
        Case("upscale: --ngff 0.4", ["upscale", s(lr), *up, "-o", "u9.ome.zarr", "--ngff", "0.4"], "ok", [lr]),
        Case("upscale: --tile 3", ["upscale", s(lr), *up, "-o", "u10.ome.tif", "--tile", "3"], "refused", [lr]),
        Case("upscale: missing model folder", ["upscale", s(lr), "--model", "nope", "-o", "u10.ome.tif"], "refused",
             [lr]),
        Case("train: --resume with another --seed", ["train", s(ws), "-o", s(f["m_ck"]), "--steps", "6", "--preset",
                                                     "tiny", "--device", "cpu", "--patch", "8", "--batch", "2",
                                                     "--resume", "--seed", "5"], "refused", [f["m_ck"]]),
        Case("train: --resume from a corrupt checkpoint", ["train", s(ws), "-o", s(f["m_bad_ck"]), "--steps", "6",
                                                           "--preset", "tiny", "--device", "cpu", "--patch", "8",
                                                           "--batch", "2", "--resume"], "refused", [f["m_bad_ck"]]),
        Case("train: a folder with checkpoints, no --resume", ["train", s(ws), "-o", s(f["m_ck"]), *tiny], "refused",
             [f["m_ck"]]),
        # evaluate
        Case("evaluate: --sr truncated", ["evaluate", s(ws), "--model", s(model), "--sr", s(f["truncated"])],
             "refused", [f["truncated"]]),
        Case("evaluate: --sr random bytes", ["evaluate", s(ws), "--model", s(model), "--sr", s(f["random"])],
             "refused", [f["random"]]),
        Case("evaluate: --sr of the wrong shape", ["evaluate", s(ws), "--model", s(model), "--sr", s(f["sr_small"])],
             "refused", [f["sr_small"]]),
        Case("evaluate: --threshold nan", ["evaluate", s(ws), "--model", s(model), "--threshold", "nan"], "refused"),
        Case("evaluate: -o an existing file", ["evaluate", s(ws), "--model", s(model), "-o", s(f["taken"])],
             "refused", [f["taken"]]),
        Case("evaluate: missing workspace", ["evaluate", "nope", "--model", s(model)], "refused"),
        # run
        Case("run: output is an existing file", ["run", s(f["run_taken"])], "refused", [f["taken"], *data]),
        Case("run: invalid TOML", ["run", s(f["run_bad"])], "refused"),
        Case("run: a misspelt key", ["run", s(f["run_key"])], "refused"),
        Case("run: missing config", ["run", "nope.toml"], "refused"),
        # info
        Case("info: truncated TIFF (no second ERROR line)", ["info", s(f["truncated"])], "refused"),
        Case("info: Fiji's unit=\\u00B5m", ["info", s(f["fiji_um"])], "ok", [f["fiji_um"]],
             check=lambda out: "" if "pixel size:  0.5 µm" in out else "pixel size not read as 0.5 µm"),
    ]
    for case in c:
        case.inputs = [*case.inputs, model, ws / "pairs" / "manifest.json"]
    return c


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dleem-bad-inputs-"))
    t0 = time.perf_counter()
    f = make_data(tmp)
    rows = []
    for case in cases(f, tmp):
        row = run_case(case, tmp)
        rows.append(row)
        print(f"{'clean' if row['clean'] else 'NOT CLEAN':9s} {row['rc']:4d}  {row['case']}: {row['last'][:100]}",
              flush=True)
    load = os.getloadavg()
    n_clean = sum(r["clean"] for r in rows)
    lines = [
        "# Bad inputs through the CLI: how each case ends",
        "",
        f"`python benchmarks/bad_inputs.py`, {datetime.date.today().isoformat()}, dleem in a fresh subprocess per "
        f"case, Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the end, {time.perf_counter() - t0:.0f} s in all.",
        "",
        f"**{n_clean} of {len(rows)} cases clean**: a correct result, or exit 2 (143 for SIGTERM) with one line naming "
        "the file and the problem, no file left behind that should not be (hidden `.part` / `.partial`; for a "
        "failure, any new file; training checkpoints, their log.csv and the upscale work store are kept on "
        "purpose when the message says how to resume), every input's SHA-256 unchanged (the model folder and the pairs manifest are "
        "inputs of every case). Full disk, permission and read-only cases get the OSError injected at the write "
        "in the subprocess (tests run as root, where chmod does not refuse).",
        "",
        "| case | command | exit | stderr's last line | partial files left | inputs untouched | clean |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        left = ", ".join(f"`{n}`" for n in r["left"][:4]) + (" ..." if len(r["left"]) > 4 else "") or "none"
        if r["kept"]:
            top = sorted({n.split("/checkpoints")[0] + "/checkpoints" if "/checkpoints" in n else n.split("/")[0]
                          for n in r["kept"]})
            left += f" (kept for --resume: {', '.join(f'`{n}`' for n in top[:3])})"
        clean = "yes" if r["clean"] else f"**no**{': ' + r['problem'] if r['problem'] else ''}"
        lines.append(f"| {r['case']} | `{r['command']}` | {r['rc']} | {r['last'] or '(none)'} | {left} | "
                     f"{'yes' if r['untouched'] else '**no**'} | {clean} |")
    lines.append("")
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print(f"{n_clean}/{len(rows)} clean; wrote {RESULTS}")


if __name__ == "__main__":
    main()
