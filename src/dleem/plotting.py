"""What every figure dleem draws shares: scale-bar lengths, µm labels, atomic PNG files.

Registration QC, the report, the training curves, the consistency summary and the
planner's figure all import these, so a scale bar reads the same everywhere and no
half-written PNG is ever left under its final name. matplotlib is imported by the callers.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path
from typing import Any

from dleem.io.atomic import atomic_write


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target`` (0 for target <= 0)."""
    if target <= 0:
        return 0.0
    power = 10.0 ** math.floor(math.log10(target))
    return next(step * power for step in (5, 2, 1) if step * power <= target)


def format_um(length_um: float) -> str:
    """A length in µm as a label: mm, µm or nm, whichever reads without a fraction."""
    if length_um >= 1000:
        return f"{length_um / 1000:g} mm"
    if length_um >= 1:
        return f"{length_um:g} µm"
    return f"{length_um * 1000:g} nm"


def save_png(fig: Any, path: str | PathLike[str], *, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (temp file, then rename)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
