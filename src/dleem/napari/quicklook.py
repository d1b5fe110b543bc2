"""Quick look: LR | bicubic | SR of one LR box, with the model chosen in the widget.

The box is cut from the LR map with the model's receptive field (and the bicubic's
support) as context where the map has it, so the SR and the bicubic of the box equal
those of the whole upscaled map there: the same `upscale_array` and the same
`dleem.imaging.bicubic_upsample` as the CLI and the report, never a second version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dleem.errors import ParameterError
from dleem.imaging import BICUBIC_HALO_LR_PX, bicubic_upsample

#: Largest LR side a quick look takes (a whole map is `upscale_file`'s job).
MAX_SIDE_LR_PX = 1024


@dataclass
class QuickLook:
    """The three views of ``box`` (half-open LR px r0, c0, r1, c1): LR, and both on the fine grid."""

    box: tuple[int, int, int, int]
    scale: int
    lr: np.ndarray
    bicubic: np.ndarray
    sr: np.ndarray


def quick_look(lr_map: Any, box: tuple[int, int, int, int], model: Any, *,
               device: str = "cpu", tile: int = 256) -> QuickLook:
    """LR, bicubic and SR of ``box`` of ``lr_map`` (an array-like, read only around the box).

    ``model`` is a model folder or a `dleem.models.LoadedModel` (load it once to look often).
    """
    from dleem.models import load_model
    from dleem.upscale import upscale_array

    r0, c0, r1, c1 = (int(v) for v in box)
    h, w = lr_map.shape[-2:]
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise ParameterError("box", f"({r0}, {c0}, {r1}, {c1}) is not inside the LR map {h} x {w}")
    if max(r1 - r0, c1 - c0) > MAX_SIDE_LR_PX:
        raise ParameterError("box", f"sides must be <= {MAX_SIDE_LR_PX} LR px for a quick look; "
                                    "upscale the whole map instead")
    m = model if hasattr(model, "generator") else load_model(model, device)
    k = int(m.scale)
    halo = max(int(m.halo_lr_px), BICUBIC_HALO_LR_PX)
    g0, h0 = max(0, r0 - halo), max(0, c0 - halo)
    g1, h1 = min(h, r1 + halo), min(w, c1 + halo)
    context = np.asarray(lr_map[g0:g1, h0:h1])
    cut = (slice(k * (r0 - g0), k * (r1 - g0)), slice(k * (c0 - h0), k * (c1 - h0)))
    sr = upscale_array(context, m, tile=tile, device=str(m.device))[cut]
    bicubic = bicubic_upsample(context, k)[cut]
    return QuickLook(box=(r0, c0, r1, c1), scale=k, lr=context[r0 - g0:r1 - g0, c0 - h0:c1 - h0],
                     bicubic=bicubic, sr=sr)
