"""Real-texture benchmark: dleem vs SRGAN's and EDSR-baseline's generators on real shale, CPU.

What it measures ("Real texture" and "Pores", CPU-only variant):

- Data: two real FIB-SEM slices of the same shale (``../shared/data/real``). Slice 003 is
  the HR truth of training: `degrade.py` simulates its LR scan (beam blur, k x k area
  sampling, shot and read noise, 8 bit) and `dleem.pairs.make_pairs` writes the pairs
  (one region, train / validation boxes) that `dleem train` reads. Slice 016 (about 13
  slices deeper, never trained on) is degraded with another noise seed and is the test.
- Training: every generator is trained by `dleem.training.train` (same L1 loss, data,
  crops, batch, AdamW and cosine schedule, EMA, and the same wall-clock budget); the
  anchors go in through its ``generator=`` argument. Each run is repeated with two seeds.
- Curves: the EMA weights of every checkpoint are scored on a centre crop of slice 016
  (PSNR / SSIM of `dleem.evaluation.metrics`, 8-bit output, shave k), against the
  training time at which the checkpoint was written.
- Time to quality: when each dleem run first reaches the best anchor's final PSNR.
- Inference: median time of a 512 x 512 LR forward pass per generator (CPU, 2 threads).
- Pores: dleem pixel-only vs dleem GAN on the whole slice 016, with `dleem.evaluation.pores`
  (threshold chosen on HR, 8-connectivity, >= 4 px, pores touching the edge not sized).

Run ``python benchmarks/bench_real_shale.py --help``; results go to
``benchmarks/out/real_shale/`` (results.json, summary.md, model folders).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anchors import build_anchor, count_parameters  # noqa: E402
from degrade import SEMDegradation, degrade  # noqa: E402

log = logging.getLogger("bench_real_shale")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real"
TRAIN_FILE, TEST_FILE = "shale_fibsem_slice003.png", "shale_fibsem_slice016.png"
SCALE = 4
#: Assumed: the files carry no pixel size. 10 nm is typical of FIB-SEM of shale organic
#: pores (the pores here are 5-30 px across, i.e. 50-300 nm).
HR_PIXEL_SIZE_UM = 0.01
NOISE_SEEDS = {"train": 3, "test": 16}

#: Generators of the benchmark: how to build them and the adversarial weight (None: the
#: trainer's GAN recipe).
MODELS: dict[str, dict[str, Any]] = {
    "dleem-pixel": {"kind": "dleem", "preset": "default", "adv_weight": 0.0},
    "dleem-gan": {"kind": "dleem", "preset": "default", "adv_weight": None},
    "dleem-cpu-pixel": {"kind": "dleem", "preset": "cpu", "adv_weight": 0.0},
    "srgan": {"kind": "anchor", "name": "srgan", "adv_weight": 0.0},
    "edsr": {"kind": "anchor", "name": "edsr", "adv_weight": 0.0},
}
ANCHOR_NAMES = ("srgan", "edsr")


# ----------------------------------------------------------------------------- data


def hr_to_lr_matrix(scale: int) -> list[list[float]]:
    """HR px -> LR px for exact k x k area sampling: LR pixel i covers HR k*i .. k*i+k-1."""
    s = 1.0 / scale
    t = 0.5 / scale - 0.5
    return [[s, 0.0, t], [0.0, s, t]]


def prepare(out: Path, data_dir: Path, params: SEMDegradation) -> dict[str, Any]:
    """Degrade both slices, write the training workspace (pairs) and the test arrays."""
    from dleem.io import read_image, sha256_file, write_image
    from dleem.io.atomic import write_json
    from dleem.pairs import RegionPair, make_pairs
    from dleem.registration import AffineMap

    k = params.scale
    images = {}
    for split, name in (("train", TRAIN_FILE), ("test", TEST_FILE)):
        hr = np.asarray(read_image(data_dir / name).data)
        h, w = (hr.shape[0] // k) * k, (hr.shape[1] // k) * k
        hr = hr[:h, :w]
        images[split] = (hr, degrade(hr, params, seed=NOISE_SEEDS[split]))
    ws = out / "workspace"
    hr, lr = images["train"]
    lr_path = write_image(ws / "LR.tif", lr, pixel_size_um=params.lr_pixel_size_um)
    hr_path = write_image(ws / "HR_1.tif", hr, pixel_size_um=params.hr_pixel_size_um)
    region = RegionPair(
        id="HR_1", hr=hr, hr_to_lr=AffineMap(hr_to_lr_matrix(k)), hr_file=str(hr_path.resolve()),
        hr_sha256=sha256_file(hr_path), hr_pixel_size_um=params.hr_pixel_size_um, ratio=float(k),
    )
    # The manifest's test box on slice 003 is left unused: the test is slice 016.
    manifest = make_pairs(
        lr, [region], ws, scale=k, lr_file=str(lr_path.resolve()),
        lr_sha256=sha256_file(lr_path), lr_pixel_size_um=params.lr_pixel_size_um,
        lr_blur_sigma_px=params.beam_sigma_lr_px, fractions=(0.85, 0.10, 0.05), guard=8, seed=0,
    )
    hr_t, lr_t = images["test"]
    write_image(out / "test" / "LR_016.tif", lr_t, pixel_size_um=params.lr_pixel_size_um)
    write_json(ws / "degradation.json", {
        "train": {"hr": TRAIN_FILE, "noise_seed": NOISE_SEEDS["train"]},
        "test": {"hr": TEST_FILE, "noise_seed": NOISE_SEEDS["test"]},
        "params": params.to_dict(), "hr_pixel_size_assumed": True,
    })
    return {"workspace": ws, "manifest": manifest, "test_hr": hr_t, "test_lr": lr_t}


# ----------------------------------------------------------------------------- models


def build(name: str) -> torch.nn.Module:
    """A fresh generator of the benchmark by name."""
    spec = MODELS[name]
    if spec["kind"] == "anchor":
        return build_anchor(spec["name"], scale=SCALE)
    from dleem.models import build_generator

    return build_generator(preset=spec["preset"], scale=SCALE)


def arch_key(name: str) -> str:
    """Models that share an architecture (inference timing is per architecture)."""
    spec = MODELS[name]
    return spec["name"] if spec["kind"] == "anchor" else f"dleem-{spec['preset']}"


def step_seconds(name: str, batch: int, patch: int, repeats: int = 3) -> float:
    """Seconds of one training step (forward, backward, update) on random data."""
    net = build(name)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, patch, patch)
    y = torch.randn(batch, 1, SCALE * patch, SCALE * patch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        loss = (net(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return min(times[1:] or times)


# ----------------------------------------------------------------------------- scoring


class Scorer:
    """Runs a generator on an LR window of slice 016 and scores it against the HR truth.

    The window gets `margin` LR px of real context (reflected at the image edge), as a
    tiled upscale would, so every generator sees its whole receptive field.
    """

    def __init__(self, lr: np.ndarray, hr: np.ndarray, normalization: dict[str, float],
                 box: tuple[int, int, int, int], margin: int) -> None:
        r0, c0, r1, c1 = box
        self.box = box
        self.norm = normalization
        padded = np.pad(lr.astype(np.float32), margin, mode="reflect")
        window = padded[r0:r1 + 2 * margin, c0:c1 + 2 * margin]
        dmax, mean, std = (normalization[k] for k in ("dtype_max", "mean", "std"))
        self.x = torch.from_numpy((window / dmax - mean) / std)[None, None]
        self.margin = margin
        self.hr = hr[SCALE * r0:SCALE * r1, SCALE * c0:SCALE * c1]

    @torch.no_grad()
    def predict(self, net: torch.nn.Module) -> np.ndarray:
        net.eval()
        y = net(self.x)[0, 0].numpy()
        m = SCALE * self.margin
        y = y[m:y.shape[0] - m, m:y.shape[1] - m]
        raw = (y * self.norm["std"] + self.norm["mean"]) * self.norm["dtype_max"]
        return np.clip(np.rint(raw), 0, 255).astype(np.uint8)

    def score(self, sr: np.ndarray) -> dict[str, float]:
        from dleem.evaluation.metrics import psnr, shave, ssim

        p, r = shave(sr, SCALE), shave(self.hr, SCALE)
        return {"psnr_db": psnr(p, r, 255.0), "ssim": ssim(p, r, 255.0)}

    def bicubic(self, lr: np.ndarray) -> np.ndarray:
        from dleem.imaging import BICUBIC_HALO_LR_PX, bicubic_upsample

        r0, c0, r1, c1 = self.box
        h = BICUBIC_HALO_LR_PX
        padded = np.pad(lr, h, mode="edge")
        up = bicubic_upsample(padded[r0:r1 + 2 * h, c0:c1 + 2 * h], SCALE)
        return up[SCALE * h:-SCALE * h, SCALE * h:-SCALE * h]


def load_checkpoint_ema(name: str, path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The EMA generator stored in a trainer checkpoint, plus step and elapsed time."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = build(name)
    net.load_state_dict(state["ema"]["module"])
    return net.eval(), {"step": int(state["step"]), "elapsed_s": float(state["elapsed_s"])}


def pore_report(images: dict[str, np.ndarray], hr_key: str = "HR") -> dict[str, Any]:
    """Porosity, pore count and equivalent-diameter distance to HR for every image.

    Two thresholds, both chosen on HR and applied to all: Otsu (2 classes; on this shale it
    separates the dark phase, organic matter with its pores, from the minerals), and the
    lower threshold of a 3-class multi-Otsu (the pores inside the organic matter).
    """
    from skimage.filters import threshold_multiotsu

    from dleem.evaluation import pores

    hr = images[hr_key]
    thresholds = {
        "otsu": pores.choose_threshold(hr, "otsu"),
        "multiotsu_low": float(threshold_multiotsu(hr, classes=3)[0]),
    }
    px = HR_PIXEL_SIZE_UM
    out: dict[str, Any] = {}
    for tname, t in thresholds.items():
        ref = pores.pore_stats(pores.segment(hr, t), px, connectivity=8, min_area_px=4)
        rows = {}
        for key, img in images.items():
            st = pores.pore_stats(pores.segment(img, t), px, connectivity=8, min_area_px=4)
            dist = pores.distribution_distances(st.diameters_um, ref.diameters_um)
            rows[key] = {
                "porosity": st.porosity, "count": st.count, "count_ratio": st.count / max(ref.count, 1),
                "median_diameter_um": float(np.median(st.diameters_um)) if st.count else None,
                "wasserstein_um": dist.wasserstein, "ks": dist.ks_statistic,
            }
        out[tname] = {"threshold": t, "rows": rows}
    return out


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def inference_seconds(name: str, size: int, repeats: int) -> dict[str, Any]:
    """Median wall time of one forward pass on a size x size LR input (after a warm-up)."""
    net = build(name).eval()
    net(torch.randn(1, 1, 64, 64))
    x = torch.randn(1, 1, size, size)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "times_s": times,
            "params": count_parameters(net)}


def upscale_seconds(model_dir: Path, lr: np.ndarray, repeats: int) -> dict[str, Any]:
    """Median wall time of `dleem.upscale.upscale_array` (tiled, halo, 8-bit in and out)."""
    from dleem.models import load_model
    from dleem.upscale import upscale_array

    model = load_model(model_dir, device="cpu")
    upscale_array(lr[:64, :64], model, tile=64, device="cpu")
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        upscale_array(lr, model, tile=256, device="cpu")
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "times_s": times,
            "params": sum(p.numel() for p in model.generator.parameters())}


def pores_from_models(out: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Whole-slice scores and pores from the saved model folders (final EMA weights)."""
    import tifffile

    from dleem.models import load_model
    from dleem.workspace import Workspace

    stats = Workspace(out / "workspace").read_pairs().lr_stats
    norm = {"dtype_max": 255.0, "mean": stats.mean / 255.0, "std": stats.std / 255.0}
    from dleem.io import read_image

    data_dir = Path(results["args"]["data_dir"])
    hr = np.asarray(read_image(data_dir / TEST_FILE).data)
    lr = tifffile.imread(out / "test" / "LR_016.tif")
    hr = hr[:SCALE * lr.shape[0], :SCALE * lr.shape[1]]
    whole = Scorer(lr, hr, norm, (0, 0, *lr.shape), 41)
    images = {"HR": whole.hr, "bicubic": whole.bicubic(lr)}
    for run in results["runs"]:
        mdir = out / "models" / f"{run['model']}_s{run['seed']}"
        if MODELS[run["model"]]["kind"] == "dleem" and (mdir / "generator.safetensors").exists():
            sr = whole.predict(load_model(mdir).generator)
            images[f"{run['model']}_s{run['seed']}"] = sr
            run["whole"] = whole.score(sr)
    return {"bicubic_whole": whole.score(images["bicubic"]), "pores": pore_report(images)}


