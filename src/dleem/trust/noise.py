"""The LR noise model: variance = a + b * signal, in LR grey levels.

SEM detector noise is shot noise plus a floor (read-out, quantisation): its variance
grows linearly with the signal. Two estimates share one robust fit:

- `noise_from_residual`: from a residual whose signal is known (the registration's
  LR minus its model of LR), the direct measurement;
- `estimate_noise_model`: from an image alone, through Immerkær's high-pass mask
  (J. Immerkær, *Fast noise variance estimation*, CVIU 1996), which cancels locally
  linear signal; the fallback when no registration measured it.

Both bin the pixels by signal level, take the median of the squared residual in each
bin (robust to edges and outliers; for Gaussian noise the median of r² is 0.4549 σ²)
and fit a + b * signal to the bins by weighted least squares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

MEDIAN_CHI2_1 = 0.45493642311957283  # median of a chi-square with 1 degree of freedom
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_IMMERKAER_GAIN = float((_IMMERKAER ** 2).sum())  # 36: white-noise variance gain of the mask
BINS = 16
MIN_PER_BIN = 50


@dataclass(frozen=True)
class NoiseModel:
    """variance(signal) = a + b * signal (LR grey levels²), floored at `floor`."""

    a: float
    b: float
    source: str = "unknown"  # "registration" | "lr_image" | "user"
    floor: float = 1.0 / 12.0  # the quantisation variance of an integer image

    def variance(self, signal: Any) -> np.ndarray:
        s = np.asarray(signal, dtype=np.float32)
        return np.maximum(np.float32(self.a) + np.float32(self.b) * s, np.float32(self.floor))

    def sigma(self, signal: Any) -> np.ndarray:
        return np.sqrt(self.variance(signal))

    def to_dict(self) -> dict[str, Any]:
        return {"a": float(self.a), "b": float(self.b), "source": self.source}

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> NoiseModel:
        a, b = float(data["a"]), float(data["b"])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"noise model a, b must be finite, got {a}, {b}")
        return cls(a=a, b=b, source=source or str(data.get("source", "unknown")))


def _fit(signal: np.ndarray, r2: np.ndarray, gain: float, source: str) -> NoiseModel:
    """a + b * signal through the per-bin medians of ``r2 / gain`` (b >= 0)."""
    ok = np.isfinite(signal) & np.isfinite(r2)
    s, v = signal[ok].astype(np.float64), r2[ok].astype(np.float64) / gain
    if s.size < MIN_PER_BIN:
        raise ValueError("too few pixels to estimate the noise")
    edges = np.unique(np.quantile(s, np.linspace(0, 1, BINS + 1)))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    xs, ys, ws = [], [], []
    for i in range(max(len(edges) - 1, 1)):
        sel = idx == i
        n = int(sel.sum())
        if n >= MIN_PER_BIN:
            xs.append(float(np.median(s[sel])))
            ys.append(float(np.median(v[sel])) / MEDIAN_CHI2_1)
            ws.append(n)
    if not xs:
        return NoiseModel(a=float(np.median(v)) / MEDIAN_CHI2_1, b=0.0, source=source)
    x, y, w = np.array(xs), np.array(ys), np.array(ws, float)
    if len(x) < 2 or np.ptp(x) <= 0:
        return NoiseModel(a=float(np.average(y, weights=w)), b=0.0, source=source)
    b, a = np.polyfit(x, y, 1, w=np.sqrt(w))
    if b < 0:  # noise never falls with the signal: a flat model
        a, b = float(np.average(y, weights=w)), 0.0
    return NoiseModel(a=float(a), b=float(b), source=source)


def noise_from_residual(signal: Any, residual: Any, source: str = "registration") -> NoiseModel:
    """Noise model from ``residual`` (data minus model, NaN where unused) against the
    model's ``signal`` (same shape, LR grey levels)."""
    s = np.asarray(signal, dtype=np.float32)
    r = np.asarray(residual, dtype=np.float32)
    return _fit(s.ravel(), (r * r).ravel(), 1.0, source)


def estimate_noise_model(image: Any, source: str = "lr_image") -> NoiseModel:
    """Noise model of ``image`` alone (LR grey levels): Immerkær residual against the
    3x3 local mean. Texture at the pixel scale is counted as noise where it dominates a
    signal bin, so this is an upper bound on a strongly textured image."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 2 or min(x.shape) < 3:
        raise ValueError("the noise estimate needs a 2-D image of at least 3 x 3 pixels")
    r = ndimage.convolve(x, _IMMERKAER, mode="reflect")[1:-1, 1:-1]
    s = ndimage.uniform_filter(x, 3, mode="reflect")[1:-1, 1:-1]
    return _fit(s.ravel(), (r * r).ravel(), _IMMERKAER_GAIN, source)
