"""`dleem train WORKSPACE -o MODEL_DIR`: learn LR -> HR from the registered pairs."""

from __future__ import annotations

import argparse
import logging
import os

from dleem.cli.options import progress_display
from dleem.models.arch import PRESETS
from dleem.training.options import (
    ADV_LOSSES,
    DEFAULT_RECIPE,
    PIXEL_LOSSES,
    PORE_PHASES,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
)

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a generator on WORKSPACE/pairs; write a model folder",
        description=(
            "Train the super-resolution generator on the training pairs of a workspace "
            "(pixel-only warm-up, then the adversarial phase; EMA weights for inference) and "
            "write MODEL_DIR with generator.safetensors, generator_raw.safetensors, config.json, "
            "log.csv, curves.png and checkpoints/. Multi-GPU: "
            "torchrun --nproc_per_node=N -m dleem train ..."
        ),
    )
    p.add_argument("workspace", metavar="WORKSPACE", help="workspace with pairs/manifest.json")
    p.add_argument("-o", "--output", dest="model_dir", required=True, metavar="MODEL_DIR",
                   help="model folder to write")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="training steps (reproducible)")
    budget.add_argument("--minutes", type=float, default=None,
                        help="wall-clock budget in minutes (default 10 when --steps is not given)")
    p.add_argument("--loss", choices=PIXEL_LOSSES, default="mae", help="pixel loss (default mae)")
    gan = RECIPES["gan"]
    p.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help="gan: the pixel loss, then the adversarial phase; pixel: every non-pixel "
                        f"weight 0 (fewer invented details). Default: {DEFAULT_RECIPE}, under any weight "
                        "given below")
    p.add_argument("--adv-weight", type=float, default=None,
                   help=f"weight of the adversarial loss; 0: no adversarial phase (recipe gan: {gan['adv_weight']:g})")
    p.add_argument("--consistency-weight", type=float, default=None,
                   help="weight of the data-consistency term: the SR degraded by the LR forward "
                        f"model against the LR input, in noise units (default {gan['consistency_weight']:g})")
    p.add_argument("--pore-weight", type=float, default=None,
                   help="weight of the pore term: soft Dice of the pore phase of SR against HR's "
                        f"(default {gan['pore_weight']:g})")
    p.add_argument("--pores", choices=PORE_PHASES, default="dark",
                   help="which side of the HR threshold is pore, for the pore term (default dark)")
    p.add_argument("--adv-loss", choices=ADV_LOSSES, default="ragan",
                   help="relativistic-average (default) or plain GAN loss")
    p.add_argument("--warmup", type=float, default=0.5,
                   help="fraction of the budget trained pixel-only before the GAN phase (default 0.5)")
    p.add_argument("--preset", choices=PRESETS, default="default",
                   help="generator size (default: default)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--batch", type=int, default=None, help="crops per step and process (preset default)")
    p.add_argument("--patch", type=int, default=None, help="LR crop side in px (preset default)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, default 1e-3)")
    p.add_argument("--lr-d", type=float, default=2e-4,
                   help="peak learning rate of the discriminator (default 2e-4)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule over the budget (default cosine)")
    p.add_argument("--scale", type=int, default=None,
                   help="refuse pairs that were cut at another scale")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--rot90", action="store_true",
                   help="also augment with 90-degree rotations (swaps SEM scan directions)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="CUDA numerics (auto: tf32 on CUDA, fp32 elsewhere)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory layout (CUDA)")
    p.add_argument("--checkpoint-every", type=int, default=1000, metavar="N",
                   help="steps between checkpoints in MODEL_DIR/checkpoints (default 1000)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--force", action="store_true", help="start over in a folder with checkpoints")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.training import TrainOptions, train

    options = TrainOptions(
        steps=args.steps, minutes=args.minutes, preset=args.preset, batch=args.batch,
        patch=args.patch, loss=args.loss, adv_loss=args.adv_loss, recipe=args.recipe,
        adv_weight=args.adv_weight, consistency_weight=args.consistency_weight,
        pore_weight=args.pore_weight, pores=args.pores,
        warmup=args.warmup, lr=args.lr, lr_d=args.lr_d, schedule=args.schedule, seed=args.seed, device=args.device,
        precision=args.precision, channels_last=args.channels_last, rot90=args.rot90,
        scale=args.scale, checkpoint_every=args.checkpoint_every, resume=args.resume,
        force=args.force,
    )
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with progress_display(args, quiet=not main_rank) as display:
        result = train(args.workspace, args.model_dir, options, progress=display)
    if main_rank:
        msg = f"model written to {result.model_dir} ({result.steps} steps, {result.elapsed_s:.0f} s"
        if result.val_psnr_db is not None and result.val_psnr_bicubic_db is not None:
            msg += (f"; validation PSNR {result.val_psnr_db:.2f} dB vs bicubic "
                    f"{result.val_psnr_bicubic_db:.2f} dB, SSIM {result.val_ssim:.3f} vs "
                    f"{result.val_ssim_bicubic:.3f}")
        log.info(msg + ")")
    return 0
