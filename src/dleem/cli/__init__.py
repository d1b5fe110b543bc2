"""The `dleem` command line: parse, call the API, report.

Each sub-command lives in its own module with two functions, `add_parser(subparsers)`
and `run(args) -> int`, and optionally `FLAGS`, the API parameter names its flags spell
differently (a `ParameterError` is then shown with the flag the user typed); this module lists them explicitly (no import-time registry).
Heavy libraries (torch, dask) are imported inside `run` so that `dleem --help` is instant.

What every command shares is set here, for the length of one `main` call: the log level
(``-q`` warnings and errors only, ``-v`` debug), Python warnings as one ``WARNING:`` line
(no source lines), tifffile's own log lines left out (dleem says what is wrong with a
file), SIGTERM stopping a command as Ctrl-C does, and every user-fixable failure as one
``dleem CMD: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import TextIO

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

#: Exit codes: 2 a problem the user can fix, 130 Ctrl-C or cancel, 143 SIGTERM.
EXIT_USER, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143


#: Set, no progress bar draws (`dleem.progress.interactive`).
NO_PROGRESS = "DLEEM_NO_PROGRESS"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so every cleanup that Ctrl-C runs runs."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dleem",
        description="Deep-Learning-Enhanced Electron Microscopy: register, learn, upscale, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"dleem {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="warnings and errors only, no progress")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """A Python warning as one log line: its message, not dleem's source line."""
    prefix = "" if category is UserWarning else f"{category.__name__}: "
    logging.getLogger("py.warnings").warning("%s%s", prefix, str(message).strip().splitlines()[0])


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _session(level: int, verbose: bool, quiet: bool) -> Iterator[None]:
    """Log level, warnings, tifffile's logger, SIGTERM and (``quiet``) every progress bar
    for one command; restored after (the CLI runs in-process in tests and notebooks)."""
    root, tiff_log = logging.getLogger(), logging.getLogger("tifffile")
    saved_levels = (root.level, tiff_log.level)
    saved_env = os.environ.get(NO_PROGRESS)
    if quiet:  # also the bars drawn outside a ProgressDisplay (dleem synth's)
        os.environ[NO_PROGRESS] = "1"
    saved_show = warnings.showwarning
    root.setLevel(level)
    if not verbose:
        tiff_log.setLevel(logging.CRITICAL + 1)
    warnings.showwarning = _show_warning
    saved_term = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        saved_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        root.setLevel(saved_levels[0])
        tiff_log.setLevel(saved_levels[1])
        warnings.showwarning = saved_show
        if saved_env is None:
            os.environ.pop(NO_PROGRESS, None)
        else:
            os.environ[NO_PROGRESS] = saved_env
        if in_main_thread and saved_term is not None:
            signal.signal(signal.SIGTERM, saved_term)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = args.verbose or args.debug
    level = logging.DEBUG if verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    with _session(level, verbose, args.quiet):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        if args.debug:
            traceback.print_exc()
        print(f"dleem {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USER

    try:
        return int(args.handler(args) or 0)
    except DleemError as error:
        if isinstance(error, ParameterError):  # a command module's FLAGS: API name -> flag
            flags = getattr(sys.modules[args.handler.__module__], "FLAGS", None)
            return fail(error.as_flag(flags))
        return fail(str(error))
    except Terminated:
        print(f"dleem {args.command}: interrupted (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except (KeyboardInterrupt, Cancelled):
        print(f"dleem {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        return fail("not enough memory for this step (use smaller images, tiles or batches)")
    except OSError as error:  # the environment (a vanished share, a full disk), not a bug
        reason = error.strerror or str(error)
        return fail(f"{error.filename}: {reason}" if error.filename else f"I/O error: {reason}")
