"""Time `dleem demo` end to end and record its numbers in benchmarks/results/evaluation.md.

    python benchmarks/bench_demo.py [--quick] [-o benchmarks/out/demo]

Runs the demo (synthesise, register, cross-validate, train, upscale, evaluate), then reads
DIR/report/metrics.json and writes a Markdown summary: the command, wall time per step and
the steps' budgets, the machine (CPU count, load average: the machine may be shared), the
cross-validated estimate, and for bicubic and each model the SSIM and PSNR medians (with
95 % intervals) against HR and against the noise-free truth, the porosity, the pore recall
by size, and the distances of the pore-size distributions to HR. Reads metrics.json
schema_version 1 (no intervals, no crossval, no matching) and 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fmt(x, spec=".4f"):
    return "–" if x is None else format(x, spec)


def with_ci(entry: dict | None, spec: str = ".4f") -> str:
    """``median [lo, hi]``; v1 entries have no ``ci95``."""
    if not entry or entry.get("median") is None:
        return "–"
    ci = entry.get("ci95")
    text = format(entry["median"], spec)
    return text + (f" [{format(ci[0], spec)}, {format(ci[1], spec)}]" if ci else "")


def crossval_text(doc: dict) -> str:
    """The cross-validated estimate (metrics v2 with a crossval), else why there is none."""
    cv = doc.get("crossval")
    if not cv:
        return ("No cross-validation in this run (metrics.json schema_version "
                f"{doc.get('schema_version', 1)}).")
    rows = ["| method | SSIM vs HR | PSNR vs HR (dB) | SSIM vs truth | PSNR vs truth (dB) |",
            "| --- | --- | --- | --- | --- |"]
    for method, e in cv["estimate"].items():
        vh, vt = e.get("vs_HR") or {}, e.get("vs_truth") or {}
        rows.append(f"| {method} | {with_ci(vh.get('ssim'))} | {with_ci(vh.get('psnr_db'), '.2f')}"
                    f" | {with_ci(vt.get('ssim'))} | {with_ci(vt.get('psnr_db'), '.2f')} |")
    return (f"Cross-validated estimate ({cv['scheme']}; median [95 % interval] over all "
            "held-out tiles, regions first in the bootstrap): the quality to expect where no "
            "HR was acquired.\n\n" + "\n".join(rows))


def recall_table(doc: dict) -> str:
    """Recall of HR pores by equivalent diameter (LR px) and precision (metrics v2)."""
    methods = {n: m for n, m in doc["methods"].items() if "pore_recall_by_size" in m.get("vs_HR", {})}
    if not methods:
        return "No pore matching in metrics.json schema_version 1."
    classes = next(iter(methods.values()))["vs_HR"]["pore_recall_by_size"]
    head = [f"{c['min_lr_px']:g}–{c['max_lr_px']:g}" if c["max_lr_px"] is not None
            else f"≥ {c['min_lr_px']:g}" for c in classes]
    rows = ["| method | " + " | ".join(head) + " | precision | merges | splits | resolved (LR px) |",
            "| --- " * (len(head) + 5) + "|"]
    for name, m in methods.items():
        v = m["vs_HR"]
        cells = [f"{fmt(c['recall'], '.2f')} (n={c['n']})" for c in v["pore_recall_by_size"]]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(v['pore_precision'], '.2f')} | "
                    f"{v['pore_merges']} | {v['pore_splits']} | "
                    f"{fmt(v['resolved_pore_size_lr_px'], 'g')} |")
    return "\n".join(rows)


def summary_table(doc: dict) -> str:
    rows = ["| method | SSIM vs HR | PSNR vs HR (dB) | SSIM vs truth | PSNR vs truth (dB) | "
            "porosity | pores | PSD Wasserstein to HR (µm) | PSD KS to HR | "
            "PSD W., pores ≥ 1 LR px (µm) | local-thickness W. (µm) | S2 RMSE |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in doc["methods"].items():
        vs, vt = m.get("vs_HR", {}), m.get("vs_truth", {})
        rows.append(
            f"| {name} | {with_ci(m.get('ssim'))} | "
            f"{with_ci(m.get('psnr_db'), '.2f')} | "
            f"{with_ci(vt.get('ssim'))} | "
            f"{with_ci(vt.get('psnr_db'), '.2f')} | "
            f"{fmt(m['porosity']['median'])} | {m['pore_count']['total']} | "
            f"{fmt(vs.get('psd_wasserstein_um'))} | "
            f"{fmt(vs.get('psd_ks_statistic'), '.3f')} | "
            f"{fmt(vs.get('psd_wasserstein_um_lr_resolved'))} | "
            f"{fmt(vs.get('pore_size_function_wasserstein_um'))} | "
            f"{fmt(vs.get('two_point_correlation_rmse'))} |")
    return "\n".join(rows)


def verdicts(doc: dict) -> str:
    """One line per model and criterion: is SR ahead of bicubic? (lower is better for distances)."""
    m = doc["methods"]
    b = m["bicubic"]
    lines = []
    for name in doc.get("models", {}):
        e = m[name]
        checks = [
            ("SSIM median vs HR (higher is better)", e["ssim"]["median"], b["ssim"]["median"], 1),
            ("PSNR median vs HR (higher is better)", e["psnr_db"]["median"], b["psnr_db"]["median"], 1),
            ("PSD Wasserstein to HR", e["vs_HR"]["psd_wasserstein_um"], b["vs_HR"]["psd_wasserstein_um"], -1),
            ("PSD KS statistic to HR", e["vs_HR"]["psd_ks_statistic"], b["vs_HR"]["psd_ks_statistic"], -1),
            ("PSD Wasserstein, pores >= 1 LR px", e["vs_HR"]["psd_wasserstein_um_lr_resolved"],
             b["vs_HR"]["psd_wasserstein_um_lr_resolved"], -1),
            ("local-thickness Wasserstein to HR", e["vs_HR"]["pore_size_function_wasserstein_um"],
             b["vs_HR"]["pore_size_function_wasserstein_um"], -1),
            ("two-point correlation RMSE to HR", e["vs_HR"]["two_point_correlation_rmse"],
             b["vs_HR"]["two_point_correlation_rmse"], -1),
            ("porosity error (median abs)", e["vs_HR"]["porosity_abs_error_median"],
             b["vs_HR"]["porosity_abs_error_median"], -1),
        ]
        for label, x, y, sign in checks:
            if x is None or y is None:
                continue
            ahead = (x - y) * sign > 0
            lines.append(f"- {name}, {label}: {x:.4g} vs bicubic {y:.4g}: "
                         f"**{'SR ahead' if ahead else 'bicubic ahead'}**")
    return "\n".join(lines)


def budget_text(out: Path) -> str:
    """Each model's training budget, from the workspace manifest."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return "unknown"
    steps = json.loads(manifest.read_text()).get("steps", {})
    parts = []
    for name, step in steps.items():
        if name.startswith("train:"):
            p = step.get("parameters", {})
            budget = f"{p['steps']} steps" if p.get("steps") else f"{p.get('minutes')} min"
            parts.append(f"{name[6:]} {budget}")
    return ", ".join(parts) or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--compare-losses", action="store_true")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "benchmarks" / "out" / "demo")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "evaluation.md")
    ap.add_argument("--from-metrics", action="store_true",
                    help="do not run: rewrite the Markdown from OUT/report/metrics.json")
    args = ap.parse_args()
    flags = (["--quick"] if args.quick else []) + (["--compare-losses"] if args.compare_losses else [])
    cmd = [sys.executable, "-m", "dleem", "demo", "-o", str(args.out), *flags]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    if not args.from_metrics:
        subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    doc = json.loads((args.out / "report" / "metrics.json").read_text())
    if args.from_metrics:
        wall = sum(doc.get("timings_s", {}).values())
    s = doc["settings"]
    flag = "".join(" " + f for f in flags)
    timings = doc.get("timings_s", {})
    budgets = budget_text(args.out)
    text = f"""# Evaluation: `dleem demo`{flag}

Command: `python benchmarks/bench_demo.py{flag}` (runs
`dleem demo{flag} -o {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}`).
Date {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, dleem {doc['dleem_version']},
{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU; load average
{load0[0]:.1f} before, {load1[0]:.1f} after (the machine was shared with other jobs: the
times are upper bounds, and the wall-clock training budget bought fewer steps than alone).

Wall time: **{wall / 60:.1f} min**. Steps (s): {', '.join(f'{k} {v:.0f}' for k, v in timings.items())}
(sum {sum(timings.values()) / 60:.1f} min). Training budgets: {budgets}.

{crossval_text(doc)}

In-region test areas: {s['tiles']} tiles of {s['tile_size_px']} px ({fmt(s['tile_size_um'], '.1f')} µm),
seed {s['seed']}, border {s['border_px']} px, Otsu threshold {s['threshold']:.1f} on HR,
{s['connectivity']}-connectivity, pores ≥ {s['min_pore_area_px']} px. Whole LR upscaled by
{doc.get('upscaled', {}).get('model')}.

{summary_table(doc)}

Recall of HR pores by equivalent diameter (LR px), in-region test areas:

{recall_table(doc)}

SR against bicubic, criterion by criterion (distances: lower is better):

{verdicts(doc)}
"""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
