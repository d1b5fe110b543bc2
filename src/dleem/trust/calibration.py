"""Novelty against the training blocks, and the predicted error of every block.

Novelty: the block's texture features (`dleem.trust.blocks.FEATURE_NAMES`) are
standardised by the training blocks' median and MAD; the novelty is the distance to
the nearest training block divided by the 99th percentile of the same distance inside
the training areas (each training block against the others, leave-one-out). So novelty
<= 1 lies within the range seen in training; beyond it a block is **unsupported**.

Predicted error: the RMSE, in grey levels of the LR dtype, of SR against the specimen
as the HR beam sees it, from two parts added in quadrature:

    rmse = sqrt((base * max(novelty, 1) ** eta) ** 2 + excess ** 2),
    log(1 + base) = c0 + c1 log(1 + texture),

- ``base``, the error expected from the block's structure (``texture``, its signal std),
  fitted on held-out blocks (the test areas, or cross-validation folds); beyond the
  training range it extrapolates, so it is multiplied by ``novelty ** eta`` there
  (``eta`` fitted where held-out blocks reach beyond the range, else 1);
- ``excess = sigma * sqrt(max(chi - 1, 0))``, the RMS of degrade(SR) - LR beyond the
  noise: the part of the SR error that the LR measurement sees. It is measured, not
  fitted, and a lower bound (degrade only averages an error), so it enters with weight
  1: held-out blocks inside the training range rarely show any, and a fit would drop it
  exactly where it matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

NOVELTY_QUANTILE = 0.99
RIDGE = 1e-3
MIN_BLOCKS = 4


@dataclass
class Reference:
    """The training blocks' features, standardised, and the novelty scale."""

    features: np.ndarray  # (n, d) raw features of the training blocks
    center: np.ndarray
    spread: np.ndarray
    threshold: float  # NN distance (standardised units) at novelty 1

    @classmethod
    def build(cls, features: np.ndarray) -> Reference:
        f = np.asarray(features, dtype=np.float64).reshape(-1, np.shape(features)[-1])
        if len(f) < 2:
            raise ValueError("the novelty needs at least two training blocks")
        center = np.median(f, axis=0)
        spread = 1.4826 * np.median(np.abs(f - center), axis=0)
        spread = np.maximum(spread, 0.05 * np.std(f, axis=0) + 1e-3)
        ref = cls(features=f, center=center, spread=spread, threshold=1.0)
        loo = ref.nn_distance(f, leave_one_out=True)
        ref.threshold = float(max(np.quantile(loo, NOVELTY_QUANTILE), 1e-6))
        return ref

    def nn_distance(self, features: np.ndarray, *, leave_one_out: bool = False) -> np.ndarray:
        """Distance to the nearest training block in standardised units (RMS per feature)."""
        q = (np.asarray(features, dtype=np.float64) - self.center) / self.spread
        r = (self.features - self.center) / self.spread
        shape = q.shape[:-1]
        q = q.reshape(-1, q.shape[-1])
        out = np.empty(len(q))
        r2 = (r * r).sum(axis=1)
        for s in range(0, len(q), 4096):  # bounded memory: 4096 x n distances at a time
            part = q[s:s + 4096]
            d2 = (part * part).sum(axis=1)[:, None] + r2[None, :] - 2.0 * part @ r.T
            if leave_one_out:
                idx = np.arange(s, s + len(part))
                d2[np.arange(len(part)), idx] = np.inf
            out[s:s + len(part)] = np.sqrt(np.maximum(d2.min(axis=1), 0.0) / q.shape[1])
        return out.reshape(shape)

    def novelty(self, features: np.ndarray) -> np.ndarray:
        return self.nn_distance(features) / self.threshold


def design(texture_gl: Any, sigma_gl: Any, chi: Any) -> np.ndarray:
    """Rows of the error model: 1, log(1 + texture) (fitted), log(1 + excess) (measured)."""
    t = np.asarray(texture_gl, dtype=np.float64)
    excess = np.asarray(sigma_gl, dtype=np.float64) * np.sqrt(np.maximum(np.nan_to_num(chi, nan=1.0) - 1.0, 0.0))
    return np.stack([np.ones_like(t), np.log1p(t), np.log1p(excess)], axis=-1)


