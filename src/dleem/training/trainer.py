"""The trainer: pixel-only warm-up, then generator vs discriminator, EMA for inference.

`train(workspace, model_dir, options)` is the whole of `dleem train`, callable from
Python with any generator module (``generator=...``), so other architectures (SRGAN,
EDSR anchors) train under exactly the same data, budget, schedule and log.

Budget and schedule: ``steps`` or ``minutes``. The learning rate, the start of the
adversarial phase and the validation times are functions of the *fraction of the
budget elapsed*, so a wall-clock budget gets a complete schedule too.

Reproducibility: with ``steps`` and a seed, the same device gives the same model
(deterministic algorithms, crops drawn from ``(seed, rank, step)``). Checkpoints hold
tensors and plain types only (loaded with ``weights_only=True``) and everything the
next step depends on, so ``resume`` continues a killed run exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dleem.errors import DleemError
from dleem.io.atomic import atomic_write
from dleem.models.config import PRESETS, ModelConfig
from dleem.models.discriminator import PatchDiscriminator
from dleem.models.folder import save_model, state_dict_cpu, unwrap
from dleem.models.generator import build_generator, measure_receptive_field, receptive_field_of
from dleem.training import ddp
from dleem.training.curves import plot_curves, write_log
from dleem.training.data import (
    PairData,
    batch_generator,
    load_pairs,
    sample_batch,
    validation_tiles,
)
from dleem.training.losses import (
    ADV_LOSSES,
    EMA,
    PIXEL_LOSSES,
    cosine_lr,
    discriminator_loss,
    generator_adv_loss,
    pixel_loss,
    psnr,
    ssim,
    step_lr,
)

log = logging.getLogger(__name__)

#: Per-preset training defaults: LR patch side (px), batch per process, discriminator width.
PRESET_TRAINING = {
    "default": {"patch": 48, "batch": 16, "disc_width": 32, "disc_stages": 3},
    "cpu": {"patch": 24, "batch": 4, "disc_width": 16, "disc_stages": 3},
    "tiny": {"patch": 16, "batch": 4, "disc_width": 8, "disc_stages": 2},
}
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2
N_VALIDATIONS = 20


@dataclass
class TrainOptions:
    """Everything `train` can be told (the CLI flags of `dleem train`).

    Attributes
    ----------
    steps, minutes : budget; exactly one (``minutes`` defaults to 10 when neither is set).
    preset : architecture preset of the generator ("default", "cpu", "tiny").
    batch : crops per step per process; patch : LR crop side in px (HR side = k * patch).
    loss : pixel loss "mae" or "mse"; adv_loss : "ragan" (relativistic average) or "gan".
    adv_weight : weight of the adversarial term (0 = pixel-only model).
    warmup : fraction of the budget trained pixel-only before the adversarial phase.
    precision : CUDA numerics: "fp32" (TF32 off), "tf32", "bf16"/"fp16" autocast; "auto"
        picks tf32 on CUDA (see benchmarks/bench_train_gpu.py), fp32 elsewhere.
    checkpoint_every : steps between checkpoints (0: only at the end).
    keep_checkpoints : how many recent checkpoints to keep (0: all).
    """

    steps: int | None = None
    minutes: float | None = None
    preset: str = "default"
    batch: int | None = None
    patch: int | None = None
    loss: str = "mae"
    adv_loss: str = "ragan"
    adv_weight: float = 5e-3
    warmup: float = 0.5
    lr: float = 1e-3
    lr_d: float = 2e-4
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    rot90: bool = False
    scale: int | None = None
    disc_width: int | None = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = KEEP_CHECKPOINTS
    val_tile: int = 64
    val_tiles: int = 32
    log_every: int = 10
    resume: bool = False
    force: bool = False
    deterministic: bool | None = None  # default: True with `steps`, False with `minutes`
    progress: bool = True

    def validate(self) -> None:
        if self.steps is not None and self.minutes is not None:
            raise DleemError("give --steps or --minutes, not both")
        if self.steps is None and self.minutes is None:
            self.minutes = 10.0
        if self.steps is not None and self.steps < 1:
            raise DleemError(f"--steps must be >= 1, got {self.steps}")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise DleemError(f"--minutes must be > 0, got {self.minutes}")
        if self.preset not in PRESETS:
            raise DleemError(f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        if self.loss not in PIXEL_LOSSES:
            raise DleemError(f"--loss must be one of {', '.join(PIXEL_LOSSES)}, got {self.loss!r}")
        if self.adv_loss not in ADV_LOSSES:
            raise DleemError(f"--adv-loss must be one of {', '.join(ADV_LOSSES)}, got {self.adv_loss!r}")
        if not (self.adv_weight >= 0 and math.isfinite(self.adv_weight)):
            raise DleemError(f"--adv-weight must be >= 0, got {self.adv_weight}")
        if not 0.0 <= self.warmup <= 1.0:
            raise DleemError(f"--warmup is a fraction of the budget in [0, 1], got {self.warmup}")
        if self.precision not in PRECISIONS:
            raise DleemError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.schedule not in ("cosine", "step"):
            raise DleemError(f"--schedule must be cosine or step, got {self.schedule!r}")
        for name in ("batch", "patch"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise DleemError(f"--{name} must be >= 1, got {v}")
        if self.patch is not None and self.patch < 4:
            raise DleemError(f"--patch must be at least 4 LR px, got {self.patch}")
        defaults = PRESET_TRAINING[self.preset]
        self.batch = self.batch or defaults["batch"]
        self.patch = self.patch or defaults["patch"]
        self.disc_width = self.disc_width or defaults["disc_width"]
        if self.deterministic is None:
            self.deterministic = self.steps is not None


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


# ----------------------------------------------------------------------------- helpers


def _precision(options: TrainOptions, device: torch.device) -> tuple[str, torch.dtype | None]:
    """Resolve the numerics; set the TF32 switches for CUDA (see the issue: measure)."""
    p = options.precision
    if device.type != "cuda":
        if p in ("fp16",):
            raise DleemError("--precision fp16 needs CUDA")
        return ("bf16", torch.bfloat16) if p == "bf16" else ("fp32", None)
    if p == "auto":
        p = "tf32"
    tf32 = p in ("tf32", "bf16", "fp16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return p, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(p)


def _set_lr(opt: torch.optim.Optimizer, value: float) -> None:
    for group in opt.param_groups:
        group["lr"] = value


def _checkpoints(model_dir: Path) -> list[Path]:
    return sorted((model_dir / CHECKPOINT_DIR).glob("step_*.pt"))


def _save_checkpoint(model_dir: Path, state: dict[str, Any], step: int, keep: int) -> Path:
    path = model_dir / CHECKPOINT_DIR / f"step_{step:09d}.pt"
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    if keep > 0:
        for old in _checkpoints(model_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # corrupt or foreign file
        raise DleemError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != "dleem-checkpoint-1":
        raise DleemError(f"{path}: not a dleem training checkpoint")
    return state


@torch.no_grad()
def _validate(
    generator: nn.Module, tiles: tuple[torch.Tensor, ...] | None, data: PairData,
    autocast: Any, channels_last: bool,
) -> tuple[float, float] | None:
    """Mean PSNR (dB) and SSIM of the generator on the fixed validation tiles,
    in the LR image's grey range (invalid target pixels do not count)."""
    if tiles is None:
        return None
    lr, hr, mask = tiles
    std, mean = data.normalization["std"], data.normalization["mean"]
    was = generator.training
    generator.eval()
    ps, ss = [], []
    for i in range(0, lr.shape[0], 8):
        x = lr[i:i + 8]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            sr = generator(x).float()
        h, m = hr[i:i + 8], mask[i:i + 8]
        sr = torch.where(m, sr, h) * std + mean
        h = h * std + mean
        ps.append(psnr(sr, h, data.data_range))
        ss.append(ssim(sr, h, data.data_range))
    generator.train(was)
    return float(torch.cat(ps).mean()), float(torch.cat(ss).mean())


