"""Benchmark `dleem train` on the default synthetic dataset: MAE and MSE models vs bicubic.

Pipeline, all through the CLI (what a user runs):

    dleem synth -o OUT/synth --seed 0
    dleem register OUT/synth/LR.tif OUT/synth/HR_1.tif OUT/synth/HR_2.tif -o OUT/ws
    dleem train OUT/ws -o OUT/ws/models/mae --loss mae --preset cpu --minutes M --device cpu
    dleem train OUT/ws -o OUT/ws/models/mse --loss mse --preset cpu --minutes M --device cpu

then scores every model on the held-out **test** boxes of the pairs manifest (never read
by training): the whole LR crop of each region is upscaled once (so test tiles have real LR
context, as in a whole-map upscale), cut into non-overlapping tiles of ``--tile`` LR px,
and each tile is compared with the registered HR target (8-bit grey range, PSNR and
SSIM of skimage), for the model and for bicubic alike. Goal: both models beat
bicubic by >= 2 dB median PSNR and by a clear SSIM margin.

    python benchmarks/bench_train_synth.py [--minutes 5] [--preset cpu] [--threads 2]

Writes benchmarks/results/train_synth.md and docs/training_curves.png (the MAE run's
curves); outputs in benchmarks/out/train_synth/ (ignored by git).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - t0


def upscale_crop(model_dir: Path | None, lr: np.ndarray, k: int) -> np.ndarray:
    """SR of a whole LR crop (model) or bicubic (None), in the LR dtype (rounded, clipped)."""
    import torch
    import torch.nn.functional as F

    from dleem.models import load_model

    with torch.inference_mode():
        if model_dir is None:
            x = torch.from_numpy(lr.astype(np.float32))[None, None]
            y = F.interpolate(x, scale_factor=k, mode="bicubic", align_corners=False)[0, 0].numpy()
            info = np.iinfo(lr.dtype)
            return np.clip(np.rint(y), info.min, info.max).astype(lr.dtype)
        m = load_model(model_dir)
        x = torch.from_numpy(m.normalize(lr))[None, None]
        return m.denormalize(m.generator(x)[0, 0], lr.dtype)


def inference_speed(presets: list[str], side: int = 512, threads: int = 2) -> dict[str, float]:
    """Seconds for one forward pass of each preset's generator on a side x side LR input."""
    import torch

    from dleem.models import build_generator

    torch.set_num_threads(threads)
    x = torch.randn(1, 1, side, side)
    out = {}
    for preset in presets:
        g = build_generator(preset=preset, scale=4).eval()
        with torch.inference_mode():
            g(x[..., :64, :64])
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                g(x)
                times.append(time.perf_counter() - t0)
        out[preset] = min(times)
    return out


