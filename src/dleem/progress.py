"""Progress: one callback every step reports through, and the displays that draw it.

Every step function (``register_files``, ``train``, ``upscale_file``, ``evaluate_workspace``,
``run_workflow``) takes ``progress(stage, done, total)``. The CLI passes a `ProgressDisplay`;
a GUI passes its own callable. Raising `dleem.errors.Cancelled` inside the callback stops
the step cleanly (see there). Library code never draws or prints: it calls `report`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: ``progress(stage, done, total)``: ``stage`` names the work ("train", "upscale x4", ...).
ProgressCallback = Callable[[str, int, int], None]

log = logging.getLogger("dleem.progress")

#: Seconds between two plain progress lines of one stage when stderr is not a terminal.
PLAIN_INTERVAL_S = 30.0


def report(progress: ProgressCallback | None, stage: str, done: int, total: int) -> None:
    """Call ``progress`` if there is one (a step's progress is optional)."""
    if progress is not None:
        progress(stage, int(done), int(total))


def interactive() -> bool:
    """Bars draw on an interactive stderr unless DLEEM_NO_PROGRESS is set."""
    return sys.stderr.isatty() and not os.environ.get("DLEEM_NO_PROGRESS")


def make_progress(*extra_columns: TextColumn, disable: bool | None = None) -> Progress:
    """A rich Progress with the columns a long SEM job wants: bar, count, elapsed, time left."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=(not interactive()) if disable is None else disable,
        transient=False,
    )


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressDisplay:
    """The CLI's progress callback: rich bars on a terminal, plain log lines elsewhere.

    Without a terminal (a log file, CI, nohup) it logs ``stage: done/total (p %), elapsed,
    time left`` at most every `PLAIN_INTERVAL_S` seconds per stage, and when a stage ends.
    ``quiet`` draws nothing.
    """

    def __init__(self, *, quiet: bool = False, interval_s: float = PLAIN_INTERVAL_S) -> None:
        self.quiet = quiet
        self.rich = interactive() and not quiet
        self.interval_s = interval_s
        self.bar = make_progress(disable=not self.rich)
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.last_line: dict[str, float] = {}
        self.done: dict[str, int] = {}

    def __enter__(self) -> ProgressDisplay:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < self.done.get(stage, 0):  # the same stage again (the next fold, a rerun)
            self.started.pop(stage, None)
            self.last_line.pop(stage, None)
            if stage in self.tasks:
                self.bar.reset(self.tasks[stage], total=max(total, 1))
        self.done[stage] = done
        self.started.setdefault(stage, now)
        if self.rich:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=max(total, 1))
            self.bar.update(self.tasks[stage], completed=done, total=max(total, 1))
            return
        if self.quiet:
            return
        finished = total > 0 and done >= total
        last = self.last_line.get(stage)
        if not finished and last is not None and now - last < self.interval_s:
            return
        if finished and last == -1.0:
            return
        elapsed = now - self.started[stage]
        line = f"{stage}: {done}/{total}"
        if total > 0:
            line += f" ({100.0 * done / total:.0f} %)"
        line += f", {_duration(elapsed)} elapsed"
        if 0 < done < total:
            line += f", about {_duration(elapsed * (total - done) / done)} left"
        log.info("%s", line)
        self.last_line[stage] = -1.0 if finished else now
