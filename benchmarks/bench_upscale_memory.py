"""Peak resident memory of `dleem upscale` against the image size (must not grow with it).

For each LR side (default 4096, 8192, 16384) an 8-bit tiled TIFF is written tile by
tile from a generator (never whole in memory) under benchmarks/out/upscale/, then a
fresh Python process runs `dleem.upscale.upscale_file` on it with the ``tiny``
generator at 4x into a pyramidal OME-TIFF (16384^2 in -> a 65536^2, 4 GiB BigTIFF out)
and reports its peak resident set size (``VmHWM`` from /proc/self/status) and the
time of each stage. Targets: < 2 GB at 8192^2, growth < 20 % from 4096^2 to 16384^2.

Run: ``python benchmarks/bench_upscale_memory.py [--sizes 4096 8192 16384]``
(2 shared cores: about 3, 10 and 40 minutes; needs ~2.5x the output size of free disk).
Results replace the memory section of benchmarks/results/upscale.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "upscale"
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, logging, sys, time
from pathlib import Path
records = []
class Grab(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("dleem").addHandler(Grab()); logging.getLogger("dleem").setLevel(logging.INFO)
from dleem.upscale import upscale_file
t0 = time.perf_counter()
out = upscale_file(sys.argv[1], sys.argv[2], sys.argv[3], tile=int(sys.argv[4]), batch=int(sys.argv[5]),
                   device="cpu")
wall = time.perf_counter() - t0
status = open("/proc/self/status").read()
print(json.dumps({"wall_s": wall, "peak_rss_mib": int(status.split("VmHWM:")[1].split()[0]) / 1024,
                  "out_bytes": Path(out).stat().st_size, "log": records}))
"""


def make_input(path: Path, side: int, tile: int = 512, seed: int = 0) -> Path:
    """A tiled uint8 TIFF of grain-like texture, written one tile at a time."""
    import tifffile
    from scipy import ndimage

    if path.exists():
        return path
    rng = np.random.default_rng(seed)

    def tiles():
        for _ in range(0, side, tile):
            for _ in range(0, side, tile):
                t = ndimage.gaussian_filter(rng.random((tile, tile), np.float32), 2.0)
                yield (np.clip((t - 0.5) * 6 + 0.5, 0, 1) * 230 + 10).astype(np.uint8)

    tmp = path.with_suffix(".tmp")
    md = {"axes": "YX", "PhysicalSizeX": 0.4, "PhysicalSizeXUnit": "µm",
          "PhysicalSizeY": 0.4, "PhysicalSizeYUnit": "µm"}
    tifffile.imwrite(tmp, tiles(), shape=(side, side), dtype=np.uint8, tile=(tile, tile),
                     ome=True, metadata=md)
    os.replace(tmp, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384])
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()

    import torch
    from bench_upscale_throughput import update_section

    from dleem.models import ModelConfig, build_generator, save_model

    OUT.mkdir(parents=True, exist_ok=True)
    model_dir = OUT / "model_tiny_x4"
    cfg = ModelConfig.tiny(scale=4, lr_pixel_size_um=0.4, lr_blur_sigma_px=0.8)
    torch.manual_seed(0)
    save_model(model_dir, build_generator(cfg.arch, 4), cfg)
    rows = []
    results = {}
    for side in args.sizes:
        src = make_input(OUT / f"LR_{side}.tif", side)
        dst = OUT / f"SR_{side}.ome.tif"
        proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(model_dir), str(dst),
                               str(args.tile), str(args.batch)], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results[side] = r
        dst.unlink(missing_ok=True)
        shutil.rmtree(OUT / f".{dst.name}.partial.zarr", ignore_errors=True)
        stages = "; ".join(m for m in r["log"] if m.startswith(("upscaled", "pyramid", "OME-TIFF")))
        rows.append(f"| {side}^2 | {4 * side}^2 | {r['out_bytes'] / 2**30:.2f} | {r['peak_rss_mib']:.0f} | "
                    f"{r['wall_s'] / 60:.1f} | {stages} |")
        print(rows[-1], flush=True)  # noqa: T201 - a benchmark script reports
        write_results(args, rows, results, update_section)  # after each size: partial results survive


def write_results(args, rows, results, update_section) -> None:
    load = os.getloadavg()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"### Peak memory, CPU, {when}\n",
             f"Command: `python benchmarks/bench_upscale_memory.py --sizes {' '.join(map(str, args.sizes))}` "
             f"(tiny generator, 4x, tile {args.tile}, batch {args.batch}, 8-bit tiled TIFF in, pyramidal "
             f"OME-TIFF out).  ",
             f"Machine: {os.cpu_count()} logical CPUs, shared; load average at the end "
             f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.\n",
             "| LR | SR | output GiB | peak RSS (MiB) | wall (min) | stages |", "|---|---|---|---|---|---|",
             *rows]
    if len(results) > 1:
        a, b = results[min(results)]["peak_rss_mib"], results[max(results)]["peak_rss_mib"]
        lines.append(f"\nGrowth of the peak from {min(results)}^2 to {max(results)}^2: {100 * (b / a - 1):+.1f} %.")
    update_section("memory", "\n".join(lines))


if __name__ == "__main__":
    main()
