"""The training state and its checkpoint file: everything the next step depends on.

A checkpoint holds tensors and plain types only, so it loads with the safe
``torch.load(weights_only=True)``; resuming from it continues a killed run exactly. It also
records which run it belongs to (`RunIdentity`: the pairs, the loss, the seed, the
architecture, ...), and resuming with other values is refused with one line naming the
option, so a run never silently continues as something else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dleem.errors import DleemError, InputError
from dleem.io.atomic import atomic_write

CHECKPOINT_FORMAT = "dleem-checkpoint-2"
CHECKPOINT_DIR = "checkpoints"

#: How a mismatching field is named in the refusal ("trained with loss mae, not mse").
_LABELS = {
    "pairs_sha256": "the pairs manifest (SHA-256)", "loss": "loss", "seed": "seed", "preset": "preset",
    "arch": "architecture", "lr_dtype": "LR dtype", "scale": "scale", "adv_weight": "adv_weight",
    "regions": "regions", "consistency_weight": "consistency_weight", "pore_weight": "pore_weight",
}


@dataclass(frozen=True)
class RunIdentity:
    """What makes two trainings the same run: a checkpoint resumes only a run it matches."""

    pairs_sha256: str | None
    loss: str
    seed: int
    preset: str | None
    arch: dict[str, Any]
    lr_dtype: str
    scale: int
    adv_weight: float
    regions: list[str] | None = None  # the regions trained on; None: all of them
    consistency_weight: float = 0.0
    pore_weight: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RunIdentity:
        names = {f.name for f in dataclasses.fields(cls)}
        if isinstance(data, dict):  # checkpoints written before runs recorded these
            data = {"regions": None, "consistency_weight": 0.0, "pore_weight": 0.0, **data}
        if not isinstance(data, dict) or set(data) != names:
            raise InputError(where, "not a dleem training checkpoint (no valid run record)")
        return cls(**data)

    def check_resumes(self, saved: RunIdentity, where: str) -> None:
        """Refuse (`DleemError`) to continue ``saved`` (the checkpoint ``where``) as this run if
        any field differs."""
        for name, label in _LABELS.items():
            old, new = getattr(saved, name), getattr(self, name)
            if old != new:
                if name == "pairs_sha256":
                    raise DleemError(f"{where}: resume: the checkpoint was trained on other pairs "
                                     f"(pairs manifest SHA-256 {str(old)[:12]}..., not {str(new)[:12]}...)")
                raise DleemError(f"{where}: resume: the checkpoint was trained with {label} {old}, "
                                 f"not {new}")


@dataclass
class TrainState:
    """One point of a training run, as saved in ``MODEL_DIR/checkpoints/step_*.pt``."""

    step: int
    elapsed_s: float
    run: RunIdentity
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    ema: dict[str, Any]
    opt_g: dict[str, Any]
    opt_d: dict[str, Any]
    scaler: dict[str, Any]
    scaler_d: dict[str, Any]
    torch_rng: torch.Tensor
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["run"] = self.run.to_dict()
        out["history"] = [dict(r) for r in self.history]
        return {"format": CHECKPOINT_FORMAT, **out}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TrainState:
        if not isinstance(data, dict) or not str(data.get("format", "")).startswith("dleem-checkpoint-"):
            raise InputError(where, "not a dleem training checkpoint")
        if data["format"] != CHECKPOINT_FORMAT:
            raise InputError(where, f"written by another dleem version (format {data['format']!r}, "
                                    f"this dleem reads {CHECKPOINT_FORMAT!r}); start over")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data))
        if missing:
            raise InputError(where, f"not a dleem training checkpoint (no '{missing[0]}')")
        values = {name: data[name] for name in names}
        values["run"] = RunIdentity.from_dict(data["run"], where)
        values["step"], values["elapsed_s"] = int(data["step"]), float(data["elapsed_s"])
        return cls(**values)

    def save(self, model_dir: Path, keep: int = 0) -> Path:
        """Write ``checkpoints/step_<step>.pt`` atomically; keep the ``keep`` newest (0: all)."""
        path = Path(model_dir) / CHECKPOINT_DIR / f"step_{self.step:09d}.pt"
        content = self.to_dict()
        atomic_write(path, lambda tmp: torch.save(content, tmp))
        if keep > 0:
            for old in checkpoints(model_dir)[:-keep]:
                old.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: Path, device: torch.device | str = "cpu") -> TrainState:
        """Read a checkpoint safely (``weights_only=True``); any problem is one line naming the file."""
        try:
            data = torch.load(path, map_location=device, weights_only=True)
        except Exception:  # corrupt, truncated, or a pickle that is not plain tensors
            raise InputError(path, "cannot read checkpoint (corrupt, truncated, or not a dleem "
                                   "training checkpoint)") from None
        return cls.from_dict(data, str(path))


def checkpoints(model_dir: Path) -> list[Path]:
    """The checkpoints of a model folder, oldest first."""
    return sorted((Path(model_dir) / CHECKPOINT_DIR).glob("step_*.pt"))
