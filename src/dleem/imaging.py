"""The rules every stage shares, each defined once: grids, dtypes, bicubic, the LR forward model.

Registration, pairs, training, upscaling and evaluation all import these; none of them
keeps a copy. The module is torch-free, so the CLI and the report load it cheaply.

- **Fine grid.** For an integer scale ``k``, LR pixel ``i`` covers fine pixels
  ``k*i .. k*i + k - 1``; fine pixel ``j`` has its centre at LR coordinate
  ``(j + 0.5) / k - 0.5`` (x = column, y = row, pixel centres on integers).
- **Scales.** A model upscales by an integer ``k`` in ``SCALE_RANGE`` (2..8); the default
  for a fitted ratio is ``clamp(round(ratio), 2, 8)``.
- **Dtypes.** ``SUPPORTED_DTYPES`` are the grey-level dtypes dleem reads and trains on.
  ``dtype_max`` is the normalisation unit (the integer maximum, 1 for float),
  ``dtype_range`` the SSIM/PSNR data range (the full integer range), and ``to_dtype``
  rounds and clips to an integer dtype as an image written in it would be.
- **Bicubic.** Keys cubic convolution, ``a = -0.5`` (MATLAB ``imresize``, PIL), separable,
  edge pixels replicated, on the fine-grid convention. It is the baseline every number
  is compared with.
- **LR forward model.** What the LR detector sees of a fine-grid image: a Gaussian beam
  blur of ``sigma`` LR px (estimated at registration), then the mean over each LR pixel.
- **Normalization.** ``x = (raw / dtype_max - mean) / std`` with the whole LR image's mean
  and std: the one map between grey levels and network units, for training and inference.

References
----------
Keys, R. (1981). Cubic convolution interpolation for digital image processing. IEEE TASSP 29(6).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from dleem.errors import DleemError, ParameterError, reject_unknown_keys

#: Grey-level dtypes dleem reads, trains on and writes (float16 is widened on reading).
SUPPORTED_DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "float32", "float64")
#: Integer scales a model supports, inclusive.
SCALE_RANGE: tuple[int, int] = (2, 8)
#: LR pixels of context the bicubic kernel reads on each side.
BICUBIC_HALO_LR_PX = 2
#: Gaussian truncation of the forward model's blur, in sigmas.
BLUR_TRUNCATE = 4.0


# ----------------------------------------------------------------------------- scales, dtypes


def check_scale(scale: Any, name: str = "scale") -> int:
    """The integer scale ``scale`` if it lies in `SCALE_RANGE`, else a `ParameterError` naming ``name``."""
    lo, hi = SCALE_RANGE
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not lo <= scale <= hi:
        raise ParameterError(name, f"must be an integer from {lo} to {hi}, got {scale!r}")
    return int(scale)


def default_scale(ratio: float) -> int:
    """``clamp(round(ratio), 2, 8)``: the integer scale for a fitted LR/HR pixel-size ratio."""
    lo, hi = SCALE_RANGE
    return int(min(hi, max(lo, round(float(ratio)))))


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """``np.dtype(dtype)`` if dleem supports it, else a `DleemError` listing the supported ones."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in SUPPORTED_DTYPES:
        raise DleemError(f"{name} must be one of {', '.join(SUPPORTED_DTYPES)}, got {dtype!r}")
    return dt


def dtype_max(dtype: Any) -> float:
    """The grey value that maps to 1.0: the integer dtype's maximum, 1.0 for float images."""
    dt = np.dtype(dtype)
    return float(np.iinfo(dt).max) if np.issubdtype(dt, np.integer) else 1.0


