"""The trust map of an upscale: per block, the predicted error and whether it is supported.

`prepare_trust` checks the ``--trust`` path and reads the model folder's trust files
(`dleem.trust.folder`) before any work; `write_trust` runs after the SR level 0 is
complete, tile by tile (each tile a multiple of the block size B, so blocks never
straddle tiles), reading the SR window with the forward model's margin, exactly as the
consistency map does: memory is one tile plus the block arrays (LR area / B²), the pass
streams, and it serves the local and the dask executor alike.

Outputs, for ``TRUST.tif``:

- ``TRUST.tif``: float32 OME-TIFF, axes CYX, plane 0 the predicted RMSE (grey levels of
  the LR dtype), plane 1 supported (1) or unsupported (0); one pixel per block
  (PhysicalSize = B x the LR pixel size); untiled strips with resolution tags, so
  ImageJ opens it without Bio-Formats.
- ``TRUST.json``: the block size, the LR checksum, the model, the LR noise model, the
  thresholds, the supported fraction (by area), the calibration and the least trusted
  blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import InputError, ParameterError
from dleem.trust.blocks import block_shape, block_stats, chi_threshold
from dleem.trust.calibration import design
from dleem.trust.folder import ModelTrust, read_model_trust

log = logging.getLogger("dleem.upscale")

SCHEMA = "dleem-trust"
SCHEMA_VERSION = 1
LEAST_TRUSTED = 12
PLANES = ("predicted_rmse_gl", "supported")


@dataclass
class TrustJob:
    """A checked ``--trust`` request: where to write and what the model folder carries."""

    path: Path
    model_dir: Path
    model: ModelTrust

    @property
    def json_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def block(self) -> int:
        return self.model.block_size_lr_px


def _same(a: Path, b: Path | None) -> bool:
    if b is None:
        return False
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def prepare_trust(trust_path: str | PathLike[str] | None, model_dir: Any, *, src: Path, out: Path,
                  cons: Path | None, tile: int) -> TrustJob | None:
    """Check the trust map's paths and the model's trust files before any work."""
    if trust_path is None:
        return None
    path = Path(trust_path)
    if not path.name.lower().endswith((".tif", ".tiff")):
        raise InputError(path, "the trust map is a TIFF: its name must end in .tif or .tiff")
    for other, what in ((src, "the input"), (out, "the SR output"), (cons, "the consistency map")):
        if _same(path, other) or _same(path.with_suffix(".json"), other):
            raise InputError(path, f"the trust map (or its .json) would be {what}; choose another name")
    if path.is_dir():
        raise InputError(path, "is an existing folder; choose a file name for the trust map")
    if not isinstance(model_dir, (str, PathLike)):
        raise ParameterError("trust_path", "needs the model folder (its trust files), not a loaded model")
    job = TrustJob(path=path, model_dir=Path(model_dir), model=read_model_trust(model_dir))
    if tile % job.block:
        raise ParameterError("tile", f"must be a multiple of the trust block size {job.block} LR px "
                             f"with --trust, got {tile}")
    return job


def compute_blocks(job: TrustJob, sr: Any, lr: Any, *, scale: int, sigma_lr_px: float,
                   tile: int) -> dict[str, np.ndarray]:
    """The per-block arrays over the whole map, tile by tile (``tile`` a multiple of B)."""
    from dleem.upscale.consistency import map_tile, tiles

    t = job.model
    b = t.block_size_lr_px
    shape = block_shape(tuple(lr.shape), b)
    out = {name: np.zeros(shape, np.float32) for name in
           ("predicted_rmse_gl", "novelty", "chi", "n_px", "sigma_gl", "texture_gl")}
    for y0, y1, x0, x1 in tiles(tuple(lr.shape), tile):
        core = (y0, y1, x0, x1)
        s = block_stats(lr, core, t.noise, b, t.dtype_max, d=map_tile(sr, lr, core, scale, sigma_lr_px))
        nov = t.reference.novelty(s.features)
        pred = t.calibration.predict(design(s.texture_gl, s.sigma_gl, s.chi), nov)
        cut = (slice(y0 // b, y0 // b + s.chi.shape[0]), slice(x0 // b, x0 // b + s.chi.shape[1]))
        for name, value in (("predicted_rmse_gl", pred), ("novelty", nov), ("chi", s.chi), ("n_px", s.n_px),
                            ("sigma_gl", s.sigma_gl), ("texture_gl", s.texture_gl)):
            out[name][cut] = value
    return out


def summarize(job: TrustJob, blocks: dict[str, np.ndarray], *, lr_shape: tuple[int, int], lr_file: Path,
              lr_sha256: str, lr_pixel_size_um: float | None) -> dict[str, Any]:
    """``TRUST.json``: what the map means and how far it can be believed."""
    t, b = job.model, job.block
    supported = blocks["novelty"] <= 1.0
    n = blocks["n_px"].astype(np.float64)
    chi_max = chi_threshold(n, t.false_alarm)
    inconsistent = blocks["chi"] > chi_max
    order = np.argsort(-blocks["predicted_rmse_gl"], axis=None)[:LEAST_TRUSTED]
    h, w = blocks["n_px"].shape
    least = []
    for flat in order:
        i, j = divmod(int(flat), w)
        least.append({"block": [i, j],
                      "lr_box": [i * b, j * b, min((i + 1) * b, lr_shape[0]), min((j + 1) * b, lr_shape[1])],
                      "predicted_rmse_gl": float(blocks["predicted_rmse_gl"][i, j]),
                      "novelty": float(blocks["novelty"][i, j]), "consistency_chi": float(blocks["chi"][i, j]),
                      "supported": bool(supported[i, j]), "inconsistent": bool(inconsistent[i, j])})
    rmse = blocks["predicted_rmse_gl"]
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "block_size_lr_px": b, "blocks_shape": [h, w], "lr_shape": [int(v) for v in lr_shape],
        "planes": list(PLANES),
        "lr_file": str(lr_file.resolve()), "lr_sha256": lr_sha256, "model": str(job.model_dir.resolve()),
        "lr_pixel_size_um": lr_pixel_size_um,
        "pixel_size_um": b * lr_pixel_size_um if lr_pixel_size_um else None,
        "noise_model": {**t.noise.to_dict(), "unit": "variance = a + b * signal, LR grey levels"},
        "consistency_sigma_gl": float(np.sqrt(np.average(blocks["sigma_gl"] ** 2, weights=n))),
        "thresholds": {"novelty": 1.0, "novelty_distance": float(t.reference.threshold),
                       "consistency_chi_full_block": float(chi_threshold(b * b, t.false_alarm)),
                       "consistency_false_alarm_rate": float(t.false_alarm)},
        "supported_fraction": float((n * supported).sum() / n.sum()),
        "inconsistent_fraction": float((n * inconsistent).sum() / n.sum()),
        "predicted_rmse_gl": {"median": float(np.median(rmse)), "p90": float(np.quantile(rmse, 0.9)),
                              "max": float(rmse.max())},
        "calibration": {**t.calibration.to_dict(), "spearman_held_out": t.calibration.spearman,
                        "median_abs_error_held_out_gl": t.calibration.median_abs_error_gl},
        "least_trusted": least,
    }


def write_trust_files(job: TrustJob, blocks: dict[str, np.ndarray], summary: dict[str, Any]) -> None:
    """TRUST.tif (CYX float32, strips, resolution tags) and TRUST.json, each atomic."""
    import tifffile

    from dleem.io.atomic import atomic_write, write_json
    from dleem.io.write import resolution_options

    data = np.stack([blocks["predicted_rmse_gl"], (blocks["novelty"] <= 1.0).astype(np.float32)])
    px = summary["pixel_size_um"]
    metadata: dict[str, Any] = {"axes": "CYX", "Channel": {"Name": list(PLANES)},
                                "Description": "dleem trust map: plane 0 predicted RMSE (LR grey levels), "
                                               "plane 1 supported (1) / unsupported (0)"}
    if px:
        metadata.update(PhysicalSizeX=px, PhysicalSizeXUnit="µm", PhysicalSizeY=px, PhysicalSizeYUnit="µm")
    atomic_write(job.path, lambda tmp: tifffile.imwrite(
        tmp, data.astype(np.float32), ome=True, photometric="minisblack", metadata=metadata,
        **resolution_options(px)))
    write_json(job.json_path, summary)


def write_trust(job: TrustJob, sr: Any, lr: Any, *, scale: int, sigma_lr_px: float, tile: int,
                lr_file: Path, lr_pixel_size_um: float | None) -> dict[str, Any]:
    """Compute and write the trust map of a finished SR level 0; returns TRUST.json's dict."""
    from dleem.io.checksum import sha256_file

    b = job.block
    blocks = compute_blocks(job, sr, lr, scale=scale, sigma_lr_px=sigma_lr_px, tile=-(-tile // b) * b)
    sha = sha256_file(lr_file) if lr_file.is_file() else ""
    summary = summarize(job, blocks, lr_shape=tuple(lr.shape), lr_file=lr_file, lr_sha256=sha, lr_pixel_size_um=lr_pixel_size_um)
    write_trust_files(job, blocks, summary)
    log.info("trust map %s: %.1f%% supported by area, median predicted RMSE %.3g grey levels",
             job.path, 100 * summary["supported_fraction"], summary["predicted_rmse_gl"]["median"])
    return summary


def model_noise(model_dir: Any) -> Any:
    """The model folder's LR noise model (`dleem.trust.noise.NoiseModel`), or None without
    trust files (the consistency map then stays in grey levels alone)."""
    if not isinstance(model_dir, (str, PathLike)):
        return None
    try:
        return read_model_trust(model_dir).noise
    except InputError:
        return None


def default_trust_path(model_dir: Any, tile: int, path: Path) -> Path | None:
    """``path`` where the run can write a trust map (the model has trust files and ``tile``
    is a multiple of their block size), else None: for callers that add it when possible."""
    if not isinstance(model_dir, (str, PathLike)):
        return None
    try:
        block = read_model_trust(model_dir).block_size_lr_px
    except InputError:
        return None
    return path if tile % block == 0 else None
