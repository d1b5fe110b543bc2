"""Benchmark `dleem synth`: a 4096 x 4096 LR map with two 1024 x 1024 HR regions at ratio 4.

Goal: under 60 s on the 2-core development machine. Run:

    python benchmarks/bench_synth.py [--size 4096] [--hr-size 1024] [--repeat 1]

Writes benchmarks/results/synth.md (the command, the times, the machine, its load) and the
images to benchmarks/out/synth/ (ignored by git).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--hr-size", type=int, default=1024)
    ap.add_argument("--ratio", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "synth")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "synth.md")
    args = ap.parse_args()

    cmd = [sys.executable, "-m", "dleem", "synth", "-o", str(args.out), "--size", str(args.size),
           "--hr-size", str(args.hr_size), "--regions", "2", "--ratio", str(args.ratio)]
    times = []
    cpus = []
    loads = []
    for _ in range(args.repeat):
        loads.append(os.getloadavg()[0])
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "DLEEM_NO_PROGRESS": "1"})
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        loads.append(os.getloadavg()[0])

    shown = " ".join(["dleem"] + cmd[3:]).replace(str(args.out), "OUT")
    lines = [
        "# dleem synth: generation time",
        "",
        f"Command: `{shown}` (via `python benchmarks/bench_synth.py`)",
        "",
        "| LR side | HR regions | ratio | wall time (s) | CPU time, all threads (s) |",
        "|---|---|---|---|---|",
    ]
    for t, c in zip(times, cpus, strict=True):
        lines.append(f"| {args.size} | 2 x {args.hr_size} | {args.ratio:g} | {t:.1f} | {c:.1f} |")
    lines += [
        "",
        f"Goal: < 60 s wall on 2 cores. Best wall: {min(times):.1f} s; CPU {min(cpus):.1f} s "
        "(not measured on an idle machine: the rendering, most of the CPU time, runs in "
        "2 threads, so an idle 2-core machine should need roughly CPU / 2 plus a few seconds "
        "of single-threaded work; CPU time itself is inflated by the contention).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; shared with other jobs: 1-min load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the runs.",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