def dtype_range(dtype: Any) -> float | None:
    """SSIM/PSNR data range of a dtype: the full integer range; None for float (no natural range)."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return float(info.max - info.min)
    return None


def to_dtype(values: Any, dtype: Any) -> np.ndarray:
    """Values as ``dtype``: rounded and clipped to the range of an integer dtype, cast for float."""
    dt = np.dtype(dtype)
    x = np.asarray(values)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return np.clip(np.rint(x), info.min, info.max).astype(dt)
    return x.astype(dt, copy=False)


# ----------------------------------------------------------------------------- bicubic


def _keys_weights(n_lr: int, k: int, a: float = -0.5) -> np.ndarray:
    """Dense (k*n_lr, n_lr) matrix of Keys cubic weights on the fine grid, edges replicated."""
    j = np.arange(k * n_lr)
    u = (j + 0.5) / k - 0.5
    base = np.floor(u).astype(int)
    w = np.zeros((k * n_lr, n_lr), dtype=np.float64)
    for tap in range(-1, 3):
        idx = base + tap
        s = np.abs(u - idx)
        wt = np.where(
            s <= 1,
            (a + 2) * s**3 - (a + 3) * s**2 + 1,
            np.where(s < 2, a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a, 0.0),
        )
        np.add.at(w, (j, np.clip(idx, 0, n_lr - 1)), wt)
    return w


def bicubic_upsample(lr: np.ndarray, k: int, *, out_dtype: Any = None) -> np.ndarray:
    """Upsample ``lr`` by the integer factor ``k`` with Keys bicubic (a = -0.5).

    Parameters
    ----------
    lr : (h, w) array
        LR grey levels (any real dtype).
    k : int
        Integer scale; the output is ``(k*h, k*w)`` on the fine-grid convention.
    out_dtype : dtype, optional
        Output dtype (default ``lr.dtype``); integer dtypes are rounded and clipped.

    Edge pixels are replicated: pass ``BICUBIC_HALO_LR_PX`` of context and cut it off
    afterwards where the image has it.
    """
    x = np.asarray(lr)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {x.shape}")
    if k < 1:
        raise ValueError(f"scale must be >= 1, got {k}")
    up = _keys_weights(x.shape[0], k) @ x.astype(np.float64) @ _keys_weights(x.shape[1], k).T
    return to_dtype(up, x.dtype if out_dtype is None else out_dtype)


# ----------------------------------------------------------------------------- forward model


def forward_margin_lr_px(sigma_lr_px: float) -> int:
    """LR pixels of context that make a tile's forward model equal the whole image's."""
    return math.ceil(BLUR_TRUNCATE * sigma_lr_px) + 1 if sigma_lr_px > 0 else 0


def degrade(fine: np.ndarray, k: int, sigma_lr_px: float) -> np.ndarray:
    """The LR forward model: fine-grid image -> LR grid (float32).

    A Gaussian beam blur of ``sigma_lr_px`` LR px (``k * sigma`` fine px, reflected
    border, truncated at 4 sigma), then the mean over each LR pixel's ``k x k`` fine pixels:
    the detector integrates the blurred signal over the pixel. ``sigma_lr_px`` is the blur
    the registration measured (``lr_blur_sigma_px``); 0 gives the area mean alone.
    """
    x = np.asarray(fine, dtype=np.float32)
    if sigma_lr_px > 0:
        x = ndimage.gaussian_filter(x, sigma_lr_px * k, mode="reflect", truncate=BLUR_TRUNCATE)
    h, w = x.shape[0] // k, x.shape[1] // k
    return x[: h * k, : w * k].reshape(h, k, w, k).mean(axis=(1, 3))


def footprint_variance_lr_px2(sigma_lr_px: float) -> float:
    """Variance (LR px²) of the forward model's point spread: beam blur plus the pixel box.

    A box of one LR pixel has variance 1/12; the registration's refinement fits a Gaussian
    of this variance in place of `degrade` (the Gaussian footprint approximation).
    """
    return float(sigma_lr_px) ** 2 + 1.0 / 12.0


# ----------------------------------------------------------------------------- normalization


_NORMALIZATION_KEYS = ("input_dtype", "dtype_max", "mean", "std")


@dataclass(frozen=True)
class Normalization:
    """The one map between LR grey levels and network units, saved with every model.

    ``x = (raw / dtype_max - mean) / std``; ``mean`` and ``std`` are the whole LR image's,
    in ``raw / dtype_max`` units, so no tile is ever normalised on its own and an
    upscaled mosaic keeps one grey scale.
    """

    input_dtype: str
    dtype_max: float
    mean: float
    std: float

    def __post_init__(self) -> None:
        check_dtype(self.input_dtype, "normalization.input_dtype")
        for name in ("dtype_max", "std"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise DleemError(f"normalization.{name} must be a finite number > 0, got {v!r}")
        if isinstance(self.mean, bool) or not isinstance(self.mean, (int, float)) or not math.isfinite(self.mean):
            raise DleemError(f"normalization.mean must be a finite number, got {self.mean!r}")

    @classmethod
    def from_stats(cls, dtype: Any, mean: float, std: float) -> Normalization:
        """From the whole LR image's mean and std in grey levels (the pairs' ``lr_stats``)."""
        dt = check_dtype(dtype, "LR dtype")
        unit = dtype_max(dt)
        return cls(dt.name, unit, float(mean) / unit, float(std) / unit)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], what: str = "normalization") -> Normalization:
        """From the JSON object of ``config.json``; unknown or missing keys are errors."""
        if not isinstance(data, Mapping):
            raise DleemError(f"{what}: expected an object")
        reject_unknown_keys(data, _NORMALIZATION_KEYS, what, prefix="normalization.")
        missing = [k for k in _NORMALIZATION_KEYS if k not in data]
        if missing:
            raise DleemError(f"{what}: missing key 'normalization.{missing[0]}'")
        return cls(**{k: data[k] for k in _NORMALIZATION_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return {"input_dtype": self.input_dtype, "dtype_max": float(self.dtype_max),
                "mean": float(self.mean), "std": float(self.std)}

    def apply(self, raw: Any) -> np.ndarray:
        """Raw grey levels (any dtype) -> float32 network units."""
        x = np.asarray(raw, dtype=np.float32)
        return x * np.float32(1.0 / (self.dtype_max * self.std)) - np.float32(self.mean / self.std)

    def invert(self, x: Any, dtype: Any = None) -> np.ndarray:
        """Network units -> grey levels in ``dtype`` (default the training dtype), rounded and
        clipped for integer dtypes. Accepts NumPy arrays and torch tensors."""
        if hasattr(x, "detach"):
            x = x.detach().float().cpu().numpy()
        raw = (np.asarray(x, dtype=np.float32) * np.float32(self.std) + np.float32(self.mean)) \
            * np.float32(self.dtype_max)
        return to_dtype(raw, self.input_dtype if dtype is None else dtype)
