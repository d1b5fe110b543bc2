"""`train(workspace, model_dir, options)`: the whole of ``dleem train``, on the workspace.

It reads the pairs, resumes or starts a run, trains (`Trainer.train_step` under a
`Schedule`), validates as the report scores (`dleem.training.validation`), writes
checkpoints, and finally the model folder (``generator.safetensors`` = EMA weights,
``generator_raw.safetensors``, ``config.json``, ``log.csv``, ``curves.png``) and the step's
record in the workspace manifest. Any generator module trains under exactly the same
data, budget, schedule and log (``generator=...``).

Reproducibility: with ``steps`` and a seed, the same device gives the same model
(deterministic algorithms, crops drawn from ``(seed, rank, step)``); ``resume`` continues
a killed run exactly from its last checkpoint.

Stopping: raising `dleem.errors.Cancelled` in the progress callback writes a checkpoint
of the current state (for ``resume``) and no model files. A non-finite loss stops the run
with a `DleemError` naming the step and the loss term; checkpoints from before it are kept
and no model is written.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dleem.errors import Cancelled, DleemError
from dleem.io.atomic import (
    OutputError,
    check_output_dir,
    files_under,
    remove_new_files,
    remove_stale_parts,
)
from dleem.models.arch import preset_arch, receptive_field_of
from dleem.models.config import ModelConfig
from dleem.models.discriminator import PatchDiscriminator
from dleem.models.folder import save_model
from dleem.models.generator import build_generator, measure_receptive_field
from dleem.progress import ProgressCallback, report
from dleem.training import ddp
from dleem.training.curves import plot_curves, write_log
from dleem.training.data import PairData, batch_generator, load_pairs, sample_batch
from dleem.training.losses import LRNoise, PorePhase
from dleem.training.options import TrainOptions
from dleem.training.schedule import Schedule
from dleem.training.state import CHECKPOINT_DIR, RunIdentity, TrainState, checkpoints
from dleem.training.trainer import LOSS_TERMS, Trainer
from dleem.training.trust import fit_trust, lr_noise_model
from dleem.training.validation import ValidationSet, validation_tiles
from dleem.workspace import StepRecord, Workspace

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced."""

    model_dir: Path
    steps: int
    elapsed_s: float
    samples_per_s: float
    val_psnr_db: float | None
    val_ssim: float | None
    val_psnr_bicubic_db: float | None
    val_ssim_bicubic: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


