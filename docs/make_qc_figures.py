"""Make the registration QC figures of docs/ from the default synthetic dataset.

    python docs/make_qc_figures.py [--work DIR] [--size 2048] [--regions 2] [--seed 0]

Runs ``dleem synth`` (default dataset unless told otherwise), then ``dleem register`` on
its LR and HR images, checks the fitted maps against ``truth.json`` (RMS error of the four
mapped HR corners, LR px), and copies the QC PNGs into docs/ as ``qc_overview.png`` and
``qc_HR_<i>.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from dleem.cli import main as dleem

DOCS = Path(__file__).resolve().parent


def corner_rms(found: list, truth: list, shape: list) -> float:
    """RMS distance (LR px) of the four HR image corners mapped by two maps."""
    h, w = shape
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [w - 0.5, h - 0.5, 1], [-0.5, h - 0.5, 1]])
    diff = corners @ np.asarray(found).T - corners @ np.asarray(truth).T
    return float(np.sqrt((diff**2).sum(axis=1).mean()))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--size", type=int, default=None, help="LR side (default: dleem synth's)")
    parser.add_argument("--regions", type=int, default=None, help="HR regions (default: dleem synth's)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="dleem-qc-"))
    data, ws = work / "synth", work / "workspace"
    synth_args = ["synth", "-o", str(data)]
    for flag, value in (("--size", args.size), ("--regions", args.regions), ("--seed", args.seed)):
        if value is not None:
            synth_args += [flag, str(value)]
    if dleem(synth_args) != 0:
        return 1
    truth = json.loads((data / "truth.json").read_text())
    hr_files = [str(data / r["file"]) for r in truth["regions"]]
    if dleem(["register", str(data / "LR.tif"), *hr_files, "-o", str(ws), "--keep-going"]) != 0:
        return 1
    reg = json.loads((ws / "registration.json").read_text())
    for entry, true in zip(reg["regions"], truth["regions"], strict=True):
        if entry["hr_to_lr"] is None:
            sys.stdout.write(f"{true['file']}: {entry['status']}: {entry['message']}\n")
            continue
        err = corner_rms(entry["hr_to_lr"], true["hr_to_lr"], true["shape"])
        sys.stdout.write(f"{true['file']}: corner RMS error {err:.4f} LR px (ratio {entry['ratio']:.4f}, "
                         f"true {truth['ratio']})\n")
    copied = []
    for png in sorted((ws / "qc").glob("*.png")):
        dest = DOCS / f"qc_{png.name}"
        shutil.copyfile(png, dest)
        copied.append(dest.name)
    sys.stdout.write(f"wrote {', '.join(copied)} to {DOCS}\n")
    return 0


if __name__ == "__main__":
    sys.exit(run())
