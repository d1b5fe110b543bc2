"""Measure `dleem train` numerics on a GPU: which precision and memory layout is fastest
without hurting quality, and how long the default model takes to plateau.

For each variant (precision fp32 = TF32 off, tf32, bf16 and fp16 autocast; channels-last
on or off) it trains the default preset for the same number of steps on the same
synthetic workspace and seed, and reports training throughput (samples/s, median of the
logged rates after the first 10 % of steps) and the final validation PSNR / SSIM. Then
(``--plateau-minutes``) it trains the best variant for a wall-clock budget and reports
the validation PSNR against time (time to plateau: first time within 0.1 dB of the best).

    python benchmarks/bench_train_gpu.py [--steps 2000] [--plateau-minutes 10] [--device cuda]

The workspace is made with `dleem synth` + `dleem register` (or ``--workspace`` an existing
one). Writes benchmarks/results/train_gpu.md and the runs to benchmarks/out/train_gpu/.
On the CPU (``--device cpu --steps 20 --variants fp32``) it is a quick smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp32", "tf32", "bf16", "fp16", "fp32+cl", "tf32+cl", "bf16+cl", "fp16+cl")


def make_workspace(out: Path, size: int) -> Path:
    ws = out / "ws"
    if (ws / "pairs" / "manifest.json").exists():
        return ws
    env = {**os.environ, "DLEEM_NO_PROGRESS": "1"}
    dleem = [sys.executable, "-m", "dleem"]
    subprocess.run(dleem + ["synth", "-o", str(out / "synth"), "--size", str(size)], check=True, env=env)
    hrs = sorted(str(p) for p in (out / "synth").glob("HR_*.tif"))
    subprocess.run(dleem + ["register", str(out / "synth" / "LR.tif"), *hrs, "-o", str(ws)],
                   check=True, env=env)
    return ws


def run_variant(ws: Path, out: Path, variant: str, args: argparse.Namespace, *,
                steps: int | None = None, minutes: float | None = None) -> dict:
    from dleem.training import TrainOptions, train

    precision, _, cl = variant.partition("+")
    opts = TrainOptions(
        steps=steps, minutes=minutes, preset=args.preset, batch=args.batch, patch=args.patch,
        device=args.device, precision=precision, channels_last=bool(cl), seed=0, force=True,
        checkpoint_every=0, deterministic=False, log_every=20,
    )
    t0 = time.perf_counter()
    res = train(ws, out / variant.replace("+", "_"), opts)
    wall = time.perf_counter() - t0
    n = len(res.history)
    rates = [r["samples_per_s"] for r in res.history[n // 10:] if r.get("samples_per_s")]
    curve = [(r["elapsed_s"], r["val_psnr_db"]) for r in res.history if r.get("val_psnr_db") is not None]
    return {"variant": variant, "steps": res.steps, "wall_s": wall, "elapsed_s": res.elapsed_s,
            "samples_per_s": float(np.median(rates)) if rates else res.samples_per_s,
            "val_psnr_db": res.val_psnr_db, "val_ssim": res.val_ssim,
            "bicubic_psnr_db": res.val_psnr_bicubic_db, "bicubic_ssim": res.val_ssim_bicubic,
            "curve": curve}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--size", type=int, default=2048, help="LR side of the synthetic map")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--plateau-minutes", type=float, default=0.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "train_gpu")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "train_gpu.md")
    args = ap.parse_args()
    os.environ.setdefault("DLEEM_NO_PROGRESS", "1")
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    ws = args.workspace or make_workspace(args.out, args.size)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    rows = []
    for v in args.variants:
        rows.append(run_variant(ws, args.out, v, args, steps=args.steps))
        sys.stdout.write(json.dumps({k: rows[-1][k] for k in rows[-1] if k != "curve"}) + "\n")
        sys.stdout.flush()
    best = max(rows, key=lambda r: r["samples_per_s"])
    ref = next((r for r in rows if r["variant"] == "fp32"), rows[0])
    lines = [
        "# dleem train on a GPU: numerics and layout",
        "",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Device: {device_name}; "
        f"torch {torch.__version__}. Preset {args.preset}, same seed and data for every variant.",
        "",
        f"Command: `python benchmarks/bench_train_gpu.py --steps {args.steps} --plateau-minutes "
        f"{args.plateau_minutes:g}`",
        "",
        f"| variant | samples/s | speed-up vs fp32 | val PSNR after {args.steps} steps (dB) | val SSIM |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['samples_per_s']:.0f} | "
                     f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x | {r['val_psnr_db']:.2f} | "
                     f"{r['val_ssim']:.4f} |")
    lines += ["", f"Bicubic on the same validation tiles: {ref['bicubic_psnr_db']:.2f} dB, "
              f"SSIM {ref['bicubic_ssim']:.4f}. Fastest: **{best['variant']}**.", ""]
    if args.plateau_minutes > 0:
        p = run_variant(ws, args.out / "plateau", best["variant"], args, minutes=args.plateau_minutes)
        curve = p["curve"]
        top = max(v for _, v in curve)
        t_plateau = next(t for t, v in curve if v >= top - 0.1)
        lines += [f"## Time to plateau ({best['variant']}, {args.plateau_minutes:g} min budget)", "",
                  f"Best validation PSNR {top:.2f} dB (bicubic {p['bicubic_psnr_db']:.2f}); within 0.1 dB "
                  f"of it after **{t_plateau / 60:.1f} min**; {p['samples_per_s']:.0f} samples/s.", "",
                  "| minutes | val PSNR (dB) |", "|---|---|"]
        lines += [f"| {t / 60:.1f} | {v:.2f} |" for t, v in curve]
        lines.append("")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
