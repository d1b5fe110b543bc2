"""Losses and the EMA of generator weights.

- Pixel loss: MAE (L1, the default: sharper and more robust to SEM noise outliers) or
  MSE (L2, maximises PSNR in expectation but blurs); both honour the target mask.
- Data consistency: the SR degraded by the LR forward model (`degrade`, the torch twin
  of `dleem.imaging.degrade`) against the LR input, in units of the LR noise and free
  within 2 sigma. It penalises detail the measurement contradicts (and the omission of
  detail it shows beyond its noise) and lets the noise alone.
- Pore term: a soft segmentation of SR (a sigmoid around the HR pore threshold) against
  the pore phase of the lightly smoothed HR (its own noise is not a pore), as a Dice loss
  over the batch, so small pores count as much as the large ones do per pixel of error.
- Adversarial loss: relativistic average (Jolicoeur-Martineau 2019, as in ESRGAN,
  Wang et al. 2018) or the plain non-saturating GAN loss (Goodfellow et al. 2014).
- EMA of the generator weights (Polyak averaging) with the TF-style warm-up of the decay,
  so short CPU runs do not average in their random start.

References
----------
Jolicoeur-Martineau, A. (2019) The relativistic discriminator: a key element missing
from standard GAN. ICLR.
Wang, X. et al. (2018) ESRGAN: enhanced super-resolution generative adversarial
networks. ECCVW.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dleem.errors import DleemError
from dleem.imaging import BLUR_TRUNCATE, Normalization, forward_margin_lr_px
from dleem.training.options import ADV_LOSSES, PIXEL_LOSSES
from dleem.trust.noise import NoiseModel

__all__ = ["ADV_LOSSES", "EMA", "LRNoise", "PIXEL_LOSSES", "PorePhase", "consistency_loss", "degrade",
           "discriminator_loss", "gaussian_blur", "generator_adv_loss", "pixel_loss", "pore_loss"]

#: Gaussian sigma (fine px) that smooths the HR target before its pore phase is taken.
PORE_TARGET_SMOOTH_PX = 1.0


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor | None, kind: str = "mae") -> torch.Tensor:
    """Mean absolute (``"mae"``) or squared (``"mse"``) error over valid target pixels."""
    diff = sr.float() - hr.float()
    if kind == "mae":
        err = diff.abs()
    elif kind == "mse":
        err = diff * diff
    else:
        raise DleemError(f"unknown pixel loss {kind!r} (choose mae or mse)")
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def _symmetric_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Pad ``r`` samples on both sides of ``dim`` as scipy's ``mode="reflect"`` does (d c b a | a b c d)."""
    n = x.shape[dim]
    idx = torch.arange(-r, n + r, device=x.device)
    period = 2 * n
    idx = idx % period
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def gaussian_blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W), scipy's ``gaussian_filter`` kernel and border."""
    if sigma_px <= 0:
        return x
    r = int(BLUR_TRUNCATE * sigma_px + 0.5)
    t = torch.arange(-r, r + 1, device=x.device, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma_px) ** 2)
    g = (g / g.sum()).to(x.dtype)
    x = F.conv2d(_symmetric_pad(x, r, 2), g.view(1, 1, -1, 1))
    return F.conv2d(_symmetric_pad(x, r, 3), g.view(1, 1, 1, -1))


def degrade(sr: torch.Tensor, scale: int, sigma_lr_px: float) -> torch.Tensor:
    """The LR forward model on (N, 1, k h, k w): beam blur, then each LR pixel's k x k mean.

    The torch twin of `dleem.imaging.degrade` (tests hold them equal)."""
    return F.avg_pool2d(gaussian_blur(sr, sigma_lr_px * scale), scale)


#: Residuals of the consistency term within this many noise sigmas are the noise's, not the
#: SR's: they cost nothing, so the SR is not pushed to reproduce the LR's noise.
CONSISTENCY_TOLERANCE_SIGMA = 2.0


@dataclass(frozen=True)
class LRNoise:
    """The LR noise model (`dleem.trust.noise.NoiseModel`: variance = a + b * signal in grey
    levels², floored) in network units, for torch tensors."""

    model: NoiseModel
    normalization: Normalization

    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        """Noise sigma (network units) of normalised LR values ``x``."""
        n, m = self.normalization, self.model
        gain = n.dtype_max * n.std
        raw = x * gain + n.mean * n.dtype_max
        return (m.a + m.b * raw).clamp_min(m.floor).sqrt() / gain