def score(ws: Path, models: dict[str, Path], tile: int) -> dict[str, dict[str, list[float]]]:
    """Per-tile PSNR / SSIM on the test boxes for bicubic and every model."""
    import tifffile
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    manifest = json.loads((ws / "pairs" / "manifest.json").read_text())
    k = int(manifest["scale"])
    methods: dict[str, Path | None] = {"bicubic": None, **models}
    out: dict[str, dict[str, list[float]]] = {m: {"psnr": [], "ssim": []} for m in methods}
    for reg in manifest["regions"]:
        pairs = ws / "pairs"
        lr = tifffile.imread(pairs / reg["lr"])
        hr = tifffile.imread(pairs / reg["hr"]).astype(np.float64)
        mask = tifffile.imread(pairs / reg["mask"]) > 0
        drange = float(np.iinfo(lr.dtype).max) if np.issubdtype(lr.dtype, np.integer) else 1.0
        srs = {m: upscale_crop(p, lr, k).astype(np.float64) for m, p in methods.items()}
        for r0, c0, r1, c1 in reg["splits"].get("test", []):
            for r in range(r0, r1 - tile + 1, tile):
                for c in range(c0, c1 - tile + 1, tile):
                    win = np.s_[k * r:k * (r + tile), k * c:k * (c + tile)]
                    if not mask[win].all():
                        continue
                    ref = hr[win]
                    for m, sr in srs.items():
                        out[m]["psnr"].append(peak_signal_noise_ratio(ref, sr[win], data_range=drange))
                        out[m]["ssim"].append(structural_similarity(ref, sr[win], data_range=drange))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--losses", nargs="+", default=["mae", "mse"])
    ap.add_argument("--adv-weight", type=float, default=None, help="default: dleem train's")
    ap.add_argument("--size", type=int, default=2048, help="LR side of the synthetic map")
    ap.add_argument("--tile", type=int, default=32, help="test tile side, LR px")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="reuse OUT/synth and OUT/ws/pairs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "train_synth")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "train_synth.md")
    ap.add_argument("--curves", type=Path, default=ROOT / "docs" / "training_curves.png")
    args = ap.parse_args()

    env = {**os.environ, "DLEEM_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(args.threads)}
    dleem = [sys.executable, "-m", "dleem"]
    out, ws = args.out, args.out / "ws"
    timings: dict[str, float] = {}
    loads = [os.getloadavg()[0]]
    if not (args.reuse and (ws / "pairs" / "manifest.json").exists()):
        shutil.rmtree(out, ignore_errors=True)
        timings["synth"] = sh(dleem + ["synth", "-o", str(out / "synth"), "--seed", str(args.seed),
                                       "--size", str(args.size)], env)
        hrs = sorted((out / "synth").glob("HR_*.tif"))
        timings["register"] = sh(dleem + ["register", str(out / "synth" / "LR.tif"),
                                          *map(str, hrs), "-o", str(ws)], env)
    models: dict[str, Path] = {}
    train_info: dict[str, dict] = {}
    train_cmd = ""
    for loss in args.losses:
        mdir = ws / "models" / loss
        cmd = dleem + ["train", str(ws), "-o", str(mdir), "--loss", loss, "--preset", args.preset,
                       "--minutes", f"{args.minutes:g}", "--device", "cpu", "--seed", str(args.seed),
                       "--force"]
        if args.adv_weight is not None:
            cmd += ["--adv-weight", f"{args.adv_weight:g}"]
        train_cmd = " ".join(["dleem", *cmd[3:]]).replace(str(out), "OUT")
        loads.append(os.getloadavg()[0])
        timings[f"train {loss}"] = sh(cmd, env)
        loads.append(os.getloadavg()[0])
        models[loss] = mdir
        train_info[loss] = json.loads((mdir / "config.json").read_text())["training"]
    t0 = time.perf_counter()
    scores = score(ws, models, args.tile)
    timings["score"] = time.perf_counter() - t0
    loads.append(os.getloadavg()[0])

    speed = inference_speed(["default", "cpu"], threads=args.threads)
    loads.append(os.getloadavg()[0])
    med = {m: (float(np.median(s["psnr"])), float(np.median(s["ssim"]))) for m, s in scores.items()}
    n_tiles = len(scores["bicubic"]["psnr"])
    b_psnr, b_ssim = med["bicubic"]
    lines = [
        "# dleem train on the default synthetic dataset (CPU)",
        "",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch threads {args.threads}; **shared** with other jobs: 1-min load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the run (so every time here is pessimistic).",
        "",
        "Commands (`python benchmarks/bench_train_synth.py --minutes "
        f"{args.minutes:g} --preset {args.preset}`):",
        "",
        "```",
        f"dleem synth -o OUT/synth --seed {args.seed} --size {args.size}",
        "dleem register OUT/synth/LR.tif OUT/synth/HR_1.tif OUT/synth/HR_2.tif -o OUT/ws",
        train_cmd.replace(f"--loss {args.losses[-1]}", "--loss LOSS").replace(
            f"models/{args.losses[-1]}", "models/LOSS"),
        "```",
        "",
        f"Held-out test boxes of the pairs manifest, {n_tiles} tiles of {args.tile} x {args.tile} LR px "
        f"({args.tile * 4} px HR at scale 4) with every target pixel valid; SR and bicubic rounded to "
        "the 8-bit LR grey scale; PSNR with the 8-bit range (255) as peak, SSIM of skimage (7x7 "
        "window); the reference is the registered HR acquisition (it carries its own noise).",
        "",
        "| method | median PSNR (dB) | vs bicubic (dB) | median SSIM | vs bicubic | steps | samples/s |",
        "|---|---|---|---|---|---|---|",
        f"| bicubic | {b_psnr:.2f} | | {b_ssim:.4f} | | | |",
    ]
    for loss in args.losses:
        p, s = med[loss]
        t = train_info[loss]
        term = f" + adversarial ({t['adv_weight']:g} {t['adv_loss']})" if t["adv_weight"] else ", pixel-only"
        lines.append(f"| {loss.upper()}{term}, preset "
                     f"{args.preset} | {p:.2f} | {p - b_psnr:+.2f} | {s:.4f} | {s - b_ssim:+.4f} | "
                     f"{t['steps_done']} | {t['samples_per_s']:.1f} |")
    gains = {loss: med[loss][0] - b_psnr for loss in args.losses}
    ok = all(g >= 2.0 for g in gains.values())
    lines += [
        "",
        f"Goal: both models >= 2 dB above bicubic with a clear SSIM margin: "
        f"**{'met' if ok else 'not met'}** ({', '.join(f'{k}: {v:+.2f} dB' for k, v in gains.items())}).",
        "",
        "Wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ".",
        "",
        f"Training curves of the {args.losses[0].upper()} run: docs/training_curves.png.",
        "",
        f"## CPU inference speed ({args.threads} threads, same shared machine)",
        "",
        "| preset | parameters | s per 512 x 512 LR (x4) | extrapolated min per 4096 x 4096 LR |",
        "|---|---|---|---|",
    ]
    from dleem.models import build_generator

    for preset, sec in speed.items():
        n = sum(p.numel() for p in build_generator(preset=preset, scale=4).parameters())
        lines.append(f"| {preset} | {n:,} | {sec:.2f} | {sec * 64 / 60:.1f} |")
    lines.append("")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))
    curves = models[args.losses[0]] / "curves.png"
    if curves.exists():
        args.curves.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(curves, args.curves)
    (out / "scores.json").write_text(json.dumps({"median": med, "tiles": scores, "timings": timings}))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
