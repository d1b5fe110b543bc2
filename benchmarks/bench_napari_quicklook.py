"""Quick look latency: LR | bicubic | SR of a 256 x 256 LR selection with the ``cpu`` preset.

The napari widget's quick look calls `dleem.napari.quicklook.quick_look` with the model
it loaded once; the target is < 5 s on a laptop CPU. Measured here:

- ``first``: load the model folder and look once (what the first click costs);
- ``again``: the median of further looks at other places with the loaded model (every
  later click), and the slowest of them.

The model is the ``cpu`` generator preset at 4x trained for one step on a synthetic
workspace (its weights do not change the cost). Run:
``python benchmarks/bench_napari_quicklook.py [--side 256] [--repeats 5]`` (about a
minute on 2 cores, most of it registering the synthetic region). Results replace the
section in benchmarks/results/napari.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "napari.md"


sys.path.insert(0, str(ROOT))
import results_md  # noqa: E402


def update_section(key: str, text: str) -> None:
    """Rewrite this benchmark's block ``key`` of its results file."""
    results_md.update_section(RESULTS, key, text, "napari benchmarks")


def make_model(folder: Path) -> tuple[Path, Path]:
    """A synthetic LR map, registered, and a ``cpu``-preset model trained one step on it."""
    from dleem import synth
    from dleem.registration.pipeline import register_files
    from dleem.training import TrainOptions, train

    synth.generate(folder / "data", synth.SynthParams(seed=0, ratio=4, lr_size=1024, hr_size=512,
                                                      regions=1))
    ws = folder / "ws"
    register_files(folder / "data" / "LR.tif", [folder / "data" / "HR_1.tif"], ws, qc=False)
    model = ws / "models" / "model-cpu"
    train(ws, model, TrainOptions(steps=1, preset="cpu", device="cpu", val_tiles=1))
    return folder / "data" / "LR.tif", model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="LR side of the selection")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from dleem.io import read_image
    from dleem.models import load_model
    from dleem.napari.quicklook import quick_look

    with tempfile.TemporaryDirectory() as tmp:
        lr_path, model_dir = make_model(Path(tmp))
        lr = read_image(lr_path).data
        s = args.side
        t0 = time.perf_counter()
        model = load_model(model_dir, "cpu")
        look = quick_look(lr, (100, 100, 100 + s, 100 + s), model)
        first = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        again = []
        for _ in range(args.repeats):
            r, c = (int(v) for v in rng.integers(0, lr.shape[0] - s, 2))
            t0 = time.perf_counter()
            quick_look(lr, (r, c, r + s, c + s), model)
            again.append(time.perf_counter() - t0)
    load = os.getloadavg()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""### Quick look, CPU, {stamp}

Command: `python benchmarks/bench_napari_quicklook.py --side {s} --repeats {args.repeats}`
(`cpu` preset, 4x, receptive field {model.halo_lr_px} LR px of context around the box).
Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs,
torch {torch.__version__} with {torch.get_num_threads()} threads, shared; load average at
the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.

| selection (LR px) | output (px) | first look, with model load (s) | later looks, median (s) | later looks, slowest (s) | target |
|---|---|---|---|---|---|
| {s} x {s} | {look.sr.shape[0]} x {look.sr.shape[1]} | {first:.2f} | {statistics.median(again):.2f} | {max(again):.2f} | < 5 s |
"""
    update_section("quicklook-cpu", text)
    print(text)


if __name__ == "__main__":
    main()
