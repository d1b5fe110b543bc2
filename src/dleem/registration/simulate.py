"""Known-map LR/HR pairs for tests and benchmarks, rendered from one fine specimen.

Both images are rendered from a common specimen image ``S`` sampled ``m`` times finer than
the LR grid (LR pixel i covers specimen pixels m*i ... m*i + m-1), so the HR -> LR map is
exact by construction:

* LR = pixel-area average (factor m) of ``G(m * lr_blur) * S``: an exact box footprint
  plus a Gaussian beam;
* HR pixel ``x_h`` sits at LR coordinates ``hr_to_lr(x_h)``, i.e. at specimen coordinates
  ``m * (x_lr + 0.5) - 0.5``; its value is ``G * S`` there (Gaussian of the HR pixel
  footprint's variance plus the HR beam), by cubic-spline interpolation (SciPy, exact for
  the smooth blurred specimen; OpenCV's 1/32 px quantised remap is not used here).

Use :mod:`dleem.synth` for realistic acquisitions; this module exists for fast tests with a
truth that does not depend on another module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from dleem.registration.transform import AffineMap


@dataclass
class SimPair:
    """A simulated pair and its truth."""

    lr: np.ndarray
    hr: np.ndarray
    hr_to_lr: AffineMap
    ratio: float


def texture(shape: tuple[int, int], seed: int = 0, grain_px: float = 24.0) -> np.ndarray:
    """A grain/pore-like random texture in [0, 1] (float32), smooth at the 1 px scale."""
    rng = np.random.default_rng(seed)
    h, w = shape
    acc = np.zeros(shape, np.float32)
    for k, amp in ((1.0, 1.0), (0.5, 0.5), (0.25, 0.3), (0.125, 0.2)):
        noise = rng.standard_normal(shape).astype(np.float32)
        sm = cv2.GaussianBlur(noise, (0, 0), grain_px * k / 2.5, borderType=cv2.BORDER_REFLECT)
        acc += amp * sm / (sm.std() + 1e-12)
    grains = 0.5 + 0.5 * np.tanh(2.5 * acc / acc.std())
    grains = cv2.GaussianBlur(grains.astype(np.float32), (0, 0), 1.0)
    return np.clip(grains, 0.0, 1.0)


def simulate_pair(
    *,
    ratio: float = 4.0,
    lr_shape: tuple[int, int] = (96, 96),
    hr_shape: tuple[int, int] = (200, 200),
    hr_to_lr: AffineMap | None = None,
    rotation_deg: float = 0.0,
    centre_lr: tuple[float, float] | None = None,
    lr_blur: float = 0.8,
    hr_blur: float = 0.6,
    lr_noise: float = 0.0,
    hr_noise: float = 0.0,
    lr_gain: float = 1.0,
    lr_offset: float = 0.0,
    hr_gain: float = 1.0,
    hr_offset: float = 0.0,
    oversample: int = 8,
    seed: int = 0,
    specimen: np.ndarray | None = None,
    dtype: type = np.float32,
) -> SimPair:
    """Render an LR image and an HR region with an exactly known HR -> LR map.

    Parameters
    ----------
    ratio : float
        LR/HR pixel-size ratio (used when ``hr_to_lr`` is None).
    lr_shape, hr_shape : (rows, cols)
    hr_to_lr : AffineMap, optional
        The truth; default: scale 1/ratio, ``rotation_deg`` about the HR centre, HR centre
        at ``centre_lr`` (default: LR centre).
    lr_blur : float
        LR beam sigma, LR px (on top of the exact pixel footprint).
    hr_blur : float
        HR beam sigma, HR px.
    lr_noise, hr_noise : float
        Additive Gaussian noise std (grey units of the [0, 1] signal).
    oversample : int
        Specimen pixels per LR pixel.
    specimen : array, optional
        Use this image (any range) as the specimen instead of the procedural texture; it
        must be at least ``oversample * lr_shape``.
    dtype : numpy dtype
        Output dtype; integers are scaled to their full range and rounded.
    """
    m = int(oversample)
    lh, lw = lr_shape
    if hr_to_lr is None:
        cx, cy = centre_lr if centre_lr is not None else ((lw - 1) / 2.0, (lh - 1) / 2.0)
        hc = ((hr_shape[1] - 1) / 2.0, (hr_shape[0] - 1) / 2.0)
        hr_to_lr = AffineMap.from_params(1.0 / ratio, rotation_deg, cx - hc[0], cy - hc[1], center=hc)
    ratio_eff = 1.0 / hr_to_lr.mean_scale
    if specimen is None:
        spec = texture((lh * m, lw * m), seed=seed, grain_px=3.0 * m)
    else:
        spec = np.asarray(specimen, np.float32)[: lh * m, : lw * m]
        if spec.shape != (lh * m, lw * m):
            raise ValueError("specimen smaller than oversample * lr_shape")
        spec = (spec - spec.min()) / max(float(np.ptp(spec)), 1e-12)
    rng = np.random.default_rng(seed + 1000)

    lr_sig = cv2.GaussianBlur(spec, (0, 0), m * lr_blur, borderType=cv2.BORDER_REFLECT)
    lr = cv2.resize(lr_sig, (lw, lh), interpolation=cv2.INTER_AREA).astype(np.float64)

    hr_px = m / ratio_eff  # specimen px per HR px
    sig_hr = math.sqrt((hr_px * hr_blur) ** 2 + hr_px**2 / 12.0)
    hr_sig = ndimage.gaussian_filter(spec.astype(np.float64), sig_hr, mode="reflect")
    ys, xs = np.mgrid[0 : hr_shape[0], 0 : hr_shape[1]].astype(np.float64)
    pts = hr_to_lr.apply(np.stack([xs.ravel(), ys.ravel()], axis=1))
    sx = m * (pts[:, 0] + 0.5) - 0.5
    sy = m * (pts[:, 1] + 0.5) - 0.5
    hr = ndimage.map_coordinates(hr_sig, [sy, sx], order=3, mode="reflect").reshape(hr_shape)

    lr = lr_offset + lr_gain * (lr + (rng.normal(0, lr_noise, lr.shape) if lr_noise > 0 else 0.0))
    hr = hr_offset + hr_gain * (hr + (rng.normal(0, hr_noise, hr.shape) if hr_noise > 0 else 0.0))
    return SimPair(_to_dtype(lr, dtype), _to_dtype(hr, dtype), hr_to_lr, ratio_eff)


def _to_dtype(a: np.ndarray, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        top = np.iinfo(dt).max
        return np.clip(np.rint(a * top), 0, top).astype(dt)
    return a.astype(dt)