def train(
    workspace: str | PathLike[str] | Workspace,
    model_dir: str | PathLike[str],
    options: TrainOptions | None = None,
    *,
    generator: nn.Module | None = None,
    arch: dict[str, Any] | None = None,
    discriminator: nn.Module | None = None,
    regions: Collection[str] | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train a generator on ``WORKSPACE/pairs`` and write the model folder ``model_dir``.

    Parameters
    ----------
    workspace : path or Workspace
        Workspace with ``pairs/manifest.json``.
    model_dir : path
        Output model folder: ``generator.safetensors`` (EMA), ``generator_raw.safetensors``,
        ``config.json``, ``log.csv``, ``curves.png``, ``checkpoints/``.
    options : TrainOptions
        Budget, losses, schedule, device (defaults: the GAN, 10 minutes).
    generator : torch.nn.Module, optional
        Any module (N,1,h,w) -> (N,1,k*h,k*w); default: the ``options.preset`` dleem
        generator. Its receptive field is taken from ``receptive_field_lr_px`` or measured.
    arch : dict, optional
        How ``config.json`` describes a given ``generator`` (``{"name": ..., ...}``); for
        `load_model` to rebuild it, ``name`` must be in `dleem.models.arch.ARCHITECTURES`.
    discriminator : torch.nn.Module, optional
        Default: a spectral-norm `PatchDiscriminator` sized by the preset.
    regions : collection of str, optional
        Train only on the train and validation areas of these region ids (cross-validation
        leaves one out); default all. Recorded in ``config.json`` ``training.regions``.
    progress : callable, optional
        ``progress("train", done, total)`` after every step: steps, or whole seconds of a
        time budget. Raising `dleem.errors.Cancelled` in it stops the run cleanly.
    """
    options = dataclasses.replace(options) if options is not None else TrainOptions()
    options.validate()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    check_output_dir(model_dir, "model folder")
    remove_stale_parts(model_dir, Path(model_dir) / CHECKPOINT_DIR)
    info = ddp.setup(options.device)
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    existing = files_under(model_dir)
    try:
        run = _Run(ws, Path(model_dir), options, info, progress, regions)
        return run.execute(generator, arch, discriminator)
    except BaseException as error:
        kept = checkpoints(Path(model_dir))
        if not kept and info.is_main:  # nothing to resume: leave no half model folder
            remove_new_files(model_dir, existing)
        if isinstance(error, OutputError) and kept:
            raise OutputError(error.path, error, advice="free space and resume (--resume) from the "
                              "checkpoints kept in " + str(Path(model_dir) / CHECKPOINT_DIR)) from None
        raise
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.backends.cudnn.benchmark = prev_bench
        ddp.teardown(info)


def build_config(data: PairData, arch: dict[str, Any], receptive_field: int,
                 training: dict[str, Any]) -> ModelConfig:
    """The model's config.json from the pairs (normalisation, pixel sizes, blur, checksums)."""
    return ModelConfig(
        scale=data.scale, arch=dict(arch), receptive_field_lr_px=int(receptive_field),
        normalization=data.normalization, lr_pixel_size_um=data.lr_pixel_size_um,
        hr_pixel_size_um=data.hr_pixel_size_um, lr_blur_sigma_px=data.lr_blur_sigma_px,
        train_data=data.checksums, training=training,
    )


def pore_phase(data: PairData, dark: bool = True, max_values: int = 1 << 20) -> PorePhase:
    """The pore phase of the training targets: Otsu's threshold of the valid HR pixels of the
    train areas (network units), on an even subsample of at most ``max_values``."""
    values = np.concatenate([b.hr.cpu().numpy()[b.mask.cpu().numpy()] for b in data.train])
    step = max(1, values.size // max_values)
    return PorePhase.from_values(values[::step], dark=dark)


def _set_determinism(options: TrainOptions, device: torch.device) -> None:
    torch.manual_seed(options.seed)
    if options.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"


def _row(step: int, elapsed: float, phase: str, lr: float | None, means: list[float] | None,
         val: tuple[float, float] | None, bicubic: tuple[float, float] | None,
         rate: float | None) -> dict[str, Any]:
    """One line of log.csv."""
    return {
        "step": step, "elapsed_s": round(elapsed, 3), "phase": phase, "lr": lr,
        "loss_pixel": means[0] if means else None,
        "loss_adv": means[1] if means and phase == "gan" else None,
        "loss_d": means[2] if means and phase == "gan" else None,
        "loss_consistency": means[3] if means else None,
        "loss_pore": means[4] if means else None,
        "val_psnr_db": val[0] if val else None, "val_ssim": val[1] if val else None,
        "val_psnr_bicubic_db": bicubic[0] if bicubic else None,
        "val_ssim_bicubic": bicubic[1] if bicubic else None,
        "samples_per_s": rate,
    }


def _mean_losses(window: list[torch.Tensor], step: int) -> list[float]:
    """Mean losses of the steps since the last log; a non-finite one stops the run."""
    losses = torch.stack(window).cpu()
    bad = ~torch.isfinite(losses)
    if bad.any():
        i, term = (int(v) for v in torch.nonzero(bad)[0])
        value = "NaN" if math.isnan(float(losses[i, term])) else "infinite"
        raise DleemError(f"training diverged at step {step - len(window) + i + 1}: the {LOSS_TERMS[term]} loss"
                         f" is {value}; no model was written, and any checkpoint saved before that step is"
                         " kept (lower lr and resume, or start over)")
    return losses.mean(dim=0).tolist()


class _Run:
    """One call of `train`: the run's set-up, its loop, and its files."""

    def __init__(self, ws: Workspace, model_dir: Path, options: TrainOptions, info: ddp.DistInfo,
                 progress: ProgressCallback | None, regions: Collection[str] | None = None) -> None:
        self.ws, self.model_dir, self.options, self.info = ws, model_dir, options, info
        self.regions = None if regions is None else sorted(str(r) for r in regions)
        self.progress = progress if info.is_main else None
        self.history: list[dict[str, Any]] = []

    # -- set-up -----------------------------------------------------------------------
    def _resume_state(self) -> TrainState | None:
        o, found = self.options, checkpoints(self.model_dir)
        if found and not o.resume and not o.force:
            raise DleemError(f"{self.model_dir}: holds checkpoints of an earlier run; continue it "
                             "with resume (--resume) or start over with force (--force)")
        if o.resume and found:
            return TrainState.load(found[-1], self.info.device)
        if o.resume:
            log.warning("%s: no checkpoint to resume from; starting a new run", self.model_dir)
        if found and o.force and self.info.is_main:
            for c in found:
                c.unlink()
        return None

    def _networks(self, generator: nn.Module | None, arch: dict[str, Any] | None, k: int,
                  ) -> tuple[nn.Module, dict[str, Any], int]:
        if generator is None:
            arch = preset_arch(self.options.preset)
            return build_generator(arch, k), arch, receptive_field_of(arch)
        arch = dict(arch or {"name": type(generator).__name__})
        rf = getattr(generator, "receptive_field_lr_px", None)
        rf = int(rf) if rf is not None else measure_receptive_field(generator, k)
        if getattr(generator, "scale", k) != k:
            raise DleemError(f"scale mismatch: the generator upscales by {generator.scale}, the pairs by {k}")
        return generator, arch, rf

    def execute(self, generator: nn.Module | None, arch: dict[str, Any] | None,
                discriminator: nn.Module | None) -> TrainResult:
        o, info, t_start = self.options, self.info, time.perf_counter()
        data = load_pairs(self.ws, expected_scale=o.scale, min_box_lr_px=4, regions=self.regions)
        if not any(min(b.lr.shape) >= o.patch for b in data.train):
            largest = max(min(b.lr.shape) for b in data.train)
            raise DleemError(f"{data.manifest_path}: no train area fits a {o.patch} LR px patch"
                             f" (largest side {largest}); use a patch of {max(4, largest)} or less")
        state = self._resume_state()
        _set_determinism(o, info.device)
        generator, arch, rf = self._networks(generator, arch, data.scale)
        preset = o.preset if arch.get("name") == "dleem" else None
        self.run = RunIdentity(pairs_sha256=data.checksums["manifest_sha256"], loss=o.loss, seed=o.seed,
                               preset=preset, arch=arch, lr_dtype=data.lr_dtype, scale=data.scale,
                               adv_weight=float(o.adv_weight), regions=self.regions,
                               consistency_weight=float(o.consistency_weight),
                               pore_weight=float(o.pore_weight))
        if state is not None:
            self.run.check_resumes(state.run, str(checkpoints(self.model_dir)[-1]))
        if discriminator is None:
            discriminator = PatchDiscriminator(width=o.disc_width, stages=o.disc_stages)
        phase = pore_phase(data, o.pores == "dark") if o.pore_weight else None
        noise = (LRNoise(lr_noise_model(self.ws, data.manifest), data.normalization)
                 if o.consistency_weight else None)
        self.trainer = trainer = Trainer(generator, discriminator, o, info.device, scale=data.scale,
                                         sigma_lr_px=data.lr_blur_sigma_px or 0.0, lr_noise=noise,
                                         pore_phase=phase)
        step, elapsed = 0, 0.0
        if state is not None:
            trainer.load(state)
            step, elapsed, self.history = state.step, state.elapsed_s, list(state.history)
            log.info("resuming %s at step %d", self.model_dir, step)
        if info.distributed:
            trainer.distribute()
        self.data = data.to(info.device)
        self.val = validation_tiles(data, o.val_tile, o.val_tiles) if info.is_main else None
        if self.val is not None:
            self.val.to(info.device)
        self.config = build_config(data, arch, rf, {
            "workspace": str(self.ws.path.resolve()), "preset": preset, "loss": o.loss,
            "recipe": o.recipe, "adv_loss": o.adv_loss, "adv_weight": o.adv_weight,
            "consistency_weight": o.consistency_weight, "pore_weight": o.pore_weight, "pores": o.pores,
            "lr_noise_model": None if noise is None else {"a": noise.model.a, "b": noise.model.b},
            "pore_threshold": (None if phase is None
                               else float(data.normalization.invert(np.float32(phase.threshold), np.float32))),
            "warmup": o.warmup, "steps": o.steps,
            "minutes": o.minutes, "batch": o.batch, "patch": o.patch, "lr": o.lr, "schedule": o.schedule,
            "ema_decay": o.ema_decay, "seed": o.seed, "device": str(info.device),
            "precision": trainer.precision, "channels_last": o.channels_last, "world_size": info.world_size,
            "rot90": o.rot90, "regions": self.regions,
        })
        if info.is_main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
        self.bicubic = self.val.score_bicubic() if self.val is not None else None
        self.schedule = Schedule(o.steps, o.minutes, o.warmup, o.adv_weight > 0, o.schedule)
        self.elapsed0 = elapsed
        step, elapsed, last_val = self._loop(step, elapsed)
        return self._finish(step, elapsed, last_val, time.perf_counter() - t_start)

    # -- the loop ---------------------------------------------------------------------
    def _loop(self, step: int, elapsed0: float) -> tuple[int, float, tuple[float, float] | None]:
        o, info, trainer, sched = self.options, self.info, self.trainer, self.schedule
        t0, window = time.perf_counter(), []
        self.rate_mark = (t0, step)
        sched.start(step, elapsed0)
        last_val = self._validate(step, elapsed0, "pixel", 0.0, None) if step == 0 else None
        while True:
            elapsed, cancelled = elapsed0 + time.perf_counter() - t0, self._report(step, elapsed0, t0)
            elapsed, cancelled = ddp.broadcast_values([elapsed, cancelled], info)
            if cancelled:
                self._checkpoint(step, elapsed)
                raise Cancelled(f"training cancelled at step {step}; resume continues it")
            f = sched.fraction(step, elapsed)
            if f >= 1.0:
                return step, elapsed, last_val
            adversarial, mult = sched.adversarial_on(f), sched.lr_multiplier(f)
            trainer.set_lr(mult)
            batch = sample_batch(self.data, o.batch, o.patch, batch_generator(o.seed, info.rank, step),
                                 rot90=o.rot90)
            window.append(trainer.train_step(*batch, adversarial))
            step += 1
            elapsed = elapsed0 + time.perf_counter() - t0
            f = sched.fraction(step, elapsed)
            do_val = self.val is not None and sched.validation_due(f)
            do_ckpt = o.checkpoint_every > 0 and step % o.checkpoint_every == 0 and f < 1.0
            do_log = step % o.log_every == 0 or do_val or f >= 1.0
            means = _mean_losses(window, step) if do_log or do_ckpt else None
            if do_log:
                window, phase = [], "gan" if adversarial else "pixel"
                if do_val:
                    last_val = self._validate(step, elapsed, phase, o.lr * mult, means)
                elif info.is_main:
                    self.history.append(_row(step, elapsed, phase, o.lr * mult, means, None, None, self._rate(step)))
            if do_ckpt:
                self._checkpoint(step, elapsed)

    def _report(self, step: int, elapsed0: float, t0: float) -> bool:
        """Report progress; True when the callback cancelled the run."""
        try:
            report(self.progress, "train", *self.schedule.progress(step, elapsed0 + time.perf_counter() - t0))
        except Cancelled:
            return True
        return False

    def _rate(self, step: int) -> float | None:
        """Samples per second since the last log row (all processes together)."""
        now, (t_mark, step_mark) = time.perf_counter(), self.rate_mark
        self.rate_mark = (now, step)
        if now <= t_mark:
            return None
        return (step - step_mark) * self.options.batch * self.info.world_size / (now - t_mark)

    def _validate(self, step: int, elapsed: float, phase: str, lr: float | None,
                  means: list[float] | None) -> tuple[float, float] | None:
        """Score the EMA generator, add the log row, rewrite log.csv, log one line (main rank)."""
        if self.val is None:
            return None
        t = time.perf_counter()
        rate = self._rate(step) if means is not None else None
        val = self.val.score_generator(self.trainer.ema.module, self.trainer.autocast, self.options.channels_last)
        f = self.schedule.fraction(step, elapsed)
        if means is not None:  # a validation inside the loop: place the next one
            self.schedule.validated(f, time.perf_counter() - t)
        self.history.append(_row(step, elapsed, phase, lr, means, val, self.bicubic, rate))
        write_log(self.model_dir / "log.csv", self.history)
        left = elapsed * (1 - f) / f if f > 0 else float("nan")
        log.info("step %d: loss %s, validation PSNR %.2f dB (bicubic %.2f dB), SSIM %.3f, about %s s left",
                 step, f"{means[0]:.4g}" if means else "-", val[0], self.bicubic[0], val[1],
                 f"{left:.0f}" if math.isfinite(left) else "?")
        return val

    def _checkpoint(self, step: int, elapsed: float) -> None:
        if not self.info.is_main:
            return
        if not self.trainer.finite():
            raise DleemError(f"training diverged by step {step}: the weights are not finite; the last good"
                             " checkpoint is kept and no model was written (lower lr and resume, or start over)")
        state = self.trainer.state(step, elapsed, self.run, self.history, self.config.to_dict())
        state.save(self.model_dir, self.options.keep_checkpoints)

    # -- the files --------------------------------------------------------------------
    def _finish(self, step: int, elapsed: float, last_val: tuple[float, float] | None,
                seconds: float) -> TrainResult:
        o, info, bicubic = self.options, self.info, self.bicubic
        samples = o.batch * info.world_size
        if info.is_main:
            if self.val is not None and (not self.history or self.history[-1].get("val_psnr_db") is None):
                last_val = self._validate(step, elapsed, self.schedule.final_phase(), None, None)
            self._checkpoint(step, elapsed)
            elapsed_before = self.elapsed0
            self.config.training.update({
                "steps_done": step, "elapsed_s": round(elapsed, 3),
                "samples_per_s": round(step * samples / max(elapsed - elapsed_before, 1e-9), 3) if step else None,
                "val_psnr_db": last_val[0] if last_val else None, "val_ssim": last_val[1] if last_val else None,
                "val_psnr_bicubic_db": bicubic[0] if bicubic else None,
                "val_ssim_bicubic": bicubic[1] if bicubic else None,
            })
            write_log(self.model_dir / "log.csv", self.history)
            adv = "".join(f" + {w:g} {name}" for w, name in (
                (o.adv_weight, o.adv_loss), (o.consistency_weight, "consistency"), (o.pore_weight, "pore")) if w > 0)
            plot_curves(self.model_dir / "curves.png", self.history,
                        f"{self.config.arch.get('name')} x{self.data.scale}, {o.loss}{adv}, {step} steps")
            # the weights and config.json last: a folder that has them is a finished model
            save_model(self.model_dir, self.trainer.ema.module, self.config, raw_generator=self.trainer.generator)
            fit_trust(self.ws, self.model_dir, self.trainer.ema.module, self.config, info.device,
                      regions=self.regions)
            self.ws.record_step("train:" + self.model_dir.name, StepRecord(
                inputs={"pairs_manifest_sha256": self.data.checksums["manifest_sha256"]},
                parameters=o.to_dict(), outputs=[str(self.model_dir)], seconds=round(seconds, 3)))
        if info.distributed:
            torch.distributed.barrier()
        return TrainResult(
            model_dir=self.model_dir, steps=step, elapsed_s=elapsed, samples_per_s=step * samples / max(elapsed, 1e-9),
            val_psnr_db=last_val[0] if last_val else None, val_ssim=last_val[1] if last_val else None,
            val_psnr_bicubic_db=bicubic[0] if bicubic else None, val_ssim_bicubic=bicubic[1] if bicubic else None,
            history=self.history,
        )


__all__ = ["TrainResult", "ValidationSet", "build_config", "train"]
