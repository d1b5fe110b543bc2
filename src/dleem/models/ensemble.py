"""Test-time dihedral ensemble: the mean of a generator over the 8 flips and transposes.

The generator was trained on flipped crops, so each of the 8 views is an equally good
estimate; their mean cancels the orientation-dependent part of its error (Timofte et al.
2016, "Seven ways to improve example-based single image super resolution"). It costs 8
forward passes and keeps the receptive field, so tiled inference stays exact.
"""

from __future__ import annotations

import torch
from torch import nn

#: The 8 elements of the dihedral group as (transpose, flip rows, flip columns).
DIHEDRAL = tuple((t, fr, fc) for t in (False, True) for fr in (False, True) for fc in (False, True))


def _apply(x: torch.Tensor, transpose: bool, flip_rows: bool, flip_cols: bool) -> torch.Tensor:
    if transpose:
        x = x.transpose(-2, -1)
    dims = [d for d, on in ((-2, flip_rows), (-1, flip_cols)) if on]
    return x.flip(dims) if dims else x


def _invert(x: torch.Tensor, transpose: bool, flip_rows: bool, flip_cols: bool) -> torch.Tensor:
    dims = [d for d, on in ((-2, flip_rows), (-1, flip_cols)) if on]
    x = x.flip(dims) if dims else x
    return x.transpose(-2, -1) if transpose else x


class DihedralEnsemble(nn.Module):
    """``generator`` averaged over the dihedral group; same interface and attributes."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.scale = getattr(generator, "scale", None)
        self.receptive_field_lr_px = getattr(generator, "receptive_field_lr_px", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = None
        for g in DIHEDRAL:
            y = _invert(self.generator(_apply(x, *g)), *g)
            out = y if out is None else out + y
        return out / len(DIHEDRAL)
