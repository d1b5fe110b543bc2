"""The model folder's trust files, fitted right after training.

`write_trust` reads the pairs the model was trained on and writes
``MODEL_DIR/trust.json`` + ``MODEL_DIR/trust_features.safetensors``:

- the LR noise model: the median over the regions of the registration's ``noise_model``
  (``registration.json`` version 2), else estimated from the regions' LR crops;
- the texture features of the training blocks (B x B, at a stride of B / 4, inside the
  train areas): the novelty's reference;
- the error calibration, fitted on the test areas (never seen by training): per block
  the SR of the LR crop is scored against the HR target, HR noise variance removed.

`held_out_blocks` and `refit_calibration` are the two halves of a refit on other
held-out blocks: cross-validation scores each left-out region with its fold's model and
refits the full model's calibration on all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.imaging import dtype_max as dtype_max_of
from dleem.imaging import forward_margin_lr_px
from dleem.trust.blocks import DEFAULT_BLOCK, FEATURE_MARGIN, block_stats, lr_features, window
from dleem.trust.calibration import Reference, design, fit_calibration
from dleem.trust.folder import HeldOut, ModelTrust, read_model_trust, write_model_trust
from dleem.trust.noise import NoiseModel, estimate_noise_model
from dleem.workspace import PairsManifest, Workspace

log = logging.getLogger("dleem.training")


def _read(ws: Workspace, name: str) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(ws.pair_file(name)))


def lr_noise_model(ws: Workspace, manifest: PairsManifest) -> NoiseModel:
    """The registration's noise model (median over regions), else one from the LR crops."""
    try:
        record = ws.read_registration()
        fitted = [r.noise_model for r in record.regions if r.ok and r.noise_model]
    except Exception:  # noqa: BLE001 - no or an old registration: the fallback below
        fitted = []
    if fitted:
        return NoiseModel(a=float(np.median([m["a"] for m in fitted])),
                          b=float(np.median([m["b"] for m in fitted])), source="registration")
    models = [estimate_noise_model(_read(ws, r.lr)) for r in manifest.regions]
    return NoiseModel(a=float(np.median([m.a for m in models])), b=float(np.median([m.b for m in models])),
                      source="lr_image")


