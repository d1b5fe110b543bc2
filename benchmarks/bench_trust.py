"""The trust map and the planner on a map of two materials, HR regions in one only.

Parts (``--parts``, default all; each rewrites its own section of
benchmarks/results/trust.md):

- ``experiment``: two `dleem.synth` specimens with very different parameters side by
  side (left: the default sandstone, seen; right: a fine-grained, clay- and cement-rich
  one, unseen), the same LR acquisition; HR regions in the left one only. Through the
  CLI: register, train, upscale --trust, plan. Then, against the exact truth: ROC AUC of
  the predicted RMSE (and of its parts: novelty alone, consistency alone) separating
  unseen from seen blocks; Spearman of predicted vs measured RMSE across all blocks;
  whether the planner's first proposal lies in the unseen material; SSIM on the unseen
  side after adding one HR region where the planner says vs at a random place in the
  seen material, retrained with the same budget.
- ``overhead``: CPU upscale time of a 2048² LR with the default preset, three runs
  without and three with --trust, interleaved.
- ``memory``: peak RSS of an 8192² upscale with --trust, tiny preset, as in
  bench_upscale_memory.py.

Run: ``python benchmarks/bench_trust.py [--parts experiment overhead memory] [--steps N]``
(2 shared cores: about 10, 10 and 5 minutes). Outputs in benchmarks/out/trust/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "trust"
RESULTS = ROOT / "results" / "trust.md"
SIDE = 384  # LR px per material
UNSEEN = {"grain_size_um": 14.0, "grain_size_sigma": 0.6, "clay_fill": 0.6, "cement_fill": 0.35,
          "clay_coat_um": 3.0, "texture": 3.0, "silt_fraction": 0.15}


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


sys.path.insert(0, str(ROOT))
import results_md  # noqa: E402


def update_section(key: str, text: str) -> None:
    """Rewrite this benchmark's block ``key`` of its results file."""
    results_md.update_section(RESULTS, key, text, "Trust map and planner benchmarks")


