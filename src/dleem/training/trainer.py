"""The trainer: a generator, a discriminator, their optimisers and the EMA, and one step.

`Trainer.train_step` is the whole of one optimisation step: the pixel loss, the
data-consistency and pore terms where their weights are not 0 (plus, in the adversarial
phase, the generator's adversarial term), then the discriminator's update.
Everything around it (data, schedule, validation, checkpoints, files) lives in
`dleem.training.pipeline`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from dleem.errors import DleemError
from dleem.models.folder import state_dict_cpu, unwrap
from dleem.training.losses import (
    EMA,
    LRNoise,
    PorePhase,
    consistency_loss,
    discriminator_loss,
    generator_adv_loss,
    pixel_loss,
    pore_loss,
)
from dleem.training.options import TrainOptions
from dleem.training.state import RunIdentity, TrainState

#: Names of the loss terms `Trainer.train_step` returns, in order.
LOSS_TERMS = ("pixel", "adversarial", "discriminator", "consistency", "pore")


def resolve_precision(precision: str, device: torch.device) -> tuple[str, torch.dtype | None]:
    """The numerics to use and the autocast dtype; sets the TF32 switches on CUDA."""
    p = precision
    if device.type != "cuda":
        if p == "fp16":
            raise DleemError("precision fp16 needs CUDA")
        return ("bf16", torch.bfloat16) if p == "bf16" else ("fp32", None)
    if p == "auto":
        p = "tf32"
    tf32 = p in ("tf32", "bf16", "fp16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return p, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(p)


def all_finite(module: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


class Trainer:
    """The networks, optimisers, gradient scalers and EMA of one run, and its step.

    Parameters
    ----------
    generator, discriminator : torch.nn.Module
        Moved to ``device`` (channels-last on request).
    options : TrainOptions
        Learning rates, losses and their weights, EMA decay, precision (validated).
    device : torch.device
    scale, sigma_lr_px : the LR forward model of the consistency term (k, beam sigma in LR px).
    lr_noise : LRNoise, optional
        The LR noise of the consistency term; needed when ``options.consistency_weight > 0``.
    pore_phase : PorePhase, optional
        Threshold and side of the pore phase; needed when ``options.pore_weight > 0``.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, options: TrainOptions,
                 device: torch.device, *, scale: int = 1, sigma_lr_px: float = 0.0,
                 lr_noise: LRNoise | None = None, pore_phase: PorePhase | None = None) -> None:
        if options.pore_weight and pore_phase is None:
            raise DleemError("the pore term needs the pore phase of the HR targets")
        if options.consistency_weight and lr_noise is None:
            raise DleemError("the consistency term needs the LR noise model")
        self.options = options
        self.device = device
        self.scale, self.sigma_lr_px = scale, float(sigma_lr_px)
        self.lr_noise, self.pore_phase = lr_noise, pore_phase
        self.precision, self.amp_dtype = resolve_precision(options.precision, device)
        fmt = torch.channels_last if options.channels_last else torch.contiguous_format
        self.generator = generator.to(device, memory_format=fmt)
        self.discriminator = discriminator.to(device, memory_format=fmt)
        self.ema = EMA(self.generator, options.ema_decay)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), lr=options.lr, betas=(0.9, 0.99),
                                       weight_decay=options.weight_decay)
        self.opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=options.lr_d, betas=(0.9, 0.99),
                                       weight_decay=options.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module = self.discriminator

    def distribute(self) -> None:
        """Wrap both networks in DDP (after any checkpoint is loaded: DDP broadcasts rank 0's)."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.g_train = DDP(self.generator, device_ids=ids)
        self.d_train = DDP(self.discriminator, device_ids=ids)

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def set_lr(self, multiplier: float) -> None:
        for opt, peak in ((self.opt_g, self.options.lr), (self.opt_d, self.options.lr_d)):
            for group in opt.param_groups:
                group["lr"] = peak * multiplier

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor, adversarial: bool) -> torch.Tensor:
        """One step on a batch; returns the detached losses, in the order of `LOSS_TERMS`."""
        o = self.options
        if o.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
            hr = hr.contiguous(memory_format=torch.channels_last)
        zero = torch.zeros((), device=self.device)
        with self.autocast():
            sr = self.g_train(lr)
            l_pix = pixel_loss(sr, hr, mask, o.loss)
            l_g, l_adv, l_cons, l_pore = l_pix, zero, zero, zero
            if o.consistency_weight:
                l_cons = consistency_loss(sr, lr, self.scale, self.sigma_lr_px, self.lr_noise)
                l_g = l_g + o.consistency_weight * l_cons
            if o.pore_weight:
                l_pore = pore_loss(sr, hr, mask, self.pore_phase)
                l_g = l_g + o.pore_weight * l_pore
            if adversarial:
                d = unwrap(self.d_train)
                d.requires_grad_(False)
                real, fake = d(torch.cat([hr, sr])).chunk(2)
                l_adv = generator_adv_loss(real.detach(), fake, o.adv_loss)
                l_g = l_g + o.adv_weight * l_adv
        self._update(self.opt_g, self.scaler, l_g)
        self.ema.update(self.generator)
        l_d = zero
        if adversarial:
            unwrap(self.d_train).requires_grad_(True)
            with self.autocast():
                real, fake = self.d_train(torch.cat([hr, sr.detach()])).chunk(2)
                l_d = discriminator_loss(real, fake, o.adv_loss)
            self._update(self.opt_d, self.scaler_d, l_d)
        return torch.stack([t.detach().float() for t in (l_pix, l_adv, l_d, l_cons, l_pore)])

    @staticmethod
    def _update(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def finite(self) -> bool:
        """Whether the generator, its EMA and the discriminator hold finite weights only."""
        return all(all_finite(m) for m in (self.generator, self.ema.module, self.discriminator))

    # -- state ------------------------------------------------------------------------
    def state(self, step: int, elapsed_s: float, run: RunIdentity, history: list[dict[str, Any]],
              config: dict[str, Any]) -> TrainState:
        return TrainState(
            step=step, elapsed_s=float(elapsed_s), run=run,
            generator=state_dict_cpu(self.generator),
            discriminator=state_dict_cpu(self.discriminator),
            ema={**self.ema.state_dict(), "module": state_dict_cpu(self.ema.module)},
            opt_g=self.opt_g.state_dict(), opt_d=self.opt_d.state_dict(),
            scaler=self.scaler.state_dict(), scaler_d=self.scaler_d.state_dict(),
            torch_rng=torch.get_rng_state(), history=[dict(r) for r in history], config=config,
        )

    def load(self, state: TrainState) -> None:
        """Continue from a checkpoint: weights, EMA, optimisers, scalers and the torch RNG."""
        self.generator.load_state_dict(state.generator)
        self.discriminator.load_state_dict(state.discriminator)
        self.ema.load_state_dict(state.ema)
        self.opt_g.load_state_dict(state.opt_g)
        self.opt_d.load_state_dict(state.opt_d)
        self.scaler.load_state_dict(state.scaler)
        self.scaler_d.load_state_dict(state.scaler_d)
        torch.set_rng_state(state.torch_rng.cpu())
