"""`dleem demo [--quick] [-o DIR]`: the whole workflow on the built-in synthetic sandstone."""

from __future__ import annotations

import argparse
import sys
import time

from dleem.cli.options import progress_display
from dleem.training.options import DEFAULT_RECIPE, RECIPES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise a sandstone, register, cross-validate, train, upscale, evaluate",
        description=(
            "Run every step on the built-in synthetic sandstone: synthesise an LR map and 3 HR "
            "regions (DIR/data), register (DIR/registration.json, qc/, pairs/), cross-validate "
            "the MAE model leave-one-region-out (DIR/crossval/), train it on all regions "
            "(DIR/models/; pixel-only, or with the adversarial phase: --recipe gan), upscale the whole LR image with it "
            "(DIR/upscale/) and evaluate (DIR/report/index.html, led by the cross-validated "
            "estimate). Every model gets the same budget. Within 15 minutes on a 2-core CPU "
            "(--compare-losses adds an MSE model, about 3 minutes more); --quick is a smoke "
            "run with a tiny model and no cross-validation, not meant to show SR beating "
            "bicubic."
        ),
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke version: a tiny model, few steps, no cross-validation")
    p.add_argument("--compare-losses", action="store_true",
                   help="also train and evaluate an MSE model beside the MAE one")
    p.add_argument("-o", "--output", default="dleem-demo", metavar="DIR",
                   help="workspace folder (default ./dleem-demo)")
    p.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help=f"training recipe, as in dleem train (default {DEFAULT_RECIPE})")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic specimen (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.workflow import demo

    t0 = time.perf_counter()
    with progress_display(args) as progress:
        index = demo(args.output, quick=args.quick, seed=args.seed, device=args.device,
                     compare_losses=args.compare_losses, recipe=args.recipe, progress=progress)
    sys.stdout.write(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min\n"
                     f"report: {index.resolve()}\n")
    return 0