def cli(*args: str) -> None:
    from dleem.cli import main

    rc = main([str(a) for a in args])
    if rc != 0:
        raise SystemExit(f"dleem {' '.join(map(str, args))} failed with {rc}")


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive block scores above a negative one (ties count half)."""
    from scipy.stats import rankdata

    r = rankdata(score)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# -- the two-material map -----------------------------------------------------------------------
def make_map(out: Path) -> dict:
    import tifffile

    from dleem.io import write_image
    from dleem.synth import SpecimenParams, generate

    seen = generate(None, seed=11, lr_size=SIDE, hr_size=512, regions=2)
    unseen = generate(None, seed=12, lr_size=SIDE, hr_size=512, regions=1, specimen=SpecimenParams(**UNSEEN))
    out.mkdir(parents=True, exist_ok=True)
    lr = np.concatenate([seen.lr, unseen.lr], axis=1)
    px = seen.truth["lr_pixel_size_um"]
    write_image(out / "LR.tif", lr, pixel_size_um=px)
    for i, hr in enumerate(seen.hr, 1):
        write_image(out / f"HR_{i}.tif", hr, pixel_size_um=seen.truth["hr_pixel_size_um"])
    (out / "truth_seen.json").write_text(json.dumps(seen.truth))
    (out / "truth_unseen.json").write_text(json.dumps(unseen.truth))
    tifffile.imwrite(out / "LR_preview.tif", lr)
    return {"seen": seen.truth, "unseen": unseen.truth, "px": px}


def truth_fine(truths: dict, k: int) -> np.ndarray:
    """The specimen as the HR beam sees it, on the fine grid of the whole map (LR grey levels)."""
    import math

    from dleem.synth import render_truth

    reg = truths["seen"]["regions"][0]
    p_hr = truths["seen"]["lr_pixel_size_um"] * math.sqrt(abs(np.linalg.det(np.array(reg["hr_to_lr"])[:, :2])))
    blur_um = reg["blur_sigma_px"] * p_hr
    left = render_truth(truths["seen"], (0, 0, SIDE, SIDE), k, blur=blur_um)
    right = render_truth(truths["unseen"], (0, 0, SIDE, SIDE), k, blur=blur_um)
    return np.concatenate([left, right], axis=1)


def sr_array(path: Path) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path, level=0))


def workspace_run(data: Path, ws: Path, hrs: list[Path], steps: int, name: str) -> tuple[Path, Path, Path]:
    if ws.exists():
        shutil.rmtree(ws)
    cli("register", data / "LR.tif", *hrs, "-o", ws, "--keep-going")
    model = ws / "models" / name
    cli("train", ws, "-o", model, "--steps", steps, "--preset", "tiny", "--device", "cpu")
    up = ws / "upscale"
    cli("upscale", data / "LR.tif", "--model", model, "-o", up / "SR.ome.tif", "--trust", up / "TRUST.tif",
        "--tile", 128, "--device", "cpu")
    return model, up / "SR.ome.tif", up / "TRUST.tif"


def block_rmse(sr: np.ndarray, truth: np.ndarray, k: int, b: int) -> np.ndarray:
    from dleem.trust.blocks import block_means

    err2 = (sr.astype(np.float64) - truth) ** 2
    lr_err2 = err2.reshape(err2.shape[0] // k, k, err2.shape[1] // k, k).mean(axis=(1, 3))
    return np.sqrt(block_means(lr_err2, b))


def ssim_unseen(sr: np.ndarray, truth: np.ndarray, k: int) -> float:
    from dleem.evaluation.metrics import score_tile

    c = k * SIDE
    return float(score_tile(sr[:, c:].astype(np.float64), truth[:, c:].astype(np.float64), data_range=255.0,
                            border=8).ssim)


def experiment(steps: int) -> str:
    from scipy.stats import spearmanr

    from dleem.synth import acquire_region
    from dleem.trust.folder import read_model_trust
    from dleem.upscale.trust import TrustJob, compute_blocks

    t0 = time.perf_counter()
    data = OUT / "map"
    truths = make_map(data)
    hrs = [data / "HR_1.tif", data / "HR_2.tif"]
    model, sr_path, trust_path = workspace_run(data, OUT / "ws", hrs, steps, "base")
    ws = OUT / "ws"
    cli("plan", ws, "--trust", trust_path, "-n", 3)
    plan = json.loads((ws / "plan" / "plan.json").read_text())
    info = json.loads(trust_path.with_suffix(".json").read_text())
    k, b = 4, info["block_size_lr_px"]
    sr = sr_array(sr_path)
    truth = truth_fine(truths, k)
    import tifffile

    planes = tifffile.imread(trust_path)
    lr = tifffile.imread(data / "LR.tif")
    job = TrustJob(path=trust_path, model_dir=model, model=read_model_trust(model))
    cfg = json.loads((model / "config.json").read_text())
    parts = compute_blocks(job, sr, lr, scale=k, sigma_lr_px=float(cfg.get("lr_blur_sigma_px") or 0.0), tile=128)
    measured = block_rmse(sr, truth, k, b)
    cols = np.arange(planes.shape[2])[None, :].repeat(planes.shape[1], 0)
    unseen = cols * b >= SIDE
    aucs = {"predicted RMSE (plane 0)": roc_auc(planes[0].ravel(), unseen.ravel()),
            "novelty alone": roc_auc(parts["novelty"].ravel(), unseen.ravel()),
            "consistency chi alone": roc_auc(parts["chi"].ravel(), unseen.ravel()),
            "unsupported flag (plane 1 = 0)": roc_auc(1 - planes[1].ravel(), unseen.ravel())}
    rho = float(spearmanr(planes[0].ravel(), measured.ravel()).statistic)
    rho_seen = float(spearmanr(planes[0][~unseen], measured[~unseen]).statistic)
    first = plan["regions"][0]
    first_unseen = first["lr_box"][1] >= SIDE
    centre_unseen = first["center_lr"][1] >= SIDE

    # add one region where the planner says vs at a random place in the seen material
    r0, c0, r1, c1 = first["lr_box"]
    side = r1 - r0
    truth_for = truths["unseen"] if c0 >= SIDE else truths["seen"]
    shift = SIDE if c0 >= SIDE else 0
    hr_plan, _ = acquire_region(truth_for, (r0, c0 - shift, r1, c1 - shift), seed=1)
    reg = json.loads((ws / "registration.json").read_text())
    taken = [r["lr_box"] for r in reg["regions"] if r.get("lr_box")]
    rng = np.random.default_rng(5)
    for _ in range(1000):
        rr, cc = int(rng.integers(0, SIDE - side)), int(rng.integers(0, SIDE - side))
        box = (rr, cc, rr + side, cc + side)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            break
    hr_random, _ = acquire_region(truths["seen"], box, seed=2)
    from dleem.io import write_image

    px_hr = truths["seen"]["hr_pixel_size_um"]
    write_image(data / "HR_plan.tif", hr_plan, pixel_size_um=px_hr)
    write_image(data / "HR_random.tif", hr_random, pixel_size_um=px_hr)
    ssim = {"base (2 regions, seen only)": ssim_unseen(sr, truth, k)}
    supported = {"base (2 regions, seen only)": info["supported_fraction"]}
    for label, hr in (("+1 where the planner says", data / "HR_plan.tif"),
                      ("+1 at a random place in the seen material", data / "HR_random.tif")):
        wsx = OUT / ("ws_plan" if "planner" in label else "ws_random")
        _, srx, trx = workspace_run(data, wsx, hrs + [hr], steps, "m")
        ssim[label] = ssim_unseen(sr_array(srx), truth, k)
        supported[label] = json.loads(trx.with_suffix(".json").read_text())["supported_fraction"]
    from dleem.imaging import bicubic_upsample

    bic = bicubic_upsample(lr, k, out_dtype=np.float32)
    ssim_bicubic = ssim_unseen(bic, truth, k)
    wall = time.perf_counter() - t0
    cal = info["calibration"]
    lines = [
        f"### Two materials, HR in one, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python benchmarks/bench_trust.py --parts experiment --steps {steps}`  ",
        f"Load average at the end (shared 2-core machine): {load()}; wall {wall / 60:.1f} min.",
        "",
        f"Map: LR {SIDE} x {2 * SIDE} px (0.5 µm, 8-bit, ratio 4): left the default `dleem.synth` sandstone "
        f"(seed 11, two 512² HR regions), right `SpecimenParams({', '.join(f'{k_}={v}' for k_, v in UNSEEN.items())})` "
        f"(seed 12, no HR). Model: `tiny` preset, {steps} steps, default losses; upscale tile 128, block "
        f"{b} LR px ({planes.shape[1]} x {planes.shape[2]} blocks, right half unseen). Truth: the specimen "
        "through the HR beam on the fine grid (`render_truth`).",
        "",
        "| score | ROC AUC unseen vs seen blocks | target |",
        "|---|---|---|",
        *[f"| {name} | {v:.3f} | {'>= 0.9' if 'plane 0' in name else ''} |" for name, v in aucs.items()],
        "",
        f"- Spearman, predicted vs measured RMSE against the truth, all {measured.size} blocks: **{rho:.3f}** "
        f"(target >= 0.6); seen blocks only: {rho_seen:.3f}.",
        f"- Calibration on held-out test blocks (leave-one-out): Spearman {cal.get('spearman')}, median "
        f"|error| {cal.get('median_abs_error_gl')} grey levels, {cal.get('n_blocks')} blocks.",
        f"- Supported fraction (by area): {info['supported_fraction']:.3f}; LR noise model "
        f"a = {info['noise_model']['a']:.2f}, b = {info['noise_model']['b']:.3f} ({info['noise_model']['source']}).",
        f"- Planner's first proposal: LR box {first['lr_box']}, centre (row, col) {first['center_lr']}: "
        f"**{'in the unseen material' if first_unseen else ('centre in the unseen material' if centre_unseen else 'in the seen material')}**; "
        f"covers {100 * first['covers_unsupported_fraction']:.0f} % unsupported; curve "
        f"{[round(c['predicted_supported_fraction'], 3) for c in plan['curve']]}.",
        "",
        "| HR regions | SSIM vs truth, unseen side | supported fraction |",
        "|---|---|---|",
        *[f"| {label} | {ssim[label]:.4f} | {supported[label]:.3f} |" for label in ssim],
        f"| bicubic (no model) | {ssim_bicubic:.4f} | - |",
        "",
        f"Random seen-material box: {list(box)}; planner box: {first['lr_box']}. Same budget ({steps} steps) "
        "for every training.",
    ]
    return "\n".join(lines)


# -- overhead and memory --------------------------------------------------------------------------
def models_2048(steps: int = 10) -> tuple[Path, dict[str, Path]]:
    """A 2048² synthetic workspace and two models (timing only: a few steps suffice)."""
    data = OUT / "big"
    if not (data / "LR.tif").exists():
        cli("synth", "-o", data, "--size", 2048, "--regions", 2, "--hr-size", 1024, "--seed", 21)
    ws = OUT / "big_ws"
    if not (ws / "registration.json").exists():
        cli("register", data / "LR.tif", data / "HR_1.tif", data / "HR_2.tif", "-o", ws)
    models = {}
    for preset in ("default", "tiny"):
        m = ws / "models" / preset
        if not (m / "trust.json").exists():
            cli("train", ws, "-o", m, "--steps", steps, "--preset", preset, "--device", "cpu", "--force")
        models[preset] = m
    return data / "LR.tif", models


def overhead(steps: int) -> str:
    lr, models = models_2048()
    times: dict[str, list[float]] = {"without": [], "with": []}
    for run in range(3):
        for mode in ("without", "with"):
            out = OUT / "overhead" / f"{mode}{run}"
            shutil.rmtree(out, ignore_errors=True)
            args = ["upscale", lr, "--model", models["default"], "-o", out / "SR.ome.tif", "--device", "cpu"]
            if mode == "with":
                args += ["--trust", out / "TRUST.tif"]
            t = time.perf_counter()
            cli(*args)
            times[mode].append(time.perf_counter() - t)
            shutil.rmtree(out, ignore_errors=True)
    w, wo = np.median(times["with"]), np.median(times["without"])
    return "\n".join([
        f"### --trust overhead, CPU, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "Command: `python benchmarks/bench_trust.py --parts overhead`  ",
        f"Load average at the end (shared 2-core machine): {load()}",
        "",
        "2048² LR (8-bit synthetic sandstone), `default` preset, 4x, tile 256, batch 4, `dleem upscale` "
        "in-process, runs interleaved (without, with, without, ...).",
        "",
        "| | run 1 (s) | run 2 (s) | run 3 (s) | median (s) |",
        "|---|---|---|---|---|",
        *[f"| {mode} --trust | " + " | ".join(f"{t:.1f}" for t in times[mode]) + f" | {np.median(times[mode]):.1f} |"
          for mode in ("without", "with")],
        "",
        f"Overhead of --trust (medians): **{100 * (w / wo - 1):+.1f} %** (target < 25 %).",
    ])


CHILD = r"""
import json, sys, time
from dleem.upscale import upscale_file
t0 = time.perf_counter()
upscale_file(sys.argv[1], sys.argv[2], sys.argv[3], tile=256, batch=4, device="cpu", trust_path=sys.argv[4])
wall = time.perf_counter() - t0
status = open("/proc/self/status").read()
print(json.dumps({"wall_s": wall, "peak_rss_mib": int(status.split("VmHWM:")[1].split()[0]) / 1024}))
"""


def memory(steps: int, side: int = 8192) -> str:
    from bench_upscale_memory import make_input

    _, models = models_2048()
    (ROOT / "out" / "upscale").mkdir(parents=True, exist_ok=True)
    lr = make_input(ROOT / "out" / "upscale" / f"lr_{side}.tif", side)
    out = OUT / "memory"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = subprocess.run([sys.executable, "-c", CHILD, str(lr), str(models["tiny"]), str(out / "SR.ome.tif"),
                          str(out / "TRUST.tif")], capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return "\n".join([
        f"### Memory with --trust, CPU, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "Command: `python benchmarks/bench_trust.py --parts memory`  ",
        f"Load average at the end (shared 2-core machine): {load()}",
        "",
        f"{side}² LR (bench_upscale_memory.py's tiled 8-bit input), `tiny` preset, 4x, tile 256, batch 4, "
        "pyramidal OME-TIFF + TRUST.tif, fresh process.",
        "",
        f"Peak RSS: **{r['peak_rss_mib']:.0f} MiB** (target < 2 GB); wall {r['wall_s'] / 60:.1f} min.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["experiment", "overhead", "memory"],
                    choices=["experiment", "overhead", "memory"])
    ap.add_argument("--steps", type=int, default=300, help="training steps of every model (default 300)")
    args = ap.parse_args()
    for part in args.parts:
        text = {"experiment": experiment, "overhead": overhead, "memory": memory}[part](args.steps)
        update_section(part, text)
        print(text)


if __name__ == "__main__":
    main()
