"""Does the cross-validated estimate hold where no HR was acquired? And pore recall on shale.

    python benchmarks/bench_crossval_truth.py [--steps 150] [--preset cpu] [--skip-shale]

Synthetic part (the truth exists everywhere): synthesise an LR map with 3 HR regions,
register, run `dleem crossval` (leave-one-region-out, every fold with ``--steps``), train the
final model on all regions with the same budget, upscale the whole LR map, and score SR and
bicubic against the truth (`dleem.synth.render_truth`, blur "hr", region 0) **outside the
HR regions**: LR pixels farther than 8 LR px from every registered HR footprint and at least
the model's halo from the image edge and the databar. Same statistic as crossval (median of
per-tile SSIM / PSNR, `dleem.evaluation.metrics.score_tile`, border k, the LR dtype's range)
on the same tile grid (128 fine px cells anchored at LR pixel 0, 0; a seeded subset of
``--outside-tiles`` cells). The check: crossval's ``estimate.vs_truth`` 95 % interval holds
the outside value; the in-region test-area estimate (`dleem evaluate`'s numbers) is given
beside it.

Real part: the two shale FIB-SEM slices of ``../shared/data/real`` (slice 003 trains, slice
016 tests), LR degraded by `benchmarks/degrade.py` exactly as `bench_real_shale.py` builds
its workspace; a dleem model trained with the same ``--steps``; then the recall of the HR
pores of slice 016 by equivalent diameter in LR px, for SR and bicubic, with precision,
merges and splits (`dleem.evaluation.pores.match_pores` on 128 px grid tiles, Otsu on HR).

Results: ``benchmarks/results/crossval.md`` and ``benchmarks/out/crossval_truth/results.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

log = logging.getLogger("bench_crossval_truth")

MARGIN_LR_PX = 8
TILE_SIZE = 128


def outside_mask(ws: Any, lr_shape: tuple[int, int], halo: int) -> np.ndarray:
    """LR pixels farther than 8 LR px from every HR footprint, and at least ``halo`` from
    the image edge and the databar (the definition of the issue)."""
    from scipy import ndimage
    from skimage.draw import polygon

    reg = ws.read_registration()
    man = ws.read_pairs()
    foot = np.zeros(lr_shape, bool)
    for r in reg.regions:
        if r.hr_to_lr is None or r.hr_shape is None:
            continue
        xy = r.hr_to_lr.corners(r.hr_shape)
        rr, cc = polygon(xy[:, 1], xy[:, 0], shape=lr_shape)
        foot[rr, cc] = True
    far = ndimage.distance_transform_edt(~foot) > MARGIN_LR_PX
    h, w = lr_shape
    inner = np.zeros(lr_shape, bool)
    bottom = h - halo - int(man.lr_databar_rows or 0)
    inner[halo:bottom, halo:w - halo] = True
    return far & inner


def grid_cells(mask: np.ndarray, size_lr: int) -> list[tuple[int, int]]:
    """Origins of the grid cells (anchored at LR 0, 0) lying fully inside ``mask``."""
    h, w = mask.shape
    cells = []
    for r in range(0, h - size_lr + 1, size_lr):
        for c in range(0, w - size_lr + 1, size_lr):
            if mask[r:r + size_lr, c:c + size_lr].all():
                cells.append((r, c))
    return cells


def synthetic(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from dleem import imaging
    from dleem.evaluation.evaluate import (
        EvalOptions,
        evaluate,
        model_upscaler,
        open_workspace,
        summarize,
    )
    from dleem.evaluation.metrics import score_tile
    from dleem.evaluation.pipeline import crossval_workspace, truth_renderer
    from dleem.models import load_model
    from dleem.registration.pipeline import register_files
    from dleem.synth import generate, load_truth, render_truth
    from dleem.training import TrainOptions, train
    from dleem.upscale import upscale_array
    from dleem.workspace import Workspace

    t: dict[str, float] = {}
    data, ws = out / "data", Workspace(out / "ws")
    t0 = time.perf_counter()
    generate(data, seed=args.seed, lr_size=args.lr_size, hr_size=args.hr_size, regions=3)
    t["synthesise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    hrs = sorted(data.glob("HR_*.tif"), key=lambda f: int(f.stem.split("_")[1]))
    register_files(data / "LR.tif", hrs, ws, seed=args.seed)
    t["register"] = time.perf_counter() - t0
    opts = TrainOptions(steps=args.steps, preset=args.preset, loss="mae", device="cpu",
                        seed=args.seed, force=True, checkpoint_every=0)
    eopts = EvalOptions(tile_size=TILE_SIZE, seed=args.seed)
    t0 = time.perf_counter()
    record = crossval_workspace(ws, opts, eopts, device="cpu")
    t["crossval"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = ws.models_dir / "model-final"
    train(ws, final, opts)
    t["train final"] = time.perf_counter() - t0

    # The in-region test-area estimate of the final model, as dleem evaluate gives it.
    t0 = time.perf_counter()
    edata = open_workspace(ws)
    ev = evaluate(edata, [model_upscaler(final, name="model")], eopts,
                  truth=truth_renderer(edata.truth_json))
    in_region = summarize(ev)
    t["evaluate test areas"] = time.perf_counter() - t0

    # The whole map, upscaled; the truth outside the HR regions on the same grid.
    t0 = time.perf_counter()
    lr = np.asarray(edata.lr)
    model = load_model(final)
    k = model.scale
    sr = np.asarray(upscale_array(lr, model, tile=256, device="cpu"))
    bic = imaging.bicubic_upsample(lr, k)
    t["upscale map"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mask = outside_mask(ws, lr.shape, int(model.halo_lr_px))
    size_lr = TILE_SIZE // k
    cells = grid_cells(mask, size_lr)
    rng = np.random.default_rng(args.seed)
    if len(cells) > args.outside_tiles:
        cells = [cells[i] for i in np.sort(rng.choice(len(cells), args.outside_tiles,
                                                      replace=False))]
    truth = load_truth(edata.truth_json)
    data_range = imaging.dtype_range(lr.dtype)
    scores: dict[str, dict[str, list[float]]] = {m: {"ssim": [], "psnr_db": []}
                                                for m in ("model", "bicubic")}
    for r, c in cells:
        ref = render_truth(truth, (r, c, r + size_lr, c + size_lr), k, blur="hr", region=0)
        for name, img in (("model", sr), ("bicubic", bic)):
            s = score_tile(img[k * r:k * (r + size_lr), k * c:k * (c + size_lr)], ref,
                           data_range=data_range, border=k)
            scores[name]["ssim"].append(s.ssim)
            scores[name]["psnr_db"].append(s.psnr)
    t["score outside"] = time.perf_counter() - t0

    rows = {}
    for name in ("model", "bicubic"):
        est = record.estimate[name]["vs_truth"]
        inr = in_region[name]["vs_truth"]
        rows[name] = {}
        for key in ("ssim", "psnr_db"):
            outside = float(np.median(scores[name][key]))
            lo, hi = est[key]["ci95"]
            rows[name][key] = {
                "outside_truth": outside, "crossval_median": est[key]["median"],
                "crossval_ci95": [lo, hi], "contains": bool(lo <= outside <= hi),
                "in_region_median": inr[key]["median"], "in_region_ci95": inr[key]["ci95"],
            }
    return {"timings_s": t, "outside_tiles": len(cells), "outside_cells_total": len(grid_cells(mask, size_lr)),
            "crossval_tiles": sum(len(f.metrics["model"]["ssim"]["per_tile"]) for f in record.folds),
            "in_region_tiles": len(ev.tiles), "rows": rows, "scheme": record.scheme}


def shale(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import bench_real_shale as brs
    from degrade import SEMDegradation

    from dleem import imaging
    from dleem.evaluation import pores
    from dleem.models import load_model
    from dleem.training import TrainOptions, train
    from dleem.upscale import upscale_array

    t0 = time.perf_counter()
    params = SEMDegradation(scale=brs.SCALE, hr_pixel_size_um=brs.HR_PIXEL_SIZE_UM)
    data = brs.prepare(out, args.data_dir, params)
    model_dir = out / "model"
    train(data["workspace"], model_dir, TrainOptions(steps=args.steps, preset=args.preset,
                                                     loss="mae", device="cpu", seed=args.seed,
                                                     force=True, checkpoint_every=0))
    train_s = time.perf_counter() - t0
    model = load_model(model_dir)
    k = model.scale
    lr, hr = data["test_lr"], data["test_hr"].astype(np.float64)
    images = {"model": np.asarray(upscale_array(lr, model, tile=256, device="cpu")),
              "bicubic": imaging.bicubic_upsample(lr, k)}
    threshold = pores.choose_threshold(hr[::4, ::4], "otsu")
    ref = pores.segment(hr, threshold)
    h, w = hr.shape
    matches: dict[str, list] = {m: [] for m in images}
    for r in range(0, h - TILE_SIZE + 1, TILE_SIZE):
        for c in range(0, w - TILE_SIZE + 1, TILE_SIZE):
            sl = (slice(r, r + TILE_SIZE), slice(c, c + TILE_SIZE))
            for name, img in images.items():
                matches[name].append(pores.match_pores(pores.segment(img[sl], threshold),
                                                       ref[sl]))
    return {"train_s": train_s, "threshold": threshold, "tiles": len(matches["model"]),
            "summary": {m: pores.match_summary(v, k) for m, v in matches.items()}}


def _f(x: float | None, spec: str = ".4f") -> str:
    return "–" if x is None else format(x, spec)


def markdown(res: dict[str, Any], args: argparse.Namespace, load: tuple, load1: tuple) -> str:
    lines = [
        "# Cross-validation against the truth outside the HR regions; pore recall on shale",
        "",
        f"Command: `python benchmarks/bench_crossval_truth.py --steps {args.steps} --preset "
        f"{args.preset}` ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"no GPU, load average {load[0]:.1f} before, {load1[0]:.1f} after: the machine was "
        "shared). Every model (each fold's and the final one) trains "
        f"{args.steps} steps of the `{args.preset}` preset, MAE + adversarial.",
    ]
    syn = res.get("synthetic")
    if syn:
        lines += [
            "",
            f"## Synthetic: LR {args.lr_size} px, 3 HR regions of {args.hr_size} px (seed "
            f"{args.seed})",
            "",
            f"Crossval ({syn['scheme']}) scored {syn['crossval_tiles']} held-out tiles; the "
            f"final model (all regions) scored {syn['outside_tiles']} of the "
            f"{syn['outside_cells_total']} grid tiles outside the HR regions against the truth, "
            f"and {syn['in_region_tiles']} in-region test tiles. Median [95 % interval].",
            "",
            "| method | metric | outside the HR regions (truth) | crossval estimate vs truth | "
            "contains? | in-region test areas vs truth |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in syn["rows"].items():
            for key, v in row.items():
                spec = ".4f" if key == "ssim" else ".2f"
                ci, ir = v["crossval_ci95"], v["in_region_ci95"] or [None, None]
                lines.append(
                    f"| {name} | {key} | {_f(v['outside_truth'], spec)} | "
                    f"{_f(v['crossval_median'], spec)} [{_f(ci[0], spec)}, {_f(ci[1], spec)}] | "
                    f"**{'yes' if v['contains'] else 'no'}** | {_f(v['in_region_median'], spec)} "
                    f"[{_f(ir[0], spec)}, {_f(ir[1], spec)}] |")
        lines += ["", "Step times (s): " + ", ".join(f"{k} {v:.0f}"
                                                    for k, v in syn["timings_s"].items())]
    sh = res.get("shale")
    if sh:
        classes = next(iter(sh["summary"].values()))["pore_recall_by_size"]
        head = [f"{c['min_lr_px']:g}–{c['max_lr_px']:g}" if c["max_lr_px"] is not None
                else f"≥ {c['min_lr_px']:g}" for c in classes]
        lines += [
            "",
            "## Real shale: recall of the HR pores of slice 016 by equivalent diameter (LR px)",
            "",
            f"Slice 003 trains, slice 016 tests (LR by `benchmarks/degrade.py`, k = 4); {sh['tiles']} "
            f"grid tiles of {TILE_SIZE} px; Otsu threshold {sh['threshold']:.1f} on HR; pores "
            "≥ 4 px, 8-connected, edge pores left out; training took "
            f"{sh['train_s']:.0f} s.",
            "",
            "| method | " + " | ".join(head) + " | precision | recall | merges | splits | resolved (LR px) |",
            "| --- " * (len(head) + 6) + "|",
        ]
        for name, s in sh["summary"].items():
            cells = [f"{_f(c['recall'], '.2f')} (n={c['n']})" for c in s["pore_recall_by_size"]]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_f(s['pore_precision'], '.2f')} | "
                         f"{_f(s['pore_recall'], '.2f')} | {s['pore_merges']} | {s['pore_splits']} | "
                         f"{_f(s['resolved_pore_size_lr_px'], 'g')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr-size", type=int, default=1024)
    ap.add_argument("--hr-size", type=int, default=1024)
    ap.add_argument("--outside-tiles", type=int, default=300)
    ap.add_argument("--skip-shale", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "benchmarks" / "out" / "crossval_truth")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "crossval.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    res: dict[str, Any] = {}
    if not args.skip_synthetic:
        res["synthetic"] = synthetic(args, args.out / "synthetic")
    if not args.skip_shale:
        res["shale"] = shale(args, args.out / "shale")
    load1 = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    text = markdown(res, args, load, load1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