def consistency_loss(sr: torch.Tensor, lr: torch.Tensor, scale: int, sigma_lr_px: float,
                     noise: LRNoise) -> torch.Tensor:
    """How far ``degrade(sr)`` departs from the LR input beyond its noise: the mean over LR
    pixels (away from the crop edge, where the blur would reach past the crop) of
    ``max(|residual| / sigma - CONSISTENCY_TOLERANCE_SIGMA, 0)``."""
    low = (degrade(sr.float(), scale, sigma_lr_px) - lr.float()) / noise.sigma(lr.float())
    m = forward_margin_lr_px(sigma_lr_px)
    if m and min(low.shape[-2:]) > 2 * m:
        low = low[..., m:-m, m:-m]
    return F.relu(low.abs() - CONSISTENCY_TOLERANCE_SIGMA).mean()


@dataclass(frozen=True)
class PorePhase:
    """Where the pore phase lies in network units: the HR threshold, the sigmoid's softness
    (a quarter of the distance from the threshold to the nearer phase mean: SR at either
    phase's mean is at least 98 % sure) and the side."""

    threshold: float
    softness: float
    dark: bool = True

    @classmethod
    def from_values(cls, values: np.ndarray, dark: bool = True) -> PorePhase:
        """Otsu's threshold of HR values (network units; the evaluation's rule) and the means of
        its two sides."""
        from dleem.evaluation.pores import choose_threshold

        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0 or v.min() == v.max():
            raise DleemError("the HR targets hold a single grey phase: no pore threshold for the pore term")
        t = choose_threshold(v, "otsu")
        low, high = v[v <= t], v[v > t]
        gap = min(t - float(low.mean()), float(high.mean()) - t) if low.size and high.size else 0.0
        if not math.isfinite(gap) or gap <= 0:
            raise DleemError("the HR targets hold a single grey phase: no pore threshold for the pore term")
        return cls(threshold=t, softness=gap / 4.0, dark=dark)

    def soft(self, x: torch.Tensor) -> torch.Tensor:
        """Probability of pore of each pixel of ``x``."""
        z = (self.threshold - x) / self.softness
        return torch.sigmoid(z if self.dark else -z)


def pore_loss(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor | None, phase: PorePhase) -> torch.Tensor:
    """Soft Dice loss of the pore phase of SR against that of the (smoothed) HR, over the batch."""
    target = phase.soft(gaussian_blur(hr.float(), PORE_TARGET_SMOOTH_PX)).detach()
    target = (target > 0.5).float()
    p = phase.soft(sr.float())
    if mask is not None:
        m = mask.to(p.dtype)
        p, target = p * m, target * m
    inter = (p * target).sum()
    return 1.0 - (2.0 * inter + 1.0) / (p.sum() + target.sum() + 1.0)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "ragan") -> torch.Tensor:
    """Discriminator loss from its logits on real HR and generated (detached) SR patches."""
    real, fake = real.float(), fake.float()
    if kind == "ragan":
        return 0.5 * (_bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0))
    if kind == "gan":
        return 0.5 * (_bce(real, 1.0) + _bce(fake, 0.0))
    raise DleemError(f"unknown adversarial loss {kind!r} (choose ragan or gan)")


def generator_adv_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "ragan") -> torch.Tensor:
    """Generator's adversarial loss (the relativistic form also uses the real logits)."""
    real, fake = real.float(), fake.float()
    if kind == "ragan":
        return 0.5 * (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0))
    if kind == "gan":
        return _bce(fake, 1.0)
    raise DleemError(f"unknown adversarial loss {kind!r} (choose ragan or gan)")


# ----------------------------------------------------------------------------- EMA


class EMA:
    """Exponential moving average of a module's parameters and buffers.

    ``decay_t = min(decay, (1 + t) / (10 + t))``: early updates follow the weights
    closely, later ones average over ~1/(1 - decay) steps.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise DleemError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.module.buffers(), module.buffers(), strict=True):
            e.copy_(b)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