def _full_blocks(box: tuple[int, int, int, int], block: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Cores (y0, y1, x0, x1) of whole ``block``-blocks inside LR-crop ``box``, every ``stride``."""
    r0, c0, r1, c1 = box
    return [(y, y + block, x, x + block) for y in range(r0, r1 - block + 1, stride)
            for x in range(c0, c1 - block + 1, stride)]


def training_features(ws: Workspace, manifest: PairsManifest, noise: NoiseModel, block: int,
                      dmax: float, regions: Collection[str] | None = None) -> np.ndarray:
    """Features (n, d) of the training blocks of ``regions`` (default all)."""
    feats = []
    for reg in manifest.regions:
        if regions is not None and reg.id not in regions:
            continue
        lr = _read(ws, reg.lr)
        for box in reg.splits.of("train"):
            cores = _full_blocks(box, block, max(block // 4, 1)) or [(box[0], box[2], box[1], box[3])]
            for core in cores:
                f, _, _ = lr_features(lr, core, noise, block, dmax)
                feats.append(f.reshape(-1, f.shape[-1]))
    if not feats:
        raise ValueError("no training blocks")
    return np.concatenate(feats)


def _test_cores(box: tuple[int, int, int, int], block: int) -> list[tuple[int, int, int, int]]:
    """The test box cut into blocks (the last partial ones kept when at least half a block)."""
    r0, c0, r1, c1 = box
    out = []
    for y in range(r0, r1, block):
        for x in range(c0, c1, block):
            y1, x1 = min(y + block, r1), min(x + block, c1)
            if 2 * (y1 - y) >= block and 2 * (x1 - x) >= block:
                out.append((y, y1, x, x1))
    return out


def held_out_blocks(ws: Workspace, model: Any, trust: ModelTrust, *, regions: Collection[str] | None = None,
                    split: str = "test", tile: int = 256) -> HeldOut:
    """Score the SR of ``model`` (loaded) on held-out blocks against the HR targets.

    ``split="test"``: the test areas of ``regions`` (default all); ``"all"``: the whole
    LR crop of each region (a region the model never saw, in cross-validation). Returns
    per block the design row, the novelty against ``trust``'s reference and the measured
    RMSE (grey levels, HR noise variance removed).
    """
    from dleem.upscale.consistency import map_tile
    from dleem.upscale.pipeline import upscale_array

    manifest = ws.read_pairs()
    k, b = manifest.scale, trust.block_size_lr_px
    sigma = float(getattr(model.config, "lr_blur_sigma_px", None) or 0.0)
    margin = max(int(model.halo_lr_px) + forward_margin_lr_px(sigma), FEATURE_MARGIN)
    xs, novs, rmses = [], [], []
    for reg in manifest.regions:
        if regions is not None and reg.id not in regions:
            continue
        lr_full = _read(ws, reg.lr)
        boxes = reg.splits.of("test") if split == "test" else [(0, 0, *lr_full.shape)]
        if not boxes:
            continue
        hr_full = _read(ws, reg.hr).astype(np.float32)
        valid_full = (_read(ws, reg.mask) > 0) & np.isfinite(hr_full)
        hr_noise = estimate_noise_model(np.where(valid_full, hr_full, np.median(hr_full[valid_full]))
                                        if valid_full.any() else hr_full, source="hr_target")
        for box in boxes:
            # the box with the context the network, the forward model and the features read
            wy0, wy1, wx0, wx1 = window((box[0], box[2], box[1], box[3]), lr_full.shape, margin)
            lr = lr_full[wy0:wy1, wx0:wx1]
            hr = hr_full[k * wy0:k * wy1, k * wx0:k * wx1]
            valid = valid_full[k * wy0:k * wy1, k * wx0:k * wx1]
            sr = upscale_array(lr, model, tile=tile, device=str(getattr(model, "device", "cpu")))
            for gy0, gy1, gx0, gx1 in _test_cores(box, b):
                core = (gy0 - wy0, gy1 - wy0, gx0 - wx0, gx1 - wx0)
                y0, y1, x0, x1 = core
                fine = (slice(k * y0, k * y1), slice(k * x0, k * x1))
                m = valid[fine]
                if m.mean() < 0.9:
                    continue
                s = block_stats(lr, core, trust.noise, b, trust.dtype_max, d=map_tile(sr, lr, core, k, sigma))
                err = sr[fine].astype(np.float64) - hr[fine]
                mse = float(np.mean(err[m] ** 2))
                hr_var = float(np.mean(hr_noise.variance(hr[fine][m])))
                xs.append(design(s.texture_gl, s.sigma_gl, s.chi).reshape(-1, 3)[0])
                novs.append(float(trust.reference.novelty(s.features.reshape(-1, s.features.shape[-1]))[0]))
                rmses.append(float(np.sqrt(max(mse - hr_var, 0.0))))
    return HeldOut(x=np.array(xs).reshape(-1, 3), novelty=np.array(novs), rmse=np.array(rmses))


def write_trust(ws: Workspace, model_dir: str | PathLike[str], model: Any, *, block: int = DEFAULT_BLOCK,
                regions: Collection[str] | None = None) -> tuple[Path, Path]:
    """Fit and write the trust files of a freshly trained ``model`` (a `LoadedModel`)."""
    manifest = ws.read_pairs()
    dmax = float(model.config.normalization.dtype_max or dtype_max_of(manifest.lr_dtype))
    noise = lr_noise_model(ws, manifest)
    reference = Reference.build(training_features(ws, manifest, noise, block, dmax, regions))
    trust = ModelTrust(block_size_lr_px=block, dtype_max=dmax, noise=noise, reference=reference,
                       calibration=fit_calibration(np.zeros((0, 3)), np.zeros(0), np.zeros(0), "none"))
    held = held_out_blocks(ws, model, trust, regions=regions)
    trust.held_out = held
    trust.calibration = fit_calibration(held.x, held.novelty, held.rmse, "test_areas")
    c = trust.calibration
    log.info("trust: %d training blocks, noise %s; calibration on %d test blocks: Spearman %s, "
             "median |error| %s grey levels", len(reference.features), noise.to_dict(), c.n_blocks,
             c.spearman, c.median_abs_error_gl)
    return write_model_trust(model_dir, trust)


def fit_trust(ws: Workspace, model_dir: Path, generator: Any, config: Any, device: Any,
              regions: Collection[str] | None = None) -> None:
    """`write_trust` for the generator just saved; a failure is a warning (the model is
    kept, and ``dleem upscale --trust`` then says the folder has no trust files)."""
    import copy

    from dleem.errors import DleemError
    from dleem.models.folder import LoadedModel

    model = LoadedModel(generator=copy.deepcopy(generator).eval(), config=config, scale=int(config.scale),
                        halo_lr_px=int(config.receptive_field_lr_px), device=device)
    try:
        write_trust(ws, model_dir, model, regions=regions)
    except (DleemError, ValueError) as error:
        log.warning("%s: no trust files written (%s): dleem upscale --trust will refuse this model",
                    model_dir, error)


def refit_calibration(model_dir: str | PathLike[str], held_out: HeldOut | list[HeldOut],
                      source: str = "crossval") -> ModelTrust:
    """Refit the model folder's calibration on other held-out blocks (pooled if a list),
    e.g. cross-validation folds scored by `held_out_blocks`; rewrites ``trust.json``."""
    parts = held_out if isinstance(held_out, list) else [held_out]
    pooled = HeldOut(x=np.concatenate([p.x.reshape(-1, 3) for p in parts]),
                     novelty=np.concatenate([p.novelty.ravel() for p in parts]),
                     rmse=np.concatenate([p.rmse.ravel() for p in parts]))
    trust = read_model_trust(model_dir)
    trust.held_out = pooled
    trust.calibration = fit_calibration(pooled.x, pooled.novelty, pooled.rmse, source)
    write_model_trust(model_dir, trust)
    return trust


def fold_held_out(ws: Workspace, model_dir: str | PathLike[str], held_out_region: str | None = None
                  ) -> HeldOut | None:
    """A cross-validation fold's held-out blocks, scored with the fold's model (its own trust
    files give the novelty against what it saw): the whole region ``held_out_region``, or,
    without it, the test areas of ``ws`` (a spatial fold's workspace holds its block there).
    None, with a warning, where the fold's model has no trust files."""
    from dleem.errors import DleemError
    from dleem.models import load_model

    try:
        model = load_model(model_dir)
        trust = read_model_trust(model_dir)
        if held_out_region is None:
            return held_out_blocks(ws, model, trust, split="test")
        return held_out_blocks(ws, model, trust, regions=[held_out_region], split="all")
    except (DleemError, ValueError) as error:
        log.warning("%s: its held-out blocks are left out of the trust calibration (%s)", model_dir, error)
        return None


def refit_workspace_models(ws: Workspace, held_out: list[HeldOut | None]) -> list[Path]:
    """Refit the calibration of every model under ``WORKSPACE/models`` trained on all regions
    on the folds' held-out blocks; returns the folders refitted."""
    import json

    held_out = [h for h in held_out if h is not None and len(h.rmse)]
    done: list[Path] = []
    if not held_out:
        return done
    for d in sorted(p for p in ws.models_dir.glob("*") if (p / "trust.json").is_file()):
        try:
            regions = json.loads((d / "config.json").read_text(encoding="utf-8"))["training"].get("regions")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if regions is None:
            refit_calibration(d, held_out, source="crossval")
            done.append(d)
            log.info("%s: trust calibration refitted on %d held-out blocks of %d folds", d,
                     sum(len(h.rmse) for h in held_out), len(held_out))
    return done


__all__ = ["fit_trust", "fold_held_out", "refit_workspace_models", "held_out_blocks", "lr_noise_model", "refit_calibration", "training_features", "write_trust"]