# ----------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version()}


def reach_time(curve: list[dict[str, float]], target: float) -> float | None:
    """First training time at which a PSNR curve reaches `target` (linear between points)."""
    prev = None
    for p in curve:
        if p["psnr_db"] >= target:
            if prev is None:
                return p["elapsed_s"]
            f = (target - prev["psnr_db"]) / (p["psnr_db"] - prev["psnr_db"])
            return prev["elapsed_s"] + f * (p["elapsed_s"] - prev["elapsed_s"])
        prev = p
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, default=120.0, help="wall-clock training budget per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=32, help="LR patch side (px)")
    p.add_argument("--checkpoints", type=int, default=10, help="about this many points per dleem curve")
    p.add_argument("--anchor-checkpoints", type=int, default=6,
                   help="points per anchor curve (each costs a slow evaluation)")
    p.add_argument("--crop", type=int, default=192, help="LR side of the slice-016 centre crop")
    p.add_argument("--infer-size", type=int, default=512)
    p.add_argument("--infer-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "real_shale")
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--from-json", type=Path, help="only rewrite summary.md and curves.png from a results.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    if args.from_json:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))
        if "pores" not in results:  # run cut short after training: score the saved models
            results.update(pores_from_models(args.from_json.parent, results))
        if "inference" not in results and not args.skip_inference:
            timed = {}
            for name in args.models:
                if arch_key(name) not in timed:
                    log.info("inference %s, %d x %d LR", arch_key(name), args.infer_size, args.infer_size)
                    timed[arch_key(name)] = inference_seconds(name, args.infer_size, args.infer_repeats)
            results["inference"] = timed
        results.setdefault("load_end", os.getloadavg())
        results.setdefault("finished_utc", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        _write(args.from_json, results)
        results["summary"] = summarize(results)
        (args.from_json.parent / "summary.md").write_text(markdown(results), encoding="utf-8")
        plot_curves(results, args.from_json.parent / "curves.png")
        return 0
    os.environ.setdefault("DLEEM_NO_PROGRESS", "1")
    from dleem.training import TrainOptions, train

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    params = SEMDegradation(scale=SCALE, hr_pixel_size_um=HR_PIXEL_SIZE_UM)
    data = prepare(out, args.data_dir, params)
    norm_raw = data["manifest"]["lr_stats"]
    norm = {"dtype_max": 255.0, "mean": norm_raw["mean"] / 255.0, "std": norm_raw["std"] / 255.0}
    lr_t, hr_t = data["test_lr"], data["test_hr"]
    h, w = lr_t.shape
    c = args.crop
    r0, c0 = (h - c) // 2, (w - c) // 2
    margin = max(build(n).receptive_field_lr_px for n in args.models) + 1
    crop = Scorer(lr_t, hr_t, norm, (r0, c0, r0 + c, c0 + c), margin)
    whole = Scorer(lr_t, hr_t, norm, (0, 0, h, w), margin)
    bicubic_crop = crop.score(crop.bicubic(lr_t))
    log.info("test crop LR %s at (%d, %d); bicubic %.2f dB / %.4f", c, r0, c0,
             bicubic_crop["psnr_db"], bicubic_crop["ssim"])

    results: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "started_utc": started.isoformat(timespec="seconds"), "machine": machine(),
        "load_start": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()},
        "degradation": params.to_dict(), "hr_pixel_size_um_assumed": HR_PIXEL_SIZE_UM,
        "test_crop_lr": [r0, c0, r0 + c, c0 + c], "bicubic_crop": bicubic_crop, "runs": [],
    }
    final_images: dict[str, np.ndarray] = {"HR": whole.hr, "bicubic": whole.bicubic(lr_t)}
    steps_cache: dict[str, float] = {}
    for name in args.models:
        steps_cache[name] = step_seconds(name, args.batch, args.patch)
    # Seed-major order: a change of machine load hits every generator alike.
    for seed in args.seeds:
        for name in args.models:
            spec = MODELS[name]
            n_ckpt = args.checkpoints if spec["kind"] == "dleem" else args.anchor_checkpoints
            every = max(1, round(args.budget_s / steps_cache[name] / n_ckpt))
            mdir = out / "models" / f"{name}_s{seed}"
            if mdir.exists():
                shutil.rmtree(mdir)
            opts = TrainOptions(
                minutes=args.budget_s / 60.0, preset=spec.get("preset", "default"),
                batch=args.batch, patch=args.patch, loss="mae", seed=seed, device="cpu",
                checkpoint_every=every, keep_checkpoints=0, val_tile=32, val_tiles=2,
                force=True,
                **({"recipe": "gan"} if spec["adv_weight"] is None else {"adv_weight": spec["adv_weight"]}),
            )
            # The trainer seeds torch with `seed` and then builds a dleem generator: the same
            # initial weights as `init` here. Anchors are built here, after the same seeding.
            torch.manual_seed(seed)
            init = build(name)
            gen = copy.deepcopy(init) if spec["kind"] == "anchor" else None
            arch = {"name": spec["name"]} if gen is not None else None
            curve = [{"step": 0, "elapsed_s": 0.0, **crop.score(crop.predict(init))}]
            load0 = os.getloadavg()[0]
            log.info("train %s seed %d (%.0f s, checkpoint every %d steps)", name, seed,
                     args.budget_s, every)
            t = time.perf_counter()
            res = train(data["workspace"], mdir, opts, generator=gen, arch=arch)
            wall = time.perf_counter() - t
            for ck in sorted((mdir / "checkpoints").glob("step_*.pt")):
                net, meta = load_checkpoint_ema(name, ck)
                curve.append({**meta, **crop.score(crop.predict(net))})
            final = curve[-1]
            run = {"model": name, "seed": seed, "steps": res.steps, "elapsed_s": res.elapsed_s,
                   "wall_s": wall, "samples_per_s": res.samples_per_s, "load1_start": load0,
                   "load1_end": os.getloadavg()[0], "checkpoint_every": every,
                   "val_psnr_db_slice003": res.val_psnr_db, "curve": curve,
                   "options": {k: v for k, v in dataclasses.asdict(opts).items()
                               if k in ("lr", "lr_d", "weight_decay", "schedule", "ema_decay",
                                        "adv_weight", "adv_loss", "warmup", "batch", "patch")},
                   "final": {k: final[k] for k in ("psnr_db", "ssim")}}
            if spec["kind"] == "dleem":
                net, _ = load_checkpoint_ema(name, sorted((mdir / "checkpoints").glob("step_*.pt"))[-1])
                sr = whole.predict(net)
                final_images[f"{name}_s{seed}"] = sr
                run["whole"] = whole.score(sr)
            shutil.rmtree(mdir / "checkpoints", ignore_errors=True)
            results["runs"].append(run)
            log.info("  %s s%d: %d steps, crop %.2f dB / %.4f", name, seed, res.steps,
                     final["psnr_db"], final["ssim"])
            _write(out / "results.json", results)

    results["bicubic_whole"] = whole.score(final_images["bicubic"])
    if any(k.startswith("dleem-") for k in final_images):
        results["pores"] = pore_report(final_images)
        _save_pngs(out, final_images, whole)
    if not args.skip_inference:
        timed: dict[str, Any] = {}
        for name in args.models:
            key = arch_key(name)
            if key not in timed:
                log.info("inference %s, %d x %d LR", key, args.infer_size, args.infer_size)
                timed[key] = inference_seconds(name, args.infer_size, args.infer_repeats)
        for name in args.models:
            mdir = out / "models" / f"{name}_s{args.seeds[0]}"
            key = f"{arch_key(name)} via upscale_array (tiles 256, uint8)"
            if MODELS[name]["kind"] == "dleem" and key not in timed and (mdir / "config.json").exists():
                s = args.infer_size
                lr512 = np.pad(lr_t, ((0, max(0, s - h)), (0, max(0, s - w))), mode="reflect")[:s, :s]
                log.info("inference %s", key)
                timed[key] = upscale_seconds(mdir, np.ascontiguousarray(lr512), args.infer_repeats)
        results["inference"] = timed
    results["load_end"] = os.getloadavg()
    results["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["summary"] = summarize(results)
    _write(out / "results.json", results)
    (out / "summary.md").write_text(markdown(results), encoding="utf-8")
    plot_curves(results, out / "curves.png")
    log.info("wrote %s", out / "summary.md")
    return 0


def _write(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default), encoding="utf-8")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def _save_pngs(out: Path, images: dict[str, np.ndarray], whole: Scorer) -> None:
    """A 256 x 256 HR-px window rich in pores, for each image (visual check)."""
    from skimage.io import imsave

    hr = images["HR"].astype(np.float32)
    size = 256
    dark = (hr < np.percentile(hr, 5)).astype(np.float32)
    sums = dark[: hr.shape[0] // size * size, : hr.shape[1] // size * size]
    sums = sums.reshape(hr.shape[0] // size, size, hr.shape[1] // size, size).sum(axis=(1, 3))
    i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    (out / "png").mkdir(exist_ok=True)
    for key, img in images.items():
        imsave(out / "png" / f"{key}.png", img[i * size:(i + 1) * size, j * size:(j + 1) * size],
               check_contrast=False)


def plot_curves(results: dict[str, Any], path: Path) -> None:
    """PSNR on the slice-016 crop against training time, every run (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    colors = {}
    for run in results["runs"]:
        color = colors.setdefault(run["model"], f"C{len(colors)}")
        t = [p["elapsed_s"] for p in run["curve"]]
        ax.plot(t, [p["psnr_db"] for p in run["curve"]], "o-", ms=3, color=color,
                label=run["model"] if run["seed"] == results["runs"][0]["seed"] else None)
    ax.axhline(results["bicubic_crop"]["psnr_db"], color="k", ls="--", lw=1, label="bicubic")
    ax.set_xlabel("training time (s, CPU, 2 threads)")
    ax.set_ylabel("PSNR on slice 016 (dB)")
    lo = results["bicubic_crop"]["psnr_db"] - 3
    ax.set_ylim(bottom=lo)
    ax.legend(fontsize=8)
    ax.set_title("Real shale x4, L1, equal wall-clock budget (2 seeds each)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Equal-budget table, time to the best anchor's PSNR, and the pores targets."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for run in results["runs"]:
        by_model.setdefault(run["model"], []).append(run)
    table = {}
    for name, runs in by_model.items():
        p = [r["final"]["psnr_db"] for r in runs]
        s = [r["final"]["ssim"] for r in runs]
        table[name] = {"psnr_mean": _mean_sd(p)[0], "psnr_sd": _mean_sd(p)[1],
                       "psnr_range": max(p) - min(p), "ssim_mean": _mean_sd(s)[0],
                       "ssim_sd": _mean_sd(s)[1], "ssim_range": max(s) - min(s),
                       "steps_mean": statistics.fmean(r["steps"] for r in runs),
                       "samples_per_s_mean": statistics.fmean(r["samples_per_s"] for r in runs)}
    summary: dict[str, Any] = {"equal_budget": table}
    anchors = [a for a in ANCHOR_NAMES if a in table]
    if anchors:
        best = max(anchors, key=lambda a: table[a]["psnr_mean"])
        target = table[best]["psnr_mean"]
        reach = {}
        for name in by_model:
            if name.startswith("dleem"):
                times = [reach_time(r["curve"], target) for r in by_model[name]]
                reach[name] = times
        summary["time_to_best_anchor"] = {"anchor": best, "target_psnr_db": target,
                                          "budget_s": float(results["args"]["budget_s"]),
                                          "dleem_reach_s": reach}
    pores = results.get("pores")
    if pores and "dleem-pixel" in by_model and "dleem-gan" in by_model:
        checks = {}
        seeds = sorted({r["seed"] for r in by_model["dleem-gan"]} & {r["seed"] for r in by_model["dleem-pixel"]})
        psnr_whole = {r["model"] + f"_s{r['seed']}": r["whole"]["psnr_db"] for r in results["runs"] if "whole" in r}
        for tname, block in pores.items():
            rows = block["rows"]
            per_seed = []
            for s in seeds:
                g, px = rows[f"dleem-gan_s{s}"], rows[f"dleem-pixel_s{s}"]
                ratio_w = (g["wasserstein_um"] / px["wasserstein_um"]
                           if g["wasserstein_um"] is not None and px["wasserstein_um"] else None)
                dpsnr = psnr_whole[f"dleem-pixel_s{s}"] - psnr_whole[f"dleem-gan_s{s}"]
                per_seed.append({
                    "seed": s, "gan_count_ratio": g["count_ratio"], "pixel_count_ratio": px["count_ratio"],
                    "psd_distance_ratio": ratio_w, "psnr_loss_db": dpsnr,
                    "count_ok": 0.85 <= g["count_ratio"] <= 1.15,
                    "psd_ok": ratio_w is not None and ratio_w <= 0.60,
                    "psnr_ok": dpsnr <= 0.30,
                })
            checks[tname] = per_seed
        summary["pores_targets"] = checks
    return summary


def _reach_text(seconds: float | None, budget_s: float) -> str:
    if seconds is None:
        return "not reached"
    if seconds <= 0:
        return "already at initialisation (0 s)"
    return f"{seconds:.0f} s ({budget_s / seconds:.1f}x sooner)"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(results: dict[str, Any]) -> str:
    """The tables of results.json as Markdown (pasted into benchmarks/results/real_shale.md)."""
    s = results["summary"]
    lines = [f"Command: `python benchmarks/{results['command']}`  ",
             f"Started {results['started_utc']}, finished {results.get('finished_utc')}; "
             f"{results['machine']['cpu']}, {results['machine']['cores']} cores, torch "
             f"{results['machine']['torch']}, {results['machine']['threads']} threads; load average "
             f"(1, 5, 15 min) at start {tuple(round(v, 2) for v in results['load_start'])}, at end "
             f"{tuple(round(v, 2) for v in results.get('load_end', (math.nan,) * 3))}.", ""]
    bc = results["bicubic_crop"]
    lines += [f"### Equal budget ({float(results['args']['budget_s']):.0f} s per run), slice-016 "
              f"centre crop {results['test_crop_lr']} (LR px)", "",
              "| generator | params | steps | samples/s | PSNR dB (mean ± sd; range) | SSIM (mean ± sd; range) |",
              "|---|---:|---:|---:|---:|---:|",
              f"| bicubic | 0 | - | - | {bc['psnr_db']:.2f} | {bc['ssim']:.4f} |"]
    inf = results.get("inference", {})
    for name, t in s["equal_budget"].items():
        n_par = inf.get(arch_key(name), {}).get("params") or count_parameters(build(name))
        lines.append(f"| {name} | {n_par:,} | {t['steps_mean']:.0f} | {t['samples_per_s_mean']:.1f} | "
                     f"{t['psnr_mean']:.2f} ± {t['psnr_sd']:.2f}; {t['psnr_range']:.2f} | "
                     f"{t['ssim_mean']:.4f} ± {t['ssim_sd']:.4f}; {t['ssim_range']:.4f} |")
    lines.append("")
    lines += ["Curves (training s -> PSNR dB / SSIM, EMA weights of each checkpoint; 0 s ="
              " initial weights):", ""]
    for run in results["runs"]:
        pts = ", ".join(f"{p['elapsed_s']:.0f}s {p['psnr_db']:.2f}/{p['ssim']:.3f}" for p in run["curve"])
        lines.append(f"- {run['model']} s{run['seed']} (load {run['load1_start']:.1f}->{run['load1_end']:.1f}): {pts}")
    lines.append("")
    if "time_to_best_anchor" in s:
        t = s["time_to_best_anchor"]
        lines += [f"### Time to the best anchor's final PSNR ({t['anchor']}, {t['target_psnr_db']:.2f} dB "
                  f"after {t['budget_s']:.0f} s)", ""]
        for name, times in t["dleem_reach_s"].items():
            txt = ", ".join(_reach_text(v, t["budget_s"]) for v in times)
            lines.append(f"- {name}: {txt}")
        lines.append("")
    if inf:
        lines += ["### Inference, 512 x 512 LR input (CPU, 2 threads, median): one forward pass,"
                  " and dleem's tiled `upscale_array`", "",
                  "| generator | params | median s | runs (s) |", "|---|---:|---:|---|"]
        for key, v in inf.items():
            lines.append(f"| {key} | {v['params']:,} | {v['median_s']:.2f} | "
                         f"{', '.join(f'{x:.2f}' for x in v['times_s'])} |")
        lines.append("")
    if "pores" in results:
        lines += ["### Pores, whole slice 016 (1768 x 2048 HR px, assumed 10 nm px)", ""]
        whole = {f"{r['model']}_s{r['seed']}": r["whole"] for r in results["runs"] if "whole" in r}
        whole["bicubic"] = results["bicubic_whole"]
        for tname, block in results["pores"].items():
            lines += [f"Threshold {tname} = {block['threshold']:.1f} (chosen on HR):", "",
                      "| image | PSNR dB | SSIM | porosity | pores | ratio to HR | median ED µm | W1 ED µm | KS |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for key, row in block["rows"].items():
                q = whole.get(key, {})
                med, w1, ks = (_fmt(row[k], f) for k, f in (("median_diameter_um", ".3f"),
                                                             ("wasserstein_um", ".4f"), ("ks", ".3f")))
                lines.append(
                    f"| {key} | {q.get('psnr_db', float('nan')):.2f} | {q.get('ssim', float('nan')):.4f} | "
                    f"{row['porosity']:.4f} | {row['count']} | {row['count_ratio']:.2f} | "
                    f"{med} | {w1} | {ks} |")
            lines.append("")
            for chk in s.get("pores_targets", {}).get(tname, []):
                lines.append(
                    f"- seed {chk['seed']}: GAN finds {chk['gan_count_ratio']:.0%} of HR pores "
                    f"(pixel-only {chk['pixel_count_ratio']:.0%}; target 85-115 %: "
                    f"{'met' if chk['count_ok'] else 'NOT met'}); PSD distance GAN/pixel "
                    f"{_fmt(chk['psd_distance_ratio'], '.2f')}"
                    f" (target <= 0.60: {'met' if chk['psd_ok'] else 'NOT met'}); PSNR loss "
                    f"{chk['psnr_loss_db']:.2f} dB (target <= 0.30: {'met' if chk['psnr_ok'] else 'NOT met'})")
            lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
