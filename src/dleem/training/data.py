"""Training data: aligned random crops from the pairs folder (`WORKSPACE/pairs/`).

What this module guarantees (why it matters):
- Normalisation is the one `dleem.imaging.Normalization`, from the dtype and the
  statistics of the **whole** LR image stored in the manifest (``lr_stats``), never from a
  tile; the same object goes into the model's config.json, so inference normalises any
  image identically.
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
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dleem.errors import DleemError, InputError
from dleem.imaging import BICUBIC_HALO_LR_PX, Normalization, dtype_range
from dleem.workspace import PairsManifest, Workspace

Box = tuple[int, int, int, int]

#: Redraws before accepting a crop that contains invalid target pixels (masked in the loss).
MASK_RETRIES = 8


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
    """One train or validation box: normalised LR, HR target and mask (as tensors).

    Validation boxes also keep their grey levels for scoring: ``lr_raw`` is the LR crop
    of the box with up to `dleem.imaging.BICUBIC_HALO_LR_PX` px of context on each side
    where the region's LR crop has it (``context`` = rows, columns of context before the
    box), and ``hr_raw`` the HR target (float32 grey levels, 0 where invalid).
    """

    region: str
    split: str
    box: Box  # LR-crop coordinates, half-open
    lr: torch.Tensor  # (h, w) float32, normalised
    hr: torch.Tensor  # (k*h, k*w) float32, normalised
    mask: torch.Tensor  # (k*h, k*w) bool
    mask_np: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), bool))
    all_valid: bool = True  # every target pixel valid: no crop needs checking
    lr_raw: np.ndarray | None = field(repr=False, default=None)
    context: tuple[int, int] = (0, 0)
    hr_raw: np.ndarray | None = field(repr=False, default=None)


@dataclass
class PairData:
    """The train / validation areas of a pairs folder, normalised, plus what the model config needs."""

    manifest_path: Path
    manifest: PairsManifest
    scale: int
    lr_dtype: str
    normalization: Normalization
    data_range: float  # grey-level range for PSNR/SSIM: the LR dtype's (lr_stats max - min for float)
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


def _clip_box(box: Box, shape: tuple[int, int]) -> Box:
    r0, c0, r1, c1 = box
    return max(r0, 0), max(c0, 0), min(r1, shape[0]), min(c1, shape[1])


def _workspace(workspace: str | PathLike[str] | Workspace) -> Workspace:
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if not ws.path.is_dir():
        raise InputError(ws.path, "workspace not found")
    if not ws.has_pairs():
        raise InputError(ws.path, "no training pairs (pairs/manifest.json); run `dleem register` first")
    return ws


def load_pairs(
    workspace: str | PathLike[str] | Workspace,
    *,
    expected_scale: int | None = None,
    min_box_lr_px: int = 1,
    checksums: bool = True,
    regions: Collection[str] | None = None,
) -> PairData:
    """Read the train and validation areas of ``WORKSPACE/pairs`` (test areas are skipped).

    Parameters
    ----------
    workspace : path or Workspace
        The workspace folder (its ``pairs/manifest.json`` lists the pairs).
    expected_scale : int, optional
        Refuse pairs cut at another scale (`DleemError`).
    min_box_lr_px : int
        Boxes narrower than this (LR px) in either axis are dropped (a crop cannot fit).
    checksums : bool
        Record SHA-256 of the manifest and pair files (for the model's provenance).
    regions : collection of str, optional
        Read only these region ids (cross-validation leaves one out); default all.
    """
    ws = _workspace(workspace)
    mpath = ws.pairs_manifest_json
    manifest = ws.read_pairs()
    scale = manifest.scale
    if expected_scale is not None and int(expected_scale) != scale:
        raise DleemError(
            f"{mpath}: scale mismatch: the pairs were cut at scale {scale}, not {expected_scale}"
            f" (re-run `dleem register --scale {expected_scale}` or train at scale {scale})"
        )
    chosen = list(manifest.regions)
    if regions is not None:
        wanted = {str(r) for r in regions}
        unknown = sorted(wanted - {r.id for r in chosen})
        if unknown:
            raise InputError(mpath, f"no region {unknown[0]!r} in the pairs manifest "
                                    f"(regions: {', '.join(r.id for r in chosen)})")
        chosen = [r for r in chosen if r.id in wanted]
    if not chosen:
        raise InputError(mpath, "no regions in the pairs manifest")
    stats = manifest.lr_stats
    dtype = np.dtype(manifest.lr_dtype).name
    if not (math.isfinite(stats.std) and stats.std > 0):
        raise InputError(mpath, "the LR image is constant (std 0): nothing to learn")
    normalization = Normalization.from_stats(dtype, stats.mean, stats.std)
    data_range = dtype_range(dtype)
    if data_range is None:  # float LR: the whole image's grey range
        data_range = float(stats.max) - float(stats.min)
        if not (math.isfinite(data_range) and data_range > 0):
            data_range = 1.0

    train: list[BoxData] = []
    val: list[BoxData] = []
    sums: dict[str, Any] = {"manifest_sha256": _sha256(mpath) if checksums else None,
                            "lr_sha256": manifest.lr_sha256, "regions": []}
    hr_sizes = []
    halo = BICUBIC_HALO_LR_PX
    k = scale
    for reg in chosen:
        names = {"lr": ws.pair_file(reg.lr), "hr": ws.pair_file(reg.hr), "mask": ws.pair_file(reg.mask)}
        lr = _read_tif(names["lr"])
        hr = _read_tif(names["hr"])
        mask = _read_tif(names["mask"])
        if hr.shape != (k * lr.shape[0], k * lr.shape[1]):
            raise InputError(
                names["hr"],
                f"scale mismatch: shape {hr.shape} is not scale {k} x the LR crop {lr.shape}",
            )
        if mask.shape != hr.shape:
            raise InputError(names["mask"], f"shape {mask.shape} differs from the HR target {hr.shape}")
        valid = (mask > 0) & np.isfinite(hr)
        hr = np.where(valid, hr, 0).astype(np.float32)
        if reg.hr_pixel_size_um:
            hr_sizes.append(float(reg.hr_pixel_size_um))
        if checksums:
            sums["regions"].append({"id": reg.id, "hr_sha256": reg.hr_sha256,
                                    **{f"{key}_sha256": _sha256(p) for key, p in names.items()}})
        for split, out in (("train", train), ("val", val)):  # "test" is never read
            for raw_box in reg.splits.of(split):
                r0, c0, r1, c1 = _clip_box(raw_box, lr.shape)
                if r1 - r0 < min_box_lr_px or c1 - c0 < min_box_lr_px:
                    continue
                m = valid[k * r0:k * r1, k * c0:k * c1]
                if not m.any():
                    continue
                hr_box = hr[k * r0:k * r1, k * c0:k * c1]
                box = BoxData(
                    region=reg.id, split=split, box=(r0, c0, r1, c1),
                    lr=torch.from_numpy(np.ascontiguousarray(normalization.apply(lr[r0:r1, c0:c1]))),
                    hr=torch.from_numpy(np.ascontiguousarray(normalization.apply(hr_box))),
                    mask=torch.from_numpy(np.ascontiguousarray(m)),
                    mask_np=m, all_valid=bool(m.all()),
                )
                if split == "val":
                    w0, v0 = max(r0 - halo, 0), max(c0 - halo, 0)
                    box.lr_raw = np.ascontiguousarray(lr[w0:min(r1 + halo, lr.shape[0]),
                                                         v0:min(c1 + halo, lr.shape[1])])
                    box.context = (r0 - w0, c0 - v0)
                    box.hr_raw = np.ascontiguousarray(hr_box)
                out.append(box)
    if not train:
        raise InputError(
            mpath, f"no train area of at least {min_box_lr_px} x {min_box_lr_px} LR px with valid"
            " targets (use a smaller patch, or register larger HR regions)")
    return PairData(
        manifest_path=mpath, manifest=manifest, scale=scale, lr_dtype=dtype,
        normalization=normalization, data_range=float(data_range), train=train, val=val,
        lr_pixel_size_um=manifest.lr_pixel_size_um,
        hr_pixel_size_um=float(np.median(hr_sizes)) if hr_sizes else None,
        lr_blur_sigma_px=manifest.lr_blur_sigma_px,
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
        raise DleemError(f"no train area fits a {patch} x {patch} LR patch; use a smaller patch")
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