def _bicubic(scale: int) -> nn.Module:
    class Bicubic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)

    return Bicubic()


def build_config(
    data: PairData, arch: dict[str, Any], receptive_field: int, training: dict[str, Any]
) -> ModelConfig:
    """The model's config.json from the pairs (normalisation, pixel sizes, blur, checksums)."""
    return ModelConfig(
        scale=data.scale,
        arch=dict(arch),
        receptive_field_lr_px=int(receptive_field),
        normalization=dict(data.normalization),
        lr_pixel_size_um=data.lr_pixel_size_um,
        hr_pixel_size_um=data.hr_pixel_size_um,
        lr_blur_sigma_px=data.lr_blur_sigma_px,
        train_data=data.checksums,
        training=training,
    )


# ----------------------------------------------------------------------------- train


def train(
    workspace: str | PathLike[str],
    model_dir: str | PathLike[str],
    options: TrainOptions | None = None,
    *,
    generator: nn.Module | None = None,
    arch: dict[str, Any] | None = None,
    discriminator: nn.Module | None = None,
) -> TrainResult:
    """Train a generator on ``WORKSPACE/pairs`` and write the model folder ``model_dir``.

    Parameters
    ----------
    workspace : path
        Workspace with ``pairs/manifest.json`` (or the pairs folder itself).
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
        `load_model` to rebuild it, ``name`` must be in `dleem.models.ARCHITECTURES`.
    discriminator : torch.nn.Module, optional
        Default: a spectral-norm `PatchDiscriminator`.
    """
    options = dataclasses.replace(options) if options is not None else TrainOptions()
    options.validate()
    model_dir = Path(model_dir)
    info = ddp.setup(options.device)
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    try:
        return _train(workspace, model_dir, options, info, generator, arch, discriminator)
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.backends.cudnn.benchmark = prev_bench
        ddp.teardown(info)


