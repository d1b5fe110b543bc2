"""Will it fit? Memory and disk checked against a size declared before it is allocated.

A TIFF header can declare 100000 x 100000 pixels in a few kilobytes, and a typo in a size
option asks for terabytes: both are refused here, in one line, before any work starts.
"""

from __future__ import annotations

import shutil
from os import PathLike
from pathlib import Path

from dleem.errors import InputError

_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"),
                  Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def available_memory() -> int:
    """Bytes of memory this process can still get: the system's available memory, capped
    by a container's (cgroup) limit where there is one."""
    import psutil

    free = int(psutil.virtual_memory().available)
    for limit_file in _CGROUP_LIMITS:
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            used = psutil.Process().memory_info().rss
            free = min(free, max(int(text) - used, 0))
        break
    return free


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def check_memory(source: str | PathLike[str], nbytes: int, what: str, advice: str) -> None:
    """Refuse work that needs ``nbytes`` of memory when less is available."""
    free = available_memory()
    if nbytes > free:
        raise InputError(source, f"{what} need about {_gb(nbytes)} of memory, and "
                                 f"{_gb(free)} are available; {advice}")


def free_disk(folder: str | PathLike[str]) -> tuple[Path, int | None]:
    """The nearest existing ancestor of ``folder`` and its free bytes (None: unknown)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return probe, shutil.disk_usage(probe).free
    except OSError:
        return probe, None


def check_disk(folder: str | PathLike[str], nbytes: int, what: str, advice: str) -> None:
    """Refuse writing ``nbytes`` into ``folder`` (or its nearest existing ancestor) when
    its file system has less free space."""
    probe, free = free_disk(folder)
    if free is not None and nbytes > free:
        raise InputError(folder, f"{what} need about {_gb(nbytes)} of disk, and "
                                 f"{probe} has {_gb(free)} free; {advice}")
