"""Large SEM files open lazily: time and peak memory of `read_image` on files > 256 MiB.

Writes two 17000 x 17000 uint16 TIFFs (551 MiB of pixels each) under
benchmarks/out/io_lazy/: one uncompressed (opened as a memory-map), one
zlib-compressed in 512 x 512 tiles (opened as a zarr array over tifffile's store),
both with a synthetic 120-row databar (text-free black band under a white line
in the raw file, which says its height in FEI metadata; in the compressed file,
found by the detector) and an FEI-style pixel size. Each file is
then opened in a fresh process that reports wall time and peak resident memory
for: read_image (with databar detection), reading one 1024 x 1024 window, and
`dleem info`. Results go to benchmarks/results/io.md.

Run: ``python benchmarks/io_lazy.py`` (about a minute; needs ~1.2 GB of disk).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "io_lazy"
SIDE = 17000
BAR = 120
FEI = "[Scan]\r\nPixelWidth=2.5e-08\r\n[Image]\r\nResolutionX={w}\r\nResolutionY={h}\r\n"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from dleem.io import read_image
image = read_image(sys.argv[1])
t1 = time.perf_counter()
window = image.data[8000:9024, 8000:9024]
t2 = time.perf_counter()
print(json.dumps({"open_s": t1 - t0, "window_s": t2 - t1, "lazy": image.lazy,
                  "type": type(image.data).__name__, "databar": image.databar_rows,
                  "databar_source": image.databar_source, "bits": image.bits_used,
                  "pixel_size_um": image.pixel_size_um, "window_mean": float(window.mean()),
                  # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak
                  "peak_rss_mib": int(open("/proc/self/status").read()
                                      .split("VmHWM:")[1].split()[0]) / 1024}))
"""


def tiles(height: int, width: int, rng: np.random.Generator):
    """Noise texture, 12-bit, row band by row band (bounded memory while writing)."""
    band = 1000
    for y0 in range(0, height, band):
        rows = min(band, height - y0)
        yield (rng.normal(2000, 300, (rows, width))).clip(0, 4095).astype(np.uint16)


def databar(width: int) -> np.ndarray:
    """A black panel under a white line, with text-like blocks and a scale bar."""
    import cv2

    bar = np.zeros((BAR, width), np.uint8)  # cv2 draws text on 8-bit images only
    bar[:2] = 255
    for i, text in enumerate(("HV 15.00 kV", "WD 10.1 mm", "mag 5 000 x", "BSE")):
        cv2.putText(bar, text, (40 + 3000 * i, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.0, 255, 4)
    bar[60:70, width - 2000:width - 200] = 255
    return (bar.astype(np.uint16) * 4095 // 255).astype(np.uint16)


def make(path: Path, compressed: bool) -> None:
    rng = np.random.default_rng(0)
    height = SIDE + BAR
    # the raw file says its databar height (FEI [Image] ResolutionY); the compressed one
    # does not, so its databar is found by the detector
    text = FEI.format(w=SIDE, h=SIDE) if not compressed else FEI.split("[Image]")[0]
    extratags = [(34682, "s", 0, text, True)]
    if not compressed:
        mm = tifffile.memmap(path, shape=(height, SIDE), dtype=np.uint16, extratags=extratags)
        y = 0
        for block in tiles(SIDE, SIDE, rng):
            mm[y:y + len(block)] = block
            y += len(block)
        mm[SIDE:] = databar(SIDE)
        mm.flush()
        del mm
        return
    data = np.memmap(OUT / "scratch.raw", dtype=np.uint16, mode="w+", shape=(height, SIDE))
    y = 0
    for block in tiles(SIDE, SIDE, rng):
        data[y:y + len(block)] = block
        y += len(block)
    data[SIDE:] = databar(SIDE)
    tifffile.imwrite(path, data, tile=(512, 512), compression="zlib",
                   compressionargs={"level": 1}, extratags=extratags,
                     maxworkers=2)
    del data
    (OUT / "scratch.raw").unlink()


def measure(path: Path, child: str = CHILD) -> dict:
    """Run ``child`` (a script that prints JSON statistics) on ``path`` in a fresh process, so
    its peak memory is its own, then time `dleem info` on the same file."""
    result = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True,
                            text=True, check=True)
    stats = json.loads(result.stdout)
    t0 = time.perf_counter()
    info = subprocess.run([sys.executable, "-m", "dleem", "info", str(path)], capture_output=True,
                          text=True, check=True)
    stats["info_s"] = time.perf_counter() - t0
    stats["info"] = info.stdout.strip()
    return stats


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, compressed in (("raw.tif", False), ("zlib_tiled.tif", True)):
        path = OUT / name
        if not path.exists():
            make(path, compressed)
        stats = measure(path)
        stats["file"] = name
        stats["size_mib"] = path.stat().st_size / 2**20
        rows.append(stats)
        print(json.dumps({k: v for k, v in stats.items() if k != "info"}))  # noqa: T201
    load = os.getloadavg()
    lines = [
        "# Lazy opening of large SEM TIFFs (`dleem.io.read_image`)",
        "",
        f"Command: `python benchmarks/io_lazy.py` ({datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} CPUs shared with other sessions, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}).",
        "",
        f"Files: {SIDE + BAR} x {SIDE} uint16 (12-bit noise texture, {BAR}-row databar, FEI "
        "pixel size). Each measured in a fresh Python process; peak RSS includes the "
        "interpreter and imports (numpy, tifffile, zarr).",
        "",
        "| file | size MiB | data type | open s (incl. imports, databar) | 1024² window s "
        "| peak RSS MiB | `dleem info` s | databar rows (source) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['size_mib']:.0f} | {r['type']} | {r['open_s']:.2f} | "
            f"{r['window_s']:.3f} | {r['peak_rss_mib']:.0f} | {r['info_s']:.2f} | "
            f"{r['databar']} ({r['databar_source']}) |")
    lines += ["", "`dleem info` on the compressed file:", "", "```", rows[-1]["info"], "```", ""]
    (ROOT / "results" / "io.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
