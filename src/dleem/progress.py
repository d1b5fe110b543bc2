"""One progress display for all long work (rich), quiet when not on a terminal or when disabled."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def enabled() -> bool:
    """Progress bars draw on an interactive stderr unless DLEEM_NO_PROGRESS is set."""
    return sys.stderr.isatty() and not os.environ.get("DLEEM_NO_PROGRESS")


def make_progress(*extra_columns: TextColumn) -> Progress:
    """A rich Progress with the columns a long SEM job wants: bar, count, elapsed, time left."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled(),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    with make_progress() as progress:
        yield from progress.track(items, total=total, description=description)
