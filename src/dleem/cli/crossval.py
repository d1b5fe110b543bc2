"""`dleem crossval WORKSPACE`: the quality to expect where no HR was acquired.

The training options are those of `dleem train` (taken from its parser, so the two never
drift); each fold trains with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def _train_arguments() -> argparse.ArgumentParser:
    """`dleem train`'s parser, used as a parent: WORKSPACE and every training flag (its
    -o is replaced by this command's own)."""
    from dleem.cli import train

    sub = argparse.ArgumentParser(add_help=False).add_subparsers()
    train.add_parser(sub)
    return sub.choices["train"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crossval",
        parents=[_train_arguments()],
        help="cross-validate: train without each HR region, score it; write crossval.json",
        description=(
            "Leave-one-region-out cross-validation: for each HR region, train on the train and "
            "validation areas of the other regions only (same budget per fold as the final "
            "model: --steps or --minutes) and score the model and bicubic on the whole "
            "held-out region, in independent tiles. With one region, spatial k-fold over "
            "column blocks of it (--folds). Writes DIR/crossval.json (the estimate with 95 %% "
            "intervals, regions first, then tiles) and one model folder per fold; "
            "`dleem evaluate` leads its report with it."
        ),
        conflict_handler="resolve",
    )
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="output folder (default WORKSPACE/crossval)")
    p.add_argument("--folds", type=int, default=3,
                   help="blocks of the spatial k-fold when there is one region (default 3)")
    p.add_argument("--tiles", type=int, default=None,
                   help="at most this many grid tiles per fold, a seeded subset (default: all)")
    p.add_argument("--tile-size", type=int, default=128, metavar="PX",
                   help="evaluation tile side in fine-grid px (default 128)")
    p.add_argument("--threshold", default="otsu", metavar="METHOD|VALUE",
                   help="pore threshold, as in dleem evaluate (default otsu)")
    p.add_argument("--pores", choices=("dark", "bright"), default="dark",
                   help="which phase is pore (default dark)")
    p.add_argument("--min-pore-px", type=int, default=4, metavar="PX",
                   help="smallest pore counted, in fine-grid px (default 4)")
    p.add_argument("--tta", action="store_true",
                   help="score each fold's model averaged over the 8 flips and transposes")
    p.add_argument("--no-truth", action="store_true",
                   help="do not score against a synthetic truth.json found beside the LR file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.cli.evaluate import parse_threshold
    from dleem.errors import DleemError
    from dleem.evaluation.evaluate import EvalOptions
    from dleem.evaluation.pipeline import crossval_workspace
    from dleem.progress import ProgressDisplay
    from dleem.training import TrainOptions
    from dleem.workspace import Workspace

    if args.tiles is not None and args.tiles < 1:
        raise DleemError(f"--tiles must be >= 1, got {args.tiles}")
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    train_options = TrainOptions(**{k: v for k, v in vars(args).items() if k in names})
    if not train_options.resume:
        train_options.force = True  # the fold folders are this command's own output
    options = EvalOptions(tiles=args.tiles, tile_size=args.tile_size, seed=args.seed,
                          threshold=parse_threshold(args.threshold),
                          pores_dark=args.pores == "dark", min_pore_px=args.min_pore_px, tta=args.tta)
    device = "cpu" if args.device == "auto" else args.device
    with ProgressDisplay() as progress:
        record = crossval_workspace(args.workspace, train_options, options, folds=args.folds,
                                    out_dir=args.output, use_truth=not args.no_truth,
                                    device=device, progress=progress)
    out = args.output or Workspace(args.workspace).crossval_dir
    lines = [f"crossval ({record.scheme}, {len(record.folds)} folds): {out}/crossval.json"]
    for method in ("model", "bicubic"):
        for ref in ("vs_HR", "vs_truth"):
            e = record.estimate[method].get(ref)
            if not e:
                continue
            s, q = e["ssim"], e["psnr_db"]
            ci = s["ci95"] or [None, None]
            lines.append(f"  {method} {ref}: SSIM {s['median']:.4f} [{_f(ci[0])}, {_f(ci[1])}], "
                         f"PSNR {_f(q['median'], '.2f')} dB")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _f(x: float | None, spec: str = ".4f") -> str:
    return "–" if x is None else format(x, spec)
