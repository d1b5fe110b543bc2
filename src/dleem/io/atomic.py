"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (or a killed run) never sees a half-written file under the final name, and a
failed write leaves nothing behind. One implementation for every output dleem writes,
with the checks that belong to writing: can this folder be written (before the work
starts), what a failed write means in one line (`OutputError`), and the removal of the
hidden ``.NAME.XXXX.part`` files a killed run could not remove itself.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dleem.errors import DleemError, InputError

#: A ``.*.part`` file untouched for this long belongs to no running write: removed.
STALE_PART_S = 60.0

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide, not thread-safe


class OutputError(DleemError, OSError):
    """An output that could not be written: one line naming the file and the problem.

    Still an `OSError` with the original ``errno``, so a caller that resumes after a
    full disk (upscale) can tell it from a refusal (permissions, read-only file system).
    """

    def __init__(self, path: str | os.PathLike[str], error: OSError,
                 advice: str = "free space and rerun") -> None:
        OSError.__init__(self, error.errno, error.strerror or str(error), str(path))
        self.path = str(path)
        reason = error.strerror or str(error)
        if error.errno in _FULL:
            self.problem = f"disk full while writing ({reason}); {advice}"
        elif error.errno in _REFUSED:
            self.problem = f"cannot be written ({reason})"
        elif error.errno == errno.ENOTDIR:
            self.problem = "cannot be written: a file is in the way of its folder"
        else:
            self.problem = f"cannot be written ({reason})"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``.

    The temporary file lives in the target's folder (a rename within one file system is
    atomic) and gets the permissions a plain ``open`` would give; on any error, including
    KeyboardInterrupt, it is removed and the target is left as it was. An `OSError`
    (full disk, permissions, read-only file system) becomes an `OutputError` naming
    ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(path, error) from error
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OutputError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(path, error) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int = 2) -> Path:
    """Write ``data`` as JSON, atomically."""
    text = json.dumps(data, indent=indent) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def check_output_folder(folder: str | os.PathLike[str]) -> None:
    """Prove that files can be created in ``folder``, or in its nearest existing ancestor
    where it is still to be made (nothing is created: a later refusal leaves no trace)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(probe, "is a file, not a folder: the output cannot go under it")
    try:
        fd, name = tempfile.mkstemp(prefix=".dleem-write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        raise DleemError(f"{probe}: cannot write in this folder ({error.strerror or error})") from None


def check_output_dir(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """An output folder: refused when it is an existing file, else checked writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, f"is an existing file; the {what} must be a folder")
    check_output_folder(folder)
    return folder


def make_folder(folder: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` with a one-line error."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DleemError(f"{folder}: cannot create this folder ({error.strerror or error})") from None
    return folder


def files_under(folder: str | os.PathLike[str]) -> set[Path]:
    """Every file and folder under ``folder`` (empty when it does not exist)."""
    folder = Path(folder)
    return set(folder.rglob("*")) if folder.is_dir() else set()


def remove_new_files(folder: str | os.PathLike[str], existing: set[Path]) -> None:
    """Undo a failed step: remove what it created under ``folder`` (files, then the folders
    it emptied, then ``folder`` itself if the step created it), given `files_under` from
    before the step. Files that existed before are left as they are."""
    folder = Path(folder)
    for path in sorted(files_under(folder) - existing, key=lambda p: len(p.parts), reverse=True):
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            continue
    if not existing and folder.is_dir():
        try:
            folder.rmdir()
        except OSError:
            pass


def remove_stale_parts(*folders: str | os.PathLike[str], older_than_s: float = STALE_PART_S) -> list[Path]:
    """Delete the ``.NAME.XXXX.part`` files a killed write left in ``folders``.

    A kill cannot clean up after itself, so each step calls this on the folders it
    writes. Parts modified within ``older_than_s`` may belong to a write still running
    (another process) and are kept.
    """
    removed: list[Path] = []
    now = time.time()
    for folder in folders:
        try:
            candidates = list(Path(folder).glob(".*.part"))
        except OSError:
            continue
        for part in candidates:
            try:
                if part.is_file() and now - part.stat().st_mtime > older_than_s:
                    part.unlink()
                    removed.append(part)
            except OSError:
                continue
    return removed
