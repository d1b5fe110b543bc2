"""Acquire one more HR region of a synthetic specimen, at a box of the LR map.

What a microscopist does after the planner (`dleem plan`) proposes a place: image it at
HR. The new region is an undistorted HR frame (no rotation, shear or drift: a stage
move, not a new session) centred on the box, with the beam, dose and grey scale of the
acquisition's first HR region unless given, and its own noise seed.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np

from dleem.errors import ParameterError
from dleem.synth.acquisition import SynthParams, acquire, hr_pixel_to_phys
from dleem.synth.specimen import render


def acquire_region(truth: str | PathLike[str] | dict, lr_box: tuple[int, int, int, int], *,
                   seed: int = 0, dose: float | None = None, blur_sigma_px: float | None = None,
                   gain: float | None = None, offset: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """An HR image covering the LR box ``(r0, c0, r1, c1)`` (half-open LR px) at the
    acquisition's HR pixel size, and its truth entry (``hr_to_lr``, ``lr_box``,
    ``pixel_size_um``, ``blur_sigma_px``, ``dose``, ``gain``, ``offset``, ``shape``).

    The frame is ``round((r1 - r0) * ratio)`` x ``round((c1 - c0) * ratio)`` HR px,
    centred on the box centre ``((c0 + c1 - 1) / 2, (r0 + r1 - 1) / 2)`` (LR px).
    """
    from dleem.synth import load_truth, specimen_from_truth

    data = load_truth(truth)
    params = SynthParams.from_dict(data["params"])
    r0, c0, r1, c1 = (int(v) for v in lr_box)
    if r1 <= r0 or c1 <= c0:
        raise ParameterError("lr_box", f"must be (r0, c0, r1, c1) with r1 > r0 and c1 > c0, got {lr_box}")
    first = data["regions"][0] if data.get("regions") else {}
    p_lr = float(data["lr_pixel_size_um"])
    p_hr = p_lr / float(data["ratio"])
    shape = (int(round((r1 - r0) * data["ratio"])), int(round((c1 - c0) * data["ratio"])))
    centre = ((c0 + c1 - 1) / 2.0 * p_lr, (r0 + r1 - 1) / 2.0 * p_lr)
    m = hr_pixel_to_phys(shape, p_hr, centre, 0.0, 0.0, 0.0, (0.0, 0.0))
    blur = float(blur_sigma_px if blur_sigma_px is not None else first.get("blur_sigma_px", params.hr_blur_sigma_px))
    dose_ = float(dose if dose is not None else first.get("dose", params.hr_dose))
    gain_ = float(gain if gain is not None else first.get("gain", params.hr_gain))
    off = float(offset if offset is not None else first.get("offset", params.hr_offset))
    _, spec = specimen_from_truth(data)
    sig = render(spec, m, shape, blur_sigma_px=blur, supersample=params.hr_supersample)
    hr = acquire(sig, dose=dose_, gain=gain_, offset=off, bits=params.bits, noise=params.noise,
                 read_noise=params.read_noise, line_noise=params.line_noise, charging=params.charging,
                 rng=np.random.default_rng([int(params.seed), 8800, int(seed)]))
    entry = {"shape": list(shape), "hr_to_lr": (m / p_lr).tolist(), "lr_box": [r0, c0, r1, c1],
             "pixel_size_um": p_hr, "blur_sigma_px": blur, "dose": dose_, "gain": gain_, "offset": off,
             "centre_um": list(centre), "rotation_deg": 0.0, "scale_error": 0.0, "shear": 0.0,
             "drift_px": [0.0, 0.0], "ratio": float(data["ratio"])}
    return hr, entry
