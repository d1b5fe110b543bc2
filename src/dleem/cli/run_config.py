"""`dleem run CONFIG.toml`: the whole workflow on your own files (see examples/run.toml)."""

from __future__ import annotations

import argparse
import sys
import time

from dleem.cli.options import progress_display


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="register, train, upscale and evaluate your own files from a TOML config",
        description=(
            "Run register -> train (one model per loss) -> upscale -> evaluate on the files "
            "named in CONFIG.toml (LR image, HR images, ratio, scale, training budget, "
            "losses, output folder). Paths are relative to the config file; unknown keys are "
            "errors. See examples/run.toml."
        ),
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the workflow config")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.workflow import load_config, run_workflow

    cfg = load_config(args.config)
    t0 = time.perf_counter()
    with progress_display(args) as progress:
        index = run_workflow(cfg, truth=True, command=f"dleem run {args.config}",
                             progress=progress)
    sys.stdout.write(f"workflow finished in {(time.perf_counter() - t0) / 60:.1f} min\n"
                     f"report: {index.resolve()}\n")
    return 0
