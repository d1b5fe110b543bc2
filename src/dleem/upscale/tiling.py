"""Tile geometry and the one tile function that every execution path calls.

Why the tiled result equals the whole-image result
--------------------------------------------------
The generator is a stack of zero-padded convolutions followed by a pixel shuffle, so
an output LR cell depends only on the input within ``halo`` LR pixels (the receptive
field radius, `LoadedModel.halo_lr_px`) and on where the *image* ends, because each
convolution zero-pads at the image border. A tile is therefore read as its core plus
``halo`` pixels of real image on every side, **clipped at the image border and never
padded by us**: where a tile touches the image edge the network pads it exactly as it
pads the whole image; where it does not, the network's padding only corrupts the halo,
which is thrown away. No blending, no seam.

All read windows have the same shape (``min(side, tile + 2 * halo)`` per axis: windows
near the far border are shifted inwards instead of shrunk), so tiles stack into
batches; the core sits at a per-tile offset inside its window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

MIN_TILE = 16


class Model(Protocol):
    """What upscaling needs from a loaded model (`dleem.models.LoadedModel`)."""

    generator: Any
    config: Any
    scale: int
    halo_lr_px: int

    def normalize(self, raw: np.ndarray) -> np.ndarray: ...

    def denormalize(self, x: np.ndarray, dtype: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class Tile:
    """One tile: its core (written to the output) and its read window, LR pixels, half-open."""

    index: int
    row: int
    col: int
    core: tuple[int, int, int, int]  # y0, y1, x0, x1
    read: tuple[int, int, int, int]  # y0, y1, x0, x1

    @property
    def core_in_read(self) -> tuple[int, int, int, int]:
        """The core relative to the read window (LR pixels)."""
        y0, y1, x0, x1 = self.core
        ry, rx = self.read[0], self.read[2]
        return y0 - ry, y1 - ry, x0 - rx, x1 - rx

    def sr_core(self, sr: np.ndarray, scale: int) -> np.ndarray:
        """Cut the valid centre out of a tile's SR output (last two axes on the fine grid)."""
        y0, y1, x0, x1 = self.core_in_read
        return sr[..., scale * y0:scale * y1, scale * x0:scale * x1]

    @property
    def core_shape(self) -> tuple[int, int]:
        return self.core[1] - self.core[0], self.core[3] - self.core[2]


def _window(start: int, stop: int, n: int, span: int, halo: int) -> tuple[int, int]:
    """Read window of width ``span`` around core [start, stop), shifted to stay in [0, n)."""
    lo = min(max(start - halo, 0), n - span)
    return lo, lo + span


@dataclass(frozen=True)
class TileGrid:
    """Cores of ``tile`` x ``tile`` LR pixels on a regular grid (the last ones smaller).

    Parameters
    ----------
    shape : (int, int)
        LR image shape (rows, columns).
    tile : int
        Core side in LR pixels (>= 16).
    halo : int
        Context added on each side in LR pixels (the generator's receptive-field radius).
    """

    shape: tuple[int, int]
    tile: int
    halo: int

    def __post_init__(self) -> None:
        if self.tile < MIN_TILE:
            from dleem.errors import ParameterError

            raise ParameterError("tile", f"must be >= {MIN_TILE} LR pixels, got {self.tile}")

    @property
    def grid_shape(self) -> tuple[int, int]:
        h, w = self.shape
        return -(-h // self.tile), -(-w // self.tile)

    @property
    def read_shape(self) -> tuple[int, int]:
        """The common shape of every read window."""
        span = self.tile + 2 * self.halo
        return min(self.shape[0], span), min(self.shape[1], span)

    def __len__(self) -> int:
        gy, gx = self.grid_shape
        return gy * gx

    def __getitem__(self, index: int) -> Tile:
        gy, gx = self.grid_shape
        if not 0 <= index < gy * gx:
            raise IndexError(index)
        r, c = divmod(index, gx)
        h, w = self.shape
        y0, x0 = r * self.tile, c * self.tile
        y1, x1 = min(y0 + self.tile, h), min(x0 + self.tile, w)
        sy, sx = self.read_shape
        ry = _window(y0, y1, h, sy, self.halo)
        rx = _window(x0, x1, w, sx, self.halo)
        return Tile(index, r, c, (y0, y1, x0, x1), (ry[0], ry[1], rx[0], rx[1]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def subtiles(tile: Tile, shape: tuple[int, int], halo: int) -> list[Tile]:
    """Split a tile's core into quadrants with their own (clipped) read windows.

    Used when even one tile does not fit in accelerator memory: the pieces are exact too
    (each still has ``halo`` of context or the image edge), only their windows differ in
    shape, so they run one by one.
    """
    y0, y1, x0, x1 = tile.core
    ym, xm = (y0 + y1) // 2, (x0 + x1) // 2
    out = []
    for a, b in ((y0, ym), (ym, y1)):
        for c, d in ((x0, xm), (xm, x1)):
            if b <= a or d <= c:
                continue
            read = (max(a - halo, 0), min(b + halo, shape[0]), max(c - halo, 0), min(d + halo, shape[1]))
            out.append(Tile(tile.index, tile.row, tile.col, (a, b, c, d), read))
    return out


def prepare(model: Model, device: Any) -> Model:
    """Move the generator to ``device`` in channels-last layout (in place; returns the model).

    Channels-last lets oneDNN (CPU) and cuDNN (tensor cores) pick faster convolution
    kernels: about 20 % on this 2-core CPU for the default preset. MPS keeps its default.
    """
    import torch

    gen = model.generator
    if hasattr(gen, "to"):
        dev = torch.device(device)
        gen.to(dev)
        if dev.type in ("cpu", "cuda"):
            gen.to(memory_format=torch.channels_last)
    return model


def predict(model: Model, raw: np.ndarray, *, device: Any = "cpu", amp_dtype: Any = None) -> np.ndarray:
    """The one tile function: raw LR windows (N, h, w) -> normalised float32 SR (N, k*h, k*w).

    Normalisation is the model's fixed affine map (whole-image statistics stored at
    training), never statistics of the tile. Called by the local engine and, unchanged,
    by the dask workers.
    """
    import torch

    x = np.ascontiguousarray(model.normalize(np.asarray(raw)), dtype=np.float32)
    tensor = torch.from_numpy(x[:, None]).to(device)
    dev = torch.device(device)
    with torch.inference_mode():
        if amp_dtype is not None and dev.type == "cuda":
            with torch.autocast("cuda", dtype=amp_dtype):
                y = model.generator(tensor)
        else:
            y = model.generator(tensor)
    y = y.float()[:, 0].cpu().numpy()
    k = model.scale
    if y.shape[-2:] != (k * raw.shape[-2], k * raw.shape[-1]):
        from dleem.errors import DleemError

        raise DleemError(
            f"the model's generator returned shape {tuple(y.shape[-2:])} for input "
            f"{tuple(raw.shape[-2:])}: not scale {k} as its config says"
        )
    return y


def upscale_windows(
    model: Model, raw: np.ndarray, tiles: Sequence[Tile], out_dtype: Any, *, device: Any = "cpu",
    amp_dtype: Any = None,
) -> list[np.ndarray]:
    """Run `predict` on stacked windows and return each tile's SR core in ``out_dtype``."""
    y = predict(model, raw, device=device, amp_dtype=amp_dtype)
    return [np.asarray(model.denormalize(t.sr_core(y[i], model.scale), out_dtype)) for i, t in enumerate(tiles)]
