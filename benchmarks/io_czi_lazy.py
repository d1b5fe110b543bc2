"""Large Zeiss CZI mosaics open lazily: time and peak memory of `read_image` and of window reads.

Writes a 16384 x 16384 uint16 (Gray16, 512 MiB of pixels) CZI mosaic of 2048² tiles
overlapping by 64 px under benchmarks/out/io_czi/, twice: uncompressed and
zstd-compressed, each tile generated on the fly (bounded memory while writing), with a
pixel size in its Scaling metadata. Each file is then opened in a fresh process that
reports wall time and peak resident memory (VmHWM) for: the imports alone,
`read_image` (default: lazy above 256 MiB; bit depth and databar sampled), one
1024 x 1024 window across four tiles, and a pass over the whole plane in 1024² windows
(what `dleem upscale` reads). Results go to benchmarks/results/io_czi.md.

Run: ``python benchmarks/io_czi_lazy.py`` (a minute or two; needs ~1 GB of disk).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from io_lazy import measure  # noqa: E402

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "io_czi"
SIDE = 16384
TILE = 2048
OVERLAP = 64
PX_M = 2.5e-8  # 25 nm

CHILD = r"""
import json, sys, time
def hwm():  # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
t0 = time.perf_counter()
import numpy as np
import pylibCZIrw.czi
from dleem.io import read_image
imports_mib = hwm()
t1 = time.perf_counter()
image = read_image(sys.argv[1])
t2 = time.perf_counter()
open_mib = hwm()
window = image.data[7680:8704, 7680:8704]  # across the corner of four tiles
t3 = time.perf_counter()
window_mib = hwm()
h, w = image.shape
total = 0.0
for y in range(0, h, 1024):
    for x in range(0, w, 1024):
        total += float(np.asarray(image.data[y:y + 1024, x:x + 1024]).mean())
t4 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "open_s": t2 - t1, "window_s": t3 - t2, "pass_s": t4 - t3,
                  "lazy": image.lazy, "type": type(image.data).__name__, "shape": [h, w],
                  "bits": image.bits_used, "pixel_size_um": image.pixel_size_um,
                  "source": image.pixel_size_source, "window_mean": float(window.mean()),
                  "imports_mib": imports_mib, "open_mib": open_mib, "window_mib": window_mib,
                  "pass_mib": hwm()}))
"""


def make(path: Path, compression: str | None) -> None:
    """The mosaic, tile by tile: 12-bit noise around a per-tile level (seams visible)."""
    from pylibCZIrw import czi as pc

    rng = np.random.default_rng(0)
    step = TILE - OVERLAP
    with pc.create_czi(str(path), exist_ok=True, compression_options=compression) as w:
        for y in range(0, SIDE - OVERLAP, step):
            for x in range(0, SIDE - OVERLAP, step):
                th, tw = min(TILE, SIDE - y), min(TILE, SIDE - x)
                tile = rng.normal(1500 + (x + y) // 16, 200, (th, tw)).clip(0, 4095).astype(np.uint16)
                w.write(tile, location=(x, y))
        w.write_metadata(scale_x=PX_M, scale_y=PX_M)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, compression in (("mosaic_raw.czi", None),
                              ("mosaic_zstd.czi", "zstd1:ExplicitLevel=1;PreProcess=HiLoByteUnpack")):
        path = OUT / name
        t0 = time.perf_counter()
        if not path.exists():
            make(path, compression)
        stats = measure(path, CHILD)
        stats.update(file=name, size_mib=path.stat().st_size / 2**20,
                     pixels_mib=SIDE * SIDE * 2 / 2**20, write_and_measure_s=time.perf_counter() - t0)
        rows.append(stats)
        print(json.dumps({k: v for k, v in stats.items() if k != "info"}))
    load = os.getloadavg()
    lines = [
        "# Lazy reading of large Zeiss CZI mosaics (`dleem.io.read_image`)",
        "",
        f"Command: `python benchmarks/io_czi_lazy.py` ({datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} CPUs shared with other sessions, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}).",
        "",
        f"Files: {SIDE} x {SIDE} Gray16 mosaic ({SIDE * SIDE * 2 / 2**20:.0f} MiB of pixels) of "
        f"{TILE}² tiles overlapping by {OVERLAP} px, pixel size {PX_M * 1e9:.0f} nm in "
        "Scaling/Items/Distance, written by pylibCZIrw. Each measured in a fresh Python process; "
        "peak RSS (VmHWM) includes the interpreter and the imports (numpy, tifffile, zarr, "
        "pylibCZIrw), shown on their own in the first RSS column.",
        "",
        "| file | size MiB | data type | open s | 1024² window s | pass over all 1024² windows s "
        "| peak RSS MiB: imports / after open / after window / after pass | `dleem info` s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['size_mib']:.0f} | {r['type']} | {r['open_s']:.2f} | "
            f"{r['window_s']:.3f} | {r['pass_s']:.1f} | {r['imports_mib']:.0f} / {r['open_mib']:.0f} / "
            f"{r['window_mib']:.0f} / {r['pass_mib']:.0f} | {r['info_s']:.2f} |")
    for r in rows:
        grown = r["pass_mib"] - r["imports_mib"]
        lines.append(f"\n{r['file']}: after reading every pixel of the {r['pixels_mib']:.0f} MiB plane "
                     f"window by window, the process had grown {grown:.0f} MiB above its imports "
                     f"({100 * grown / r['pixels_mib']:.0f} % of the plane).")
    lines += ["", "`dleem info` on the compressed file:", "", "```", rows[-1]["info"], "```", ""]
    (ROOT / "results" / "io_czi.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