def _train(
    workspace: str | PathLike[str], model_dir: Path, options: TrainOptions, info: ddp.DistInfo,
    generator: nn.Module | None, arch: dict[str, Any] | None, discriminator: nn.Module | None,
) -> TrainResult:
    device = info.device
    data = load_pairs(workspace, expected_scale=options.scale, min_box_lr_px=4)
    k = data.scale
    if not any(min(b.lr.shape) >= options.patch for b in data.train):
        largest = max(min(b.lr.shape) for b in data.train)
        raise DleemError(f"{data.manifest_path}: no train area fits a {options.patch} LR px patch"
                         f" (largest side {largest}); use --patch {max(4, largest)} or less")

    # -- resume or fresh start ------------------------------------------------------
    ckpts = _checkpoints(model_dir)
    state: dict[str, Any] | None = None
    if ckpts and not options.resume and not options.force:
        raise DleemError(f"{model_dir}: holds checkpoints of an earlier run; use --resume to continue"
                         " it or --force to start over")
    if options.resume:
        if ckpts:
            state = _load_checkpoint(ckpts[-1], device)
        else:
            log.warning("%s: no checkpoint to resume from; starting a new run", model_dir)
    if ckpts and options.force and not options.resume and info.is_main:
        for c in ckpts:
            c.unlink()

    # -- networks ---------------------------------------------------------------------
    torch.manual_seed(options.seed)
    if options.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif options.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = device.type == "cuda"
    if generator is None:
        arch = dict(state["config"]["arch"]) if state else dict(PRESETS[options.preset])
        generator = build_generator(arch, k)
        rf = receptive_field_of(arch)
    else:
        arch = dict(arch or {"name": type(generator).__name__})
        rf = getattr(generator, "receptive_field_lr_px", None)
        rf = int(rf) if rf is not None else measure_receptive_field(generator, k)
    if state is not None:
        saved = state["config"]
        if int(saved["scale"]) != k:
            raise DleemError(f"{model_dir}: scale mismatch: the checkpoint was trained at scale"
                             f" {saved['scale']}, the pairs are at scale {k}")
        if saved["arch"] != arch:
            raise DleemError(f"{model_dir}: the checkpoint's architecture {saved['arch']} differs"
                             f" from {arch}")
    if getattr(generator, "scale", k) != k:
        raise DleemError(f"scale mismatch: the generator upscales by {generator.scale}, the pairs by {k}")
    if discriminator is None:
        discriminator = PatchDiscriminator(width=options.disc_width,
                                           stages=PRESET_TRAINING[options.preset]["disc_stages"])
    generator = generator.to(device)
    discriminator = discriminator.to(device)
    precision, amp_dtype = _precision(options, device)
    if options.channels_last:
        generator = generator.to(memory_format=torch.channels_last)
        discriminator = discriminator.to(memory_format=torch.channels_last)
    ema = EMA(generator, options.ema_decay)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=options.lr, betas=(0.9, 0.99),
                              weight_decay=options.weight_decay)
    opt_d = torch.optim.AdamW(discriminator.parameters(), lr=options.lr_d, betas=(0.9, 0.99),
                              weight_decay=options.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    scaler_d = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    step, elapsed_before, history = 0, 0.0, []
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        ema.load_state_dict(state["ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        scaler.load_state_dict(state["scaler"])
        scaler_d.load_state_dict(state["scaler_d"])
        torch.set_rng_state(state["torch_rng"].cpu())
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        history = list(state["history"])
        log.info("resuming %s at step %d", model_dir, step)
    g_train: nn.Module = generator
    d_train: nn.Module = discriminator
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        g_train = DDP(generator, device_ids=ids)
        d_train = DDP(discriminator, device_ids=ids)
    data.to(device)
    val = validation_tiles(data, options.val_tile, options.val_tiles) if info.is_main else None

    def autocast() -> Any:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    training_record = {
        "workspace": str(Path(workspace).resolve()), "preset": options.preset if arch.get("name") == "dleem" else None,
        "loss": options.loss, "adv_loss": options.adv_loss, "adv_weight": options.adv_weight,
        "warmup": options.warmup, "steps": options.steps, "minutes": options.minutes,
        "batch": options.batch, "patch": options.patch, "lr": options.lr, "schedule": options.schedule,
        "ema_decay": options.ema_decay, "seed": options.seed, "device": str(device),
        "precision": precision, "channels_last": options.channels_last, "world_size": info.world_size,
        "rot90": options.rot90,
    }
    config = build_config(data, arch, rf, training_record)
    if info.is_main:
        model_dir.mkdir(parents=True, exist_ok=True)
    bicubic = _validate(_bicubic(k), val, data, autocast, False) if val is not None else None

    budget_s = None if options.minutes is None else options.minutes * 60.0
    t0 = time.perf_counter()

    def fraction(step_now: int, elapsed: float) -> float:
        if options.steps is not None:
            return step_now / options.steps
        return elapsed / budget_s

    sched = cosine_lr if options.schedule == "cosine" else step_lr
    use_adv = options.adv_weight > 0
    sums = torch.zeros(3, device=device)
    n_sum = 0
    last_val: tuple[float, float] | None = None
    next_val = (math.floor(fraction(step, elapsed_before) * N_VALIDATIONS) + 1) / N_VALIDATIONS
    if step == 0 and val is not None:
        last_val = _validate(ema.module, val, data, autocast, options.channels_last)
        history.append(_row(0, elapsed_before, "pixel", 0.0, None, last_val, bicubic, None))

    from rich.progress import TextColumn

    from dleem.progress import make_progress

    show = options.progress and info.is_main
    total = options.steps if options.steps is not None else int(budget_s)
    progress = make_progress(TextColumn("{task.fields[status]}"))
    if not show:
        progress.disable = True
    samples_step = options.batch * info.world_size
    t_rate, step_rate = time.perf_counter(), step
    rate = None
    with progress:
        task = progress.add_task("training", total=total, status="",
                                 completed=step if options.steps else int(elapsed_before))
        while True:
            elapsed = elapsed_before + time.perf_counter() - t0
            if options.steps is None:
                elapsed = ddp.broadcast_float(elapsed, info)
            f = fraction(step, elapsed)
            if f >= 1.0:
                break
            adv_on = use_adv and f >= options.warmup
            mult = sched(f)
            _set_lr(opt_g, options.lr * mult)
            _set_lr(opt_d, options.lr_d * mult)
            rng = batch_generator(options.seed, info.rank, step)
            lr_b, hr_b, m_b = sample_batch(data, options.batch, options.patch, rng,
                                           rot90=options.rot90)
            if options.channels_last:
                lr_b = lr_b.contiguous(memory_format=torch.channels_last)
                hr_b = hr_b.contiguous(memory_format=torch.channels_last)
            # generator step
            with autocast():
                sr = g_train(lr_b)
                l_pix = pixel_loss(sr, hr_b, m_b, options.loss)
                l_g = l_pix
                l_adv = torch.zeros((), device=device)
                if adv_on:
                    d_plain = unwrap(d_train)
                    d_plain.requires_grad_(False)
                    logits = d_plain(torch.cat([hr_b, sr]))
                    real, fake = logits.chunk(2)
                    l_adv = generator_adv_loss(real.detach(), fake, options.adv_loss)
                    l_g = l_pix + options.adv_weight * l_adv
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(l_g).backward()
            scaler.step(opt_g)
            scaler.update()
            ema.update(generator)
            # discriminator step
            l_d = torch.zeros((), device=device)
            if adv_on:
                unwrap(d_train).requires_grad_(True)
                with autocast():
                    logits = d_train(torch.cat([hr_b, sr.detach()]))
                    real, fake = logits.chunk(2)
                    l_d = discriminator_loss(real, fake, options.adv_loss)
                opt_d.zero_grad(set_to_none=True)
                scaler_d.scale(l_d).backward()
                scaler_d.step(opt_d)
                scaler_d.update()
            step += 1
            sums += torch.stack([l_pix.detach().float(), l_adv.detach().float(), l_d.detach().float()])
            n_sum += 1
            elapsed = elapsed_before + time.perf_counter() - t0
            f_after = fraction(step, elapsed)
            do_val = info.is_main and val is not None and (f_after >= next_val or f_after >= 1.0)
            if info.is_main and (step % options.log_every == 0 or do_val or f_after >= 1.0):
                now = time.perf_counter()
                if now > t_rate:
                    rate = (step - step_rate) * samples_step / (now - t_rate)
                t_rate, step_rate = now, step
                if do_val:
                    t_val = time.perf_counter()
                    last_val = _validate(ema.module, val, data, autocast, options.channels_last)
                    while next_val <= f_after:
                        next_val += 1.0 / N_VALIDATIONS
                    if budget_s is not None:  # validation takes at most ~5 % of a time budget
                        cost = (time.perf_counter() - t_val) / budget_s
                        next_val = max(next_val, f_after + 20 * cost)
                means = (sums / max(n_sum, 1)).tolist()
                history.append(_row(step, elapsed, "gan" if adv_on else "pixel", options.lr * mult,
                                    means, last_val if do_val else None, bicubic if do_val else None,
                                    rate))
                sums.zero_()
                n_sum = 0
                if do_val:  # the log on disk follows the run (rewritten atomically)
                    write_log(model_dir / "log.csv", history)
                status = f"loss {means[0]:.4f}"
                if last_val:
                    status += f"  val PSNR {last_val[0]:.2f} dB  SSIM {last_val[1]:.3f}"
                progress.update(task, completed=step if options.steps else int(elapsed), status=status)
            if options.checkpoint_every and step % options.checkpoint_every == 0 and f_after < 1.0:
                if info.is_main:
                    _save_checkpoint(model_dir, _state(step, elapsed, generator, discriminator, ema, opt_g,
                                                       opt_d, (scaler, scaler_d), history, config),
                                     step, options.keep_checkpoints)
        progress.update(task, completed=total)

    elapsed = elapsed_before + time.perf_counter() - t0
    if info.is_main:
        if val is not None and (not history or history[-1].get("val_psnr_db") is None):
            last_val = _validate(ema.module, val, data, autocast, options.channels_last)
            history.append(_row(step, elapsed, "gan" if use_adv and options.warmup < 1 else "pixel",
                                None, None, last_val, bicubic, None))
        _save_checkpoint(model_dir, _state(step, elapsed, generator, discriminator, ema, opt_g, opt_d,
                                           (scaler, scaler_d), history, config), step, options.keep_checkpoints)
        config.training.update({
            "steps_done": step, "elapsed_s": round(elapsed, 3),
            "samples_per_s": round(step * samples_step / max(elapsed - elapsed_before, 1e-9), 3)
            if step else None,
            "val_psnr_db": last_val[0] if last_val else None, "val_ssim": last_val[1] if last_val else None,
            "val_psnr_bicubic_db": bicubic[0] if bicubic else None,
            "val_ssim_bicubic": bicubic[1] if bicubic else None,
        })
        save_model(model_dir, ema.module, config, raw_generator=generator)
        write_log(model_dir / "log.csv", history)
        title = (f"{arch.get('name')} x{k}, {options.loss}"
                 f"{f' + {options.adv_weight:g} {options.adv_loss}' if use_adv else ''}, {step} steps")
        plot_curves(model_dir / "curves.png", history, title)
    if info.distributed:
        torch.distributed.barrier()
    return TrainResult(
        model_dir=model_dir, steps=step, elapsed_s=elapsed,
        samples_per_s=step * samples_step / max(elapsed, 1e-9),
        val_psnr_db=last_val[0] if last_val else None, val_ssim=last_val[1] if last_val else None,
        val_psnr_bicubic_db=bicubic[0] if bicubic else None,
        val_ssim_bicubic=bicubic[1] if bicubic else None, history=history,
    )


def _row(step: int, elapsed: float, phase: str, lr: float | None, means: list[float] | None,
         val: tuple[float, float] | None, bicubic: tuple[float, float] | None,
         rate: float | None) -> dict[str, Any]:
    return {
        "step": step, "elapsed_s": round(elapsed, 3), "phase": phase, "lr": lr,
        "loss_pixel": means[0] if means else None,
        "loss_adv": means[1] if means and phase == "gan" else None,
        "loss_d": means[2] if means and phase == "gan" else None,
        "val_psnr_db": val[0] if val else None, "val_ssim": val[1] if val else None,
        "val_psnr_bicubic_db": bicubic[0] if bicubic else None,
        "val_ssim_bicubic": bicubic[1] if bicubic else None,
        "samples_per_s": rate,
    }


def _state(step: int, elapsed: float, generator: nn.Module, discriminator: nn.Module, ema: EMA,
           opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, scalers: Any,
           history: list[dict[str, Any]], config: ModelConfig) -> dict[str, Any]:
    """Checkpoint content: tensors and plain types only (loadable with weights_only=True)."""
    return {
        "format": "dleem-checkpoint-1",
        "step": step,
        "elapsed_s": float(elapsed),
        "generator": state_dict_cpu(generator),
        "discriminator": state_dict_cpu(discriminator),
        "ema": {**ema.state_dict(), "module": state_dict_cpu(ema.module)},
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "scaler": scalers[0].state_dict(),
        "scaler_d": scalers[1].state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": [dict(r) for r in history],
        "config": config.to_dict(),
    }
