"""`dleem demo [--quick] [-o DIR]`: the whole workflow on the built-in synthetic sandstone."""

from __future__ import annotations

import argparse
import sys
import time

from dleem.cli.options import progress_display


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise a sandstone, register, train MAE and MSE models, upscale, evaluate",
        description=(
            "Run every step on the built-in synthetic sandstone: synthesise LR and HR images "
            "(DIR/data), register (DIR/registration.json, qc/, pairs/), train an MAE and an MSE "
            "model with the adversarial phase (DIR/models/), upscale the whole LR image with "
            "the MAE model (DIR/upscale/), evaluate both models (DIR/report/index.html). "
            "About 15 minutes on a 2-core CPU; --quick is a ~2-minute smoke run with a tiny "
            "model and is not meant to show SR beating bicubic."
        ),
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke version: smaller images, a tiny model, few steps (~2 min)")
    p.add_argument("-o", "--output", default="dleem-demo", metavar="DIR",
                   help="workspace folder (default ./dleem-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic specimen (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.workflow import demo

    t0 = time.perf_counter()
    with progress_display(args) as progress:
        index = demo(args.output, quick=args.quick, seed=args.seed, device=args.device,
                     progress=progress)
    sys.stdout.write(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min\n"
                     f"report: {index.resolve()}\n")
    return 0
