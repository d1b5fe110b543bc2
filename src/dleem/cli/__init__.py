"""The `dleem` command line: parse, call the API, report.

Each sub-command lives in its own module with two functions, `add_parser(subparsers)`
and `run(args) -> int`; this module lists them explicitly (no import-time registry).
Heavy libraries (torch, dask) are imported inside `run` so that `dleem --help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from dleem import __version__
from dleem.cli import (
    crossval,
    demo,
    evaluate,
    info,
    plan,
    register,
    run_config,
    synth,
    train,
    upscale,
)
from dleem.errors import Cancelled, DleemError, ParameterError

COMMANDS = (info, synth, register, train, crossval, upscale, plan, evaluate, demo, run_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dleem",
        description="Deep-Learning-Enhanced Electron Microscopy: register, learn, upscale, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"dleem {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    logging.captureWarnings(True)
    try:
        return int(args.handler(args) or 0)
    except DleemError as error:
        if args.debug:
            traceback.print_exc()
        message = error.as_flag() if isinstance(error, ParameterError) else str(error)
        print(f"dleem {args.command}: error: {message}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print(f"dleem {args.command}: interrupted", file=sys.stderr)
        return 130
