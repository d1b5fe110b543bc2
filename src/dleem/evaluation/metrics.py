"""Image-quality metrics on the fine (k-times) grid: SSIM, PSNR, and the bicubic baseline.

Conventions (stated in the report and in docs/report.md):

- Grid: fine pixel ``j`` has its centre at LR coordinate ``(j + 0.5) / k - 0.5``, so LR pixel
  ``i`` covers fine pixels ``k*i .. k*i + k - 1`` (the pairs contract).
- Bicubic: `dleem.imaging.bicubic_upsample` (Keys, ``a = -0.5``), rounded and clipped to the
  LR dtype, as an image written in that dtype would be, so it is compared with SR on the
  same footing. Training validation scores with these same functions.
- Data range: `dleem.imaging.dtype_range` of the LR dtype (255 for uint8, 65535 for uint16;
  for float input the LR image's range), as scikit-image's ``data_range`` expects.
- Border: ``shave`` pixels (default: the scale ``k``) are cut from every side of a tile before
  any metric (the "shave" convention of the super-resolution literature, e.g. Lim et al. 2017).
- SSIM: ``skimage.metrics.structural_similarity`` with Gaussian weights (sigma 1.5),
  ``use_sample_covariance=False``, i.e. the settings of Wang et al. (2004).
- PSNR: ``10 log10(data_range**2 / MSE)``; identical images give ``inf``, which stays a float
  in Python and is written as ``null`` in JSON.

References
----------
Wang, Z., Bovik, A. C., Sheikh, H. R., Simoncelli, E. P. (2004). Image quality assessment:
from error visibility to structural similarity. IEEE TIP 13(4).
Lim, B. et al. (2017). Enhanced deep residual networks for single image super-resolution. CVPRW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.metrics import mean_squared_error, structural_similarity


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
