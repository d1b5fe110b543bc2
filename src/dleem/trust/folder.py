"""What a model folder carries for the trust map: ``trust.json`` and
``trust_features.safetensors``.

``dleem upscale --trust`` takes no workspace, so the model folder holds everything:
the LR noise model, the features of the training blocks (the novelty's reference), the
consistency test's false-alarm rate and the error calibration fitted on held-out blocks
(with those blocks, so the calibration can be inspected and refitted). Arrays go to
safetensors (no unpickling), the rest to JSON; both written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import DleemError, InputError
from dleem.trust.blocks import FALSE_ALARM, FEATURE_NAMES
from dleem.trust.calibration import Calibration, Reference
from dleem.trust.noise import NoiseModel

TRUST_JSON = "trust.json"
FEATURES_FILE = "trust_features.safetensors"
SCHEMA = "dleem-model-trust"
SCHEMA_VERSION = 1


@dataclass
class HeldOut:
    """Held-out blocks: `calibration.design` rows, novelty, measured RMSE (grey levels)."""

    x: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    novelty: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rmse: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class ModelTrust:
    """The model folder's trust files, read or to be written."""

    block_size_lr_px: int
    dtype_max: float
    noise: NoiseModel
    reference: Reference
    calibration: Calibration
    held_out: HeldOut = field(default_factory=HeldOut)
    false_alarm: float = FALSE_ALARM

    def to_dict(self) -> dict[str, Any]:
        r = self.reference
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                "block_size_lr_px": int(self.block_size_lr_px), "dtype_max": float(self.dtype_max),
                "noise_model": self.noise.to_dict(),
                "features": {"names": list(FEATURE_NAMES), "file": FEATURES_FILE,
                             "n_training_blocks": int(len(r.features)),
                             "center": r.center.tolist(), "spread": r.spread.tolist(),
                             "novelty_threshold_distance": float(r.threshold)},
                "consistency": {"statistic": "mean of z^2 per block, z = (degrade(SR) - LR) / sigma",
                                "false_alarm_rate": float(self.false_alarm)},
                "calibration": self.calibration.to_dict()}


def model_trust_paths(model_dir: str | PathLike[str]) -> tuple[Path, Path]:
    d = Path(model_dir)
    return d / TRUST_JSON, d / FEATURES_FILE


def write_model_trust(model_dir: str | PathLike[str], trust: ModelTrust) -> tuple[Path, Path]:
    """Write both files atomically (the arrays first: a reader finding trust.json finds them)."""
    from safetensors.numpy import save_file

    from dleem.io.atomic import atomic_write, write_json

    js, st = model_trust_paths(model_dir)
    h = trust.held_out
    arrays = {"features": np.ascontiguousarray(trust.reference.features, dtype=np.float32),
              "held_out_x": np.ascontiguousarray(h.x, dtype=np.float32).reshape(-1, 3),
              "held_out_novelty": np.ascontiguousarray(h.novelty, dtype=np.float32).ravel(),
              "held_out_rmse": np.ascontiguousarray(h.rmse, dtype=np.float32).ravel()}
    atomic_write(st, lambda tmp: save_file(arrays, tmp))
    write_json(js, trust.to_dict())
    return js, st


def read_model_trust(model_dir: str | PathLike[str]) -> ModelTrust:
    """Read the trust files; a folder without them names ``dleem train`` as the fix."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    js, st = model_trust_paths(model_dir)
    if not js.is_file() or not st.is_file():
        missing = js.name if not js.is_file() else st.name
        raise InputError(Path(model_dir), f"no {missing}: this model folder carries no trust "
                         f"calibration; train it again with this dleem (dleem train) to get one")
    try:
        data = json.loads(js.read_text(encoding="utf-8"))
        arrays = load_file(str(st))
    except (OSError, ValueError, SafetensorError) as error:
        raise InputError(js if isinstance(error, ValueError) else st, f"cannot be read ({error})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(js, f"not a {SCHEMA} file of version {SCHEMA_VERSION}")
    try:
        f = data["features"]
        if list(f["names"]) != list(FEATURE_NAMES):
            raise DleemError(f"features {f['names']} are not this dleem's {list(FEATURE_NAMES)}; train again")
        ref = Reference(features=arrays["features"].astype(np.float64), center=np.array(f["center"], float),
                        spread=np.array(f["spread"], float), threshold=float(f["novelty_threshold_distance"]))
        held = HeldOut(x=arrays["held_out_x"].astype(np.float64),
                       novelty=arrays["held_out_novelty"].astype(np.float64),
                       rmse=arrays["held_out_rmse"].astype(np.float64))
        return ModelTrust(block_size_lr_px=int(data["block_size_lr_px"]), dtype_max=float(data["dtype_max"]),
                          noise=NoiseModel.from_dict(data["noise_model"]), reference=ref,
                          calibration=Calibration.from_dict(data["calibration"]), held_out=held,
                          false_alarm=float(data["consistency"]["false_alarm_rate"]))
    except DleemError as error:
        raise InputError(js, str(error)) from None
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(js, f"missing or bad entry ({error})") from None
