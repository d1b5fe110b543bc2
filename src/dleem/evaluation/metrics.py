"""Image-quality metrics on the fine (k-times) grid: SSIM, PSNR, and the bicubic baseline.

Conventions (stated in the report and in docs/report.md):

- Grid: fine pixel ``j`` has its centre at LR coordinate ``(j + 0.5) / k - 0.5``, so LR pixel
  ``i`` covers fine pixels ``k*i .. k*i + k - 1`` (the pairs contract).
- Bicubic: Keys cubic convolution with ``a = -0.5`` (MATLAB ``imresize``, PIL), separable,
  edge pixels replicated; the result is rounded and clipped to the LR dtype, as an image
  written in that dtype would be, so it is compared with SR on the same footing.
- Data range: the full range of the LR dtype (255 for uint8, 65535 for uint16; for float
  input the range of the reference), as scikit-image's ``data_range`` expects.
- Border: ``shave`` pixels (default: the scale ``k``) are cut from every side of a tile before
  any metric (the "shave" convention of the super-resolution literature, e.g. Lim et al. 2017).
- SSIM: ``skimage.metrics.structural_similarity`` with Gaussian weights (sigma 1.5),
  ``use_sample_covariance=False``, i.e. the settings of Wang et al. (2004).
- PSNR: ``10 log10(data_range**2 / MSE)``; identical images give ``inf``, which stays a float
  in Python and is written as ``null`` in JSON.

References
----------
Keys, R. (1981). Cubic convolution interpolation for digital image processing. IEEE TASSP 29(6).
Wang, Z., Bovik, A. C., Sheikh, H. R., Simoncelli, E. P. (2004). Image quality assessment:
from error visibility to structural similarity. IEEE TIP 13(4).
Lim, B. et al. (2017). Enhanced deep residual networks for single image super-resolution. CVPRW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.metrics import mean_squared_error, structural_similarity

#: LR pixels of context the bicubic kernel needs on each side.
BICUBIC_HALO_LR_PX = 2


def dtype_range(dtype: np.dtype | type) -> float:
    """The data range used by SSIM/PSNR: the full range of an integer dtype.

    Float dtypes have no natural range: callers pass the range explicitly (``None`` here).
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.max - info.min)
    if dtype == np.bool_:
        return 1.0
    raise ValueError(f"no data range for dtype {dtype}: pass data_range explicitly")


def _keys_weights(n_lr: int, k: int, a: float = -0.5) -> np.ndarray:
    """Dense (k*n_lr, n_lr) matrix of Keys cubic weights, edge pixels replicated."""
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


def bicubic_upsample(lr: np.ndarray, k: int, *, out_dtype: np.dtype | None = None) -> np.ndarray:
    """Upsample ``lr`` by the integer factor ``k`` with Keys bicubic (a = -0.5).

    Parameters
    ----------
    lr : (h, w) array
        LR pixels (any real dtype).
    k : int
        Integer scale; the output is ``(k*h, k*w)`` on the fine-grid convention above.
    out_dtype : dtype, optional
        Output dtype; integer dtypes are rounded and clipped. Default: ``lr.dtype``.

    Returns
    -------
    ndarray
        The upsampled image. Edge pixels are replicated, so pass an LR crop with
        ``BICUBIC_HALO_LR_PX`` of context and cut it off afterwards where context exists.
    """
    if lr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {lr.shape}")
    if k < 1:
        raise ValueError(f"scale must be >= 1, got {k}")
    x = np.asarray(lr, dtype=np.float64)
    wy = _keys_weights(x.shape[0], k)
    wx = _keys_weights(x.shape[1], k)
    up = wy @ x @ wx.T
    out_dtype = np.dtype(lr.dtype if out_dtype is None else out_dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        up = np.clip(np.rint(up), info.min, info.max)
    return up.astype(out_dtype)


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """Cut ``border`` pixels from every side (the super-resolution 'shave' convention)."""
    if border <= 0:
        return image
    if 2 * border >= min(image.shape):
        raise ValueError(f"border {border} leaves nothing of a {image.shape} tile")
    return image[border:-border, border:-border]


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    mse = mean_squared_error(np.asarray(ref, np.float64), np.asarray(pred, np.float64))
    if mse == 0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """SSIM with the settings of Wang et al. (2004): Gaussian window sigma 1.5."""
    return float(
        structural_similarity(
            np.asarray(ref, np.float64),
            np.asarray(pred, np.float64),
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


@dataclass(frozen=True)
class TileScore:
    """SSIM (1 = identical) and PSNR (dB) of one tile against its reference."""

    ssim: float
    psnr: float


def score_tile(pred: np.ndarray, ref: np.ndarray, *, data_range: float, border: int) -> TileScore:
    """SSIM and PSNR of ``pred`` against ``ref`` after cutting ``border`` px from each side."""
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {ref.shape}")
    p, r = shave(pred, border), shave(ref, border)
    return TileScore(ssim=ssim(p, r, data_range), psnr=psnr(p, r, data_range))


def finite_median(values: list[float] | np.ndarray) -> float | None:
    """Median that keeps ``inf`` (identical tiles) and ignores NaN; None when empty."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None
    return float(np.median(v))
