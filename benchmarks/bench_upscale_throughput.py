"""Upscaling throughput (output MPix/s) against the model's FLOP count and the device's peak.

For the ``default`` generator preset (weights random: the cost does not depend on
them) it measures

- the model cost: multiply-accumulates of every Conv2d per LR pixel (forward hooks;
  the bicubic skip branch and the pixel shuffle are not counted: < 1 %),
- the device peak: best GFLOP/s of a large matmul (CPU fp32; CUDA fp32 without TF32,
  TF32, fp16 and bf16),
- `dleem.upscale.upscale_array` throughput in output megapixels per second, whole
  pipeline (tiling with halo, normalisation, batches, de-normalisation, copy out), at
  each precision the device supports, and the achieved fraction of peak,
- on CUDA, the error of fp16 and bf16 against fp32 in grey levels (LSB) of 8-bit and
  16-bit output, which is what `--precision auto` decides by (fp16 only if < 0.5 LSB).

Run: ``python benchmarks/bench_upscale_throughput.py [--device cpu|cuda] [--size 1024]``
(CPU: about a minute for size 512 on 2 cores). Results replace this device's section in
benchmarks/results/upscale.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "upscale"
RESULTS = ROOT / "results" / "upscale.md"


sys.path.insert(0, str(ROOT))
import results_md  # noqa: E402


def update_section(key: str, text: str) -> None:
    """Rewrite this benchmark's block ``key`` of its results file."""
    results_md.update_section(RESULTS, key, text, "Upscaling benchmarks")


def conv_macs_per_lr_px(generator: torch.nn.Module, side: int = 64) -> float:
    """Conv2d multiply-accumulates per LR input pixel, counted with forward hooks."""
    total = [0]

    def hook(module: torch.nn.Conv2d, inputs, output) -> None:
        kh, kw = module.kernel_size
        total[0] += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in generator.modules() if isinstance(m, torch.nn.Conv2d)]
    p = next(generator.parameters())
    with torch.inference_mode():
        generator(torch.zeros(1, 1, side, side, device=p.device))
    for h in handles:
        h.remove()
    return total[0] / side**2


def matmul_peak(device: str, dtype: torch.dtype, n: int, tf32: bool = False, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul."""
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10 if device == "cuda" else 1):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / (10 if device == "cuda" else 1)
        best = max(best, 2 * n**3 / dt / 1e9)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    return best


def smooth_image(side: int, dtype: str, seed: int = 0) -> np.ndarray:
    """A grain-like test image (not noise: realistic activations for the error test)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((side, side)), 3.0)
    x = (x - x.min()) / (x.max() - x.min())
    return (x * 0.9 * np.iinfo(dtype).max).astype(dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--size", type=int, default=512, help="LR side in pixels")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from dleem.models import ModelConfig, build_generator, load_model, save_model
    from dleem.upscale import upscale_array
    from dleem.upscale.engine import lsb_error

    rows: list[str] = []
    model_dirs = {}
    for dtype in ("uint8", "uint16"):
        d = OUT / f"model_{args.preset}_x{args.scale}_{dtype}"
        cfg = ModelConfig.for_preset(args.preset, scale=args.scale, input_dtype=dtype, lr_pixel_size_um=0.4)
        torch.manual_seed(0)
        save_model(d, build_generator(cfg.arch, args.scale), cfg)
        model_dirs[dtype] = d
    model = load_model(model_dirs["uint8"], device=args.device)
    macs = conv_macs_per_lr_px(model.generator)
    k = args.scale
    flop_per_out_px = 2 * macs / k**2
    peaks = {}
    if args.device == "cpu":
        peaks["fp32"] = matmul_peak("cpu", torch.float32, 2048)
    else:
        peaks["fp32"] = matmul_peak("cuda", torch.float32, 8192)
        peaks["tf32"] = matmul_peak("cuda", torch.float32, 8192, tf32=True)
        peaks["fp16"] = matmul_peak("cuda", torch.float16, 8192)
        peaks["bf16"] = matmul_peak("cuda", torch.bfloat16, 8192)

    precisions = ["fp32"] if args.device == "cpu" else ["fp32", "fp16", "bf16"]
    results = []
    for dtype in ("uint8", "uint16") if args.device == "cuda" else ("uint8",):
        img = smooth_image(args.size, dtype)
        m = load_model(model_dirs[dtype], device=args.device)
        upscale_array(img[:64, :64], m, tile=args.tile, batch=args.batch, device=args.device, precision="fp32")
        for prec in precisions:
            best = float("inf")
            for _ in range(args.repeats):
                if args.device == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                upscale_array(img, m, tile=args.tile, batch=args.batch, device=args.device, precision=prec)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            mpix = k * k * args.size**2 / best / 1e6
            err = None
            if prec != "fp32":
                sample = img[None, :args.tile + 2 * m.halo_lr_px, :args.tile + 2 * m.halo_lr_px]
                err = lsb_error(m, sample, dtype, args.device,
                                {"fp16": torch.float16, "bf16": torch.bfloat16}[prec])
            gflops = mpix * 1e6 * flop_per_out_px / 1e9
            peak = peaks.get(prec, peaks["fp32"])
            results.append((dtype, prec, best, mpix, gflops, peak, err))

    load = os.getloadavg()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    dev_name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    rows.append(f"### Throughput, {args.device} ({dev_name}, {os.cpu_count()} logical CPUs, torch "
                f"{torch.__version__}, {torch.get_num_threads()} threads), {when}\n")
    rows.append(f"Command: `python benchmarks/bench_upscale_throughput.py --device {args.device} "
                f"--size {args.size} --tile {args.tile} --batch {args.batch}`  ")
    rows.append(f"Load average at the end (shared machine): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    rows.append(f"Model: preset `{args.preset}` (width {model.config.arch.get('width')}, depth "
                f"{model.config.arch.get('depth')}), scale {k}, halo {model.halo_lr_px} LR px; "
                f"{macs / 1e3:.1f} kMAC per LR pixel = {flop_per_out_px / 1e3:.2f} kFLOP per output "
                f"pixel (convolutions only).  ")
    rows.append("Measured matmul peak: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()) + "\n")
    rows.append("| LR dtype | precision | LR image | time (s) | output MPix/s | achieved GFLOP/s | % of matmul peak | error vs fp32 (LSB) |")
    rows.append("|---|---|---|---|---|---|---|---|")
    for dtype, prec, best, mpix, gflops, peak, err in results:
        e = "-" if err is None else f"{err:.3f}"
        rows.append(f"| {dtype} | {prec} | {args.size}^2 | {best:.2f} | {mpix:.2f} | {gflops:.1f} | "
                    f"{100 * gflops / peak:.0f} % | {e} |")
    text = "\n".join(rows)
    update_section(f"throughput-{args.device}", text)
    print(text)  # noqa: T201 - a benchmark script reports


if __name__ == "__main__":
    main()