@dataclass
class Calibration:
    """The fitted error model and how well it ranks held-out blocks."""

    coef: list[float] = field(default_factory=lambda: [0.0, 1.0])
    eta: float = 1.0
    eta_source: str = "default"  # "fitted" | "default"
    spearman: float | None = None
    median_abs_error_gl: float | None = None
    n_blocks: int = 0
    source: str = "none"  # "test_areas" | "crossval" | "none"

    def predict(self, x: np.ndarray, novelty: np.ndarray) -> np.ndarray:
        """Predicted RMSE (grey levels) from `design` rows and the novelty."""
        x = np.asarray(x, dtype=np.float64)
        base = np.expm1(np.clip(x[..., :2] @ np.asarray(self.coef), 0.0, 30.0))
        base = base * np.maximum(np.asarray(novelty, dtype=np.float64), 1.0) ** self.eta
        return np.hypot(base, np.expm1(x[..., 2]))

    def to_dict(self) -> dict[str, Any]:
        return {"coef": [float(c) for c in self.coef], "eta": float(self.eta), "eta_source": self.eta_source,
                "spearman": self.spearman, "median_abs_error_gl": self.median_abs_error_gl,
                "n_blocks": int(self.n_blocks), "source": self.source,
                "model": "rmse = hypot(base * max(novelty, 1) ** eta, excess_gl), "
                         "log(1 + base) = c0 + c1 log(1 + texture_gl)"}

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        keys = {"coef", "eta", "eta_source", "spearman", "median_abs_error_gl", "n_blocks", "source"}
        return cls(**{k: data[k] for k in keys if k in data})


def _ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """c0, c1 of log(1 + base) from `design` rows and log(1 + base) targets."""
    a = x[:, :2].T @ x[:, :2] + RIDGE * len(y) * np.diag([0.0, 1.0])
    return np.linalg.solve(a, x[:, :2].T @ y)


def _base_target(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log(1 + base): the measured RMSE with the measured excess removed in quadrature."""
    excess = np.expm1(x[:, 2])
    return np.log1p(np.sqrt(np.maximum(y * y - excess * excess, 0.0)))


def fit_calibration(x: np.ndarray, novelty: np.ndarray, measured: np.ndarray, source: str) -> Calibration:
    """Fit the error model on held-out blocks: `design` rows ``x``, their ``novelty`` and
    the ``measured`` RMSE (grey levels, HR noise removed). The quality figures are
    leave-one-out: each block is predicted by a fit without it."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
    nov = np.asarray(novelty, dtype=np.float64).ravel()
    y = np.asarray(measured, dtype=np.float64).ravel()
    ok = np.isfinite(y) & np.isfinite(nov) & np.isfinite(x).all(axis=1)
    x, nov, y = x[ok], nov[ok], y[ok]
    n = len(y)
    if n < MIN_BLOCKS:
        level = float(np.median(_base_target(x, y))) if n else 0.0
        return Calibration(coef=[level, 0.0], n_blocks=n, source=source if n else "none")
    inside = nov <= 1.0
    fit_rows = inside if inside.sum() >= MIN_BLOCKS else np.ones(n, bool)
    t = _base_target(x, y)
    coef = _ridge(x[fit_rows], t[fit_rows])
    eta, eta_source = 1.0, "default"
    beyond = ~inside
    if beyond.sum() >= MIN_BLOCKS:  # the inflation beyond the range, where held-out blocks show it
        resid = t[beyond] - x[beyond, :2] @ coef
        lognov = np.log(nov[beyond])
        eta = float(max(np.dot(lognov, resid) / max(np.dot(lognov, lognov), 1e-12), 0.0))
        eta_source = "fitted"
    cal = Calibration(coef=[float(c) for c in coef], eta=eta, eta_source=eta_source, n_blocks=n, source=source)
    loo = np.empty(n)
    for i in range(n):
        keep = fit_rows.copy()
        keep[i] = False
        c = _ridge(x[keep], t[keep]) if keep.sum() >= 3 else coef
        loo[i] = Calibration(coef=list(c), eta=eta).predict(x[i:i + 1], nov[i:i + 1])[0]
    rho = stats.spearmanr(loo, y).statistic if np.ptp(y) > 0 and np.ptp(loo) > 0 else float("nan")
    cal.spearman = None if not math.isfinite(rho) else float(rho)
    cal.median_abs_error_gl = float(np.median(np.abs(loo - y)))
    return cal
