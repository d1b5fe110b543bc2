"""Losses and the EMA of generator weights.

- Pixel loss: MAE (L1, the default: sharper and more robust to SEM noise outliers) or
  MSE (L2, maximises PSNR in expectation but blurs); both honour the target mask.
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

import torch
import torch.nn.functional as F
from torch import nn

from dleem.errors import DleemError
from dleem.training.options import ADV_LOSSES, PIXEL_LOSSES

__all__ = ["ADV_LOSSES", "EMA", "PIXEL_LOSSES", "discriminator_loss", "generator_adv_loss", "pixel_loss"]


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
