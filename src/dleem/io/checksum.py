"""SHA-256 of files: the provenance every record and report carries."""

from __future__ import annotations

import hashlib
from os import PathLike


def sha256_file(path: str | PathLike[str], chunk: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file, read in chunks so large maps stay cheap in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
