"""Training data: aligned random crops from the pairs folder (`WORKSPACE/pairs/`).

What this module guarantees (why it matters):
- Normalisation comes from the dtype range and the statistics of the **whole** LR image
  stored in the manifest (``lr_stats``), never from a tile; the same numbers go into the
  model's config.json, so inference normalises any image identically.
- Only the train and validation boxes of the manifest are ever cut out of the pair
  files; the test boxes are not kept in memory, so no crop, flip or receptive field can
  reach them.
- Crops are taken wholly inside one box, LR patch and its k-times HR patch aligned
  (LR pixel i covers fine pixels k*i .. k*i+k-1). Crops with invalid target pixels are
  redrawn a few times, and the mask is always returned so the loss can ignore the rest.
- The random crops of step ``s`` on rank ``r`` are a pure function of
  ``(seed, r, s)``: resuming at step s draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dleem.errors import DleemError, InputError
from dleem.models.config import dtype_max_of

Box = tuple[int, int, int, int]

#: Redraws before accepting a crop that contains invalid target pixels (masked in the loss).
MASK_RETRIES = 8


def find_manifest(workspace: str | PathLike[str]) -> Path:
    """``WORKSPACE/pairs/manifest.json`` (also accepts the pairs folder or the file itself)."""
    path = Path(workspace)
    if not path.exists():
        raise InputError(path, "workspace not found")
    for candidate in (path / "pairs" / "manifest.json", path / "manifest.json", path):
        if candidate.is_file() and candidate.name == "manifest.json":
            return candidate
    raise InputError(path, "no training pairs (pairs/manifest.json); run `dleem register` first")


def _read_tif(path: Path) -> np.ndarray:
    import tifffile

    if not path.is_file():
        raise InputError(path, "missing (listed in the pairs manifest)")
    try:
        data = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types on a bad file
        raise InputError(path, f"cannot read TIFF: {error}") from None
    data = np.squeeze(np.asarray(data))
    if data.ndim != 2:
        raise InputError(path, f"expected a 2-D image, got shape {data.shape}")
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BoxData:
    """One train or validation box: normalised LR, HR target and mask (as tensors)."""

    region: str
    split: str
    box: Box  # LR-crop coordinates, half-open
    lr: torch.Tensor  # (h, w) float32, normalised
    hr: torch.Tensor  # (k*h, k*w) float32, normalised
    mask: torch.Tensor  # (k*h, k*w) bool
    mask_np: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), bool))
    all_valid: bool = True  # every target pixel valid: no crop needs checking


@dataclass
class PairData:
    """The train / validation areas of a pairs folder, normalised, plus what the model config needs."""

    manifest_path: Path
    scale: int
    normalization: dict[str, Any]
    data_range: float  # LR image grey range in dtype-range units (PSNR/SSIM peak)
    train: list[BoxData]
    val: list[BoxData]
    lr_pixel_size_um: float | None
    hr_pixel_size_um: float | None
    lr_blur_sigma_px: float | None
    checksums: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> PairData:
        """Move all tensors to a device (crops are then cut on that device)."""
        for b in self.train + self.val:
            b.lr, b.hr, b.mask = b.lr.to(device), b.hr.to(device), b.mask.to(device)
        return self


def _clip_box(box: Any, shape: tuple[int, int], where: str) -> Box:
    try:
        r0, c0, r1, c1 = (int(v) for v in box)
    except (TypeError, ValueError):
        raise DleemError(f"{where}: bad box {box!r}") from None
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, shape[0]), min(c1, shape[1])
    return r0, c0, r1, c1


def load_pairs(
    workspace: str | PathLike[str],
    *,
    expected_scale: int | None = None,
    min_box_lr_px: int = 1,
    checksums: bool = True,
) -> PairData:
    """Read the train and validation areas of ``WORKSPACE/pairs`` (test areas are skipped).

    Parameters
    ----------
    workspace : path
        The workspace, its ``pairs`` folder or the ``manifest.json``.
    expected_scale : int, optional
        Refuse pairs cut at another scale (`DleemError`).
    min_box_lr_px : int
        Boxes narrower than this (LR px) in either axis are dropped (a crop cannot fit).
    checksums : bool
        Record SHA-256 of the manifest and pair files (for the model's provenance).
    """
    mpath = find_manifest(workspace)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(mpath, f"cannot read JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("version") != 1:
        raise InputError(mpath, f"unsupported pairs manifest version {manifest.get('version')!r}")
    try:
        scale = int(manifest["scale"])
        dtype = np.dtype(manifest["lr_dtype"]).name
        stats = manifest["lr_stats"]
        regions = manifest["regions"]
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(mpath, f"pairs manifest lacks a valid field: {error}") from None
    if expected_scale is not None and int(expected_scale) != scale:
        raise DleemError(
            f"{mpath}: scale mismatch: the pairs were cut at scale {scale}, not {expected_scale}"
            f" (re-run `dleem register --scale {expected_scale}` or train at scale {scale})"
        )
    if not 2 <= scale <= 8:
        raise InputError(mpath, f"scale {scale} is outside the 2..8 a model supports")
    if not regions:
        raise InputError(mpath, "no regions in the pairs manifest")
    dmax = dtype_max_of(dtype)
    mean, std = float(stats["mean"]) / dmax, float(stats["std"]) / dmax
    if not (math.isfinite(std) and std > 0):
        raise InputError(mpath, "the LR image is constant (std 0): nothing to learn")
    normalization = {"input_dtype": dtype, "dtype_max": dmax, "mean": mean, "std": std}
    lo, hi = stats.get("min"), stats.get("max")
    data_range = (float(hi) - float(lo)) / dmax if lo is not None and hi is not None else 1.0
    if not data_range > 0:
        data_range = 1.0

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a.astype(np.float32) / np.float32(dmax)) - np.float32(mean)) / np.float32(std)

    train: list[BoxData] = []
    val: list[BoxData] = []
    sums: dict[str, Any] = {"manifest_sha256": _sha256(mpath) if checksums else None,
                            "lr_sha256": manifest.get("lr_sha256"), "regions": []}
    hr_sizes = []
    root = mpath.parent
    for reg in regions:
        rid = str(reg.get("id", "?"))
        where = f"{mpath} region {rid}"
        try:
            names = {k: root / reg[k] for k in ("lr", "hr", "mask")}
            splits = reg["splits"]
        except (KeyError, TypeError) as error:
            raise InputError(mpath, f"region {rid} lacks {error}") from None
        lr = _read_tif(names["lr"])
        hr = _read_tif(names["hr"])
        mask = _read_tif(names["mask"])
        if hr.shape != (scale * lr.shape[0], scale * lr.shape[1]):
            raise InputError(
                names["hr"],
                f"scale mismatch: shape {hr.shape} is not scale {scale} x the LR crop {lr.shape}",
            )
        if mask.shape != hr.shape:
            raise InputError(names["mask"], f"shape {mask.shape} differs from the HR target {hr.shape}")
        valid = (mask > 0) & np.isfinite(hr)
        hr = np.where(valid, hr, 0)
        if reg.get("hr_pixel_size_um"):
            hr_sizes.append(float(reg["hr_pixel_size_um"]))
        if checksums:
            sums["regions"].append({"id": rid, "hr_sha256": reg.get("hr_sha256"),
                                    **{f"{k}_sha256": _sha256(p) for k, p in names.items()}})
        for split, out in (("train", train), ("val", val)):  # "test" is never read
            for raw_box in splits.get(split, []) or []:
                r0, c0, r1, c1 = _clip_box(raw_box, lr.shape, where)
                if r1 - r0 < min_box_lr_px or c1 - c0 < min_box_lr_px:
                    continue
                k = scale
                m = valid[k * r0:k * r1, k * c0:k * c1]
                if not m.any():
                    continue
                out.append(BoxData(
                    region=rid, split=split, box=(r0, c0, r1, c1),
                    lr=torch.from_numpy(np.ascontiguousarray(norm(lr[r0:r1, c0:c1]))),
                    hr=torch.from_numpy(np.ascontiguousarray(norm(hr[k * r0:k * r1, k * c0:k * c1]))),
                    mask=torch.from_numpy(np.ascontiguousarray(m)),
                    mask_np=m, all_valid=bool(m.all()),
                ))
    if not train:
        raise InputError(
            mpath, f"no train area of at least {min_box_lr_px} x {min_box_lr_px} LR px with valid"
            " targets (use a smaller --patch, or register larger HR regions)")
    lr_blur = manifest.get("lr_blur_sigma_px")
    return PairData(
        manifest_path=mpath, scale=scale, normalization=normalization, data_range=data_range,
        train=train, val=val,
        lr_pixel_size_um=manifest.get("lr_pixel_size_um"),
        hr_pixel_size_um=float(np.median(hr_sizes)) if hr_sizes else None,
        lr_blur_sigma_px=None if lr_blur is None else float(lr_blur),
        checksums=sums,
    )


def batch_generator(seed: int, rank: int, step: int) -> np.random.Generator:
    """The random stream of one training step: a pure function of (seed, rank, step)."""
    return np.random.default_rng([int(seed), int(rank), int(step)])


def sample_batch(
    data: PairData,
    batch: int,
    patch: int,
    rng: np.random.Generator,
    *,
    rot90: bool = False,
    flips: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random aligned crops: LR (B,1,p,p), HR (B,1,kp,kp), mask (B,1,kp,kp) on the data's device.

    Boxes are chosen in proportion to their number of crop positions. Flips (left-right,
    up-down) are on by default; 90-degree rotations only on request, because they swap
    the fast and slow scan directions whose noise differs in SEM.
    """
    k = data.scale
    boxes = [b for b in data.train if min(b.lr.shape) >= patch]
    if not boxes:
        raise DleemError(f"no train area fits a {patch} x {patch} LR patch; use a smaller --patch")
    weights = np.array([(b.lr.shape[0] - patch + 1) * (b.lr.shape[1] - patch + 1) for b in boxes], float)
    weights /= weights.sum()
    lrs, hrs, masks = [], [], []
    for _ in range(batch):
        for attempt in range(MASK_RETRIES):
            b = boxes[int(rng.choice(len(boxes), p=weights))]
            r = int(rng.integers(0, b.lr.shape[0] - patch + 1))
            c = int(rng.integers(0, b.lr.shape[1] - patch + 1))
            if b.all_valid or attempt == MASK_RETRIES - 1:
                break
            if b.mask_np[k * r:k * (r + patch), k * c:k * (c + patch)].all():
                break
        lrs.append(b.lr[r:r + patch, c:c + patch])
        hrs.append(b.hr[k * r:k * (r + patch), k * c:k * (c + patch)])
        masks.append(b.mask[k * r:k * (r + patch), k * c:k * (c + patch)])
    lr = torch.stack(lrs)[:, None]
    hr = torch.stack(hrs)[:, None]
    mask = torch.stack(masks)[:, None]
    if flips or rot90:
        ops = rng.integers(0, 2, size=(batch, 3))
        for i in range(batch):
            dims = []
            if flips and ops[i, 0]:
                dims.append(-1)
            if flips and ops[i, 1]:
                dims.append(-2)
            if dims:
                lr[i], hr[i], mask[i] = lr[i].flip(dims), hr[i].flip(dims), mask[i].flip(dims)
            if rot90 and ops[i, 2]:
                lr[i], hr[i], mask[i] = (t.rot90(1, (-2, -1)) for t in (lr[i], hr[i], mask[i]))
    return lr, hr, mask


def validation_tiles(
    data: PairData, tile: int, max_tiles: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """A fixed set of non-overlapping validation tiles (LR tile x tile px) from the val boxes.

    Tiles smaller than ``tile`` are not used; with no validation box large enough the
    largest square that fits every box is used instead; None when there is no val area.
    """
    boxes = [b for b in data.val if b.mask.any()]
    if not boxes:
        return None
    tile = min(tile, min(min(b.lr.shape) for b in boxes))
    if tile < 4:
        return None
    k = data.scale
    lrs, hrs, masks = [], [], []
    for b in boxes:
        h, w = b.lr.shape
        for r in range(0, h - tile + 1, tile):
            for c in range(0, w - tile + 1, tile):
                m = b.mask[k * r:k * (r + tile), k * c:k * (c + tile)]
                if m.float().mean() < 0.5:
                    continue
                lrs.append(b.lr[r:r + tile, c:c + tile])
                hrs.append(b.hr[k * r:k * (r + tile), k * c:k * (c + tile)])
                masks.append(m)
    if not lrs:
        return None
    if len(lrs) > max_tiles:  # spread evenly over the list, deterministic
        idx = np.linspace(0, len(lrs) - 1, max_tiles).round().astype(int)
        lrs, hrs, masks = [lrs[i] for i in idx], [hrs[i] for i in idx], [masks[i] for i in idx]
    return torch.stack(lrs)[:, None], torch.stack(hrs)[:, None], torch.stack(masks)[:, None]
