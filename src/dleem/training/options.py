"""`TrainOptions`: everything `dleem.training.train` can be told, checked before any work."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dleem.errors import DleemError, ParameterError
from dleem.imaging import check_scale
from dleem.models.arch import PRESETS, preset_training

PIXEL_LOSSES = ("mae", "mse")
ADV_LOSSES = ("ragan", "gan")
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
SCHEDULES = ("cosine", "step")
PORE_PHASES = ("dark", "bright")
#: The weights of the loss terms beside the pixel loss, by recipe: "pixel" is the pixel-only
#: model, "gan" adds the adversarial phase. "pixel" is the default because it won on the
#: small-pore benchmark (benchmarks/results/small_pores.md): at the demo's CPU budget the
#: adversarial phase cost 0.75 dB of PSNR (synthetic) and 0.86 dB (real shale) and 0.03 of
#: precision, and found no more pores. The consistency and pore terms are there for those who want
#: them; neither won there either, so no recipe turns them on.
RECIPES: dict[str, dict[str, float]] = {
    "gan": {"adv_weight": 5e-3, "consistency_weight": 0.0, "pore_weight": 0.0},
    "pixel": {"adv_weight": 0.0, "consistency_weight": 0.0, "pore_weight": 0.0},
}
DEFAULT_RECIPE = "pixel"
WEIGHTS = tuple(RECIPES[DEFAULT_RECIPE])
KEEP_CHECKPOINTS = 2


@dataclass
class TrainOptions:
    """Everything `train` can be told (the flags of ``dleem train``).

    Attributes
    ----------
    steps, minutes : budget; exactly one (``minutes`` defaults to 10 when neither is set).
    preset : size of the dleem generator (`dleem.models.arch.PRESETS`).
    batch : crops per step per process; patch : LR crop side in px (HR side = k * patch).
        Both, and ``disc_width``, default to the preset's training defaults.
    loss : pixel loss "mae" or "mse"; adv_loss : "ragan" (relativistic average) or "gan".
    recipe : "gan" or "pixel"; it gives every weight not set (None), and "pixel" sets every
        non-pixel weight to 0 (a non-zero one beside it is refused). None: `DEFAULT_RECIPE`'s
        weights under any given; validate() then records the recipe they match, or "custom".
    adv_weight : weight of the adversarial term (0: no adversarial phase).
    consistency_weight : weight of the data-consistency term (SR degraded by the LR
        forward model against the LR input).
    pore_weight : weight of the pore term (soft Dice of the pore phase of SR against HR's).
    pores : which side of the HR threshold is pore, "dark" (default) or "bright".
    warmup : fraction of the budget trained pixel-only before the adversarial phase.
    lr, lr_d : peak learning rates of the generator and the discriminator (AdamW).
    schedule : learning-rate schedule over the budget, "cosine" or "step".
    precision : CUDA numerics: "fp32" (TF32 off), "tf32", "bf16"/"fp16" autocast; "auto"
        picks tf32 on CUDA (see benchmarks/bench_train_gpu.py), fp32 elsewhere.
    checkpoint_every : steps between checkpoints (0: only at the end).
    keep_checkpoints : how many recent checkpoints to keep (0: all).
    val_tile, val_tiles : side (LR px) and number of the fixed validation tiles.
    deterministic : deterministic algorithms; default True with ``steps``, False with ``minutes``.
    """

    steps: int | None = None
    minutes: float | None = None
    preset: str = "default"
    batch: int | None = None
    patch: int | None = None
    loss: str = "mae"
    adv_loss: str = "ragan"
    recipe: str | None = None
    adv_weight: float | None = None
    consistency_weight: float | None = None
    pore_weight: float | None = None
    pores: str = "dark"
    warmup: float = 0.5
    lr: float = 1e-3
    lr_d: float = 2e-4
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    rot90: bool = False
    scale: int | None = None
    disc_width: int | None = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = KEEP_CHECKPOINTS
    val_tile: int = 64
    val_tiles: int = 32
    log_every: int = 10
    resume: bool = False
    force: bool = False
    deterministic: bool | None = None

    def validate(self) -> None:
        """Check every value and fill the preset defaults; `ParameterError` names the first bad one."""
        if self.steps is not None and self.minutes is not None:
            raise ParameterError("steps", "and minutes are exclusive: give one budget")
        if self.steps is None and self.minutes is None:
            self.minutes = 10.0
        if self.steps is not None:
            _integer("steps", self.steps, 1)
        if self.minutes is not None:
            _positive("minutes", self.minutes)
        _choice("preset", self.preset, PRESETS)
        _choice("loss", self.loss, PIXEL_LOSSES)
        _choice("adv_loss", self.adv_loss, ADV_LOSSES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("schedule", self.schedule, SCHEDULES)
        _positive("lr", self.lr)
        _positive("lr_d", self.lr_d)
        explicit = self.recipe not in (None, "custom")  # "custom": what validate() records
        if explicit:
            _choice("recipe", self.recipe, tuple(RECIPES))
        _choice("pores", self.pores, PORE_PHASES)
        base = RECIPES[self.recipe if explicit else DEFAULT_RECIPE]
        for name in WEIGHTS:
            value = getattr(self, name)
            if value is None:
                setattr(self, name, base[name])
                continue
            _number(name, value, 0.0)
            if explicit and self.recipe == "pixel" and value > 0:
                raise ParameterError(name, f"must be 0 with recipe pixel (it sets every non-pixel "
                                     f"weight to 0), got {value!r}")
            setattr(self, name, float(value))
        if not explicit:  # weights given alone make a recipe of their own
            weights = {name: getattr(self, name) for name in WEIGHTS}
            self.recipe = next((r for r, w in RECIPES.items() if w == weights), "custom")
        _number("weight_decay", self.weight_decay, 0.0)
        _number("warmup", self.warmup, 0.0, 1.0, what="a fraction of the budget in [0, 1]")
        _number("ema_decay", self.ema_decay, 0.0, 1.0, what="in [0, 1)")
        if self.ema_decay >= 1.0:
            raise ParameterError("ema_decay", f"must be in [0, 1), got {self.ema_decay!r}")
        _integer("seed", self.seed, 0)
        for name, low in (("batch", 1), ("patch", 4), ("disc_width", 1)):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), low)
        for name, low in (("checkpoint_every", 0), ("keep_checkpoints", 0), ("val_tile", 4),
                          ("val_tiles", 1), ("log_every", 1)):
            _integer(name, getattr(self, name), low)
        if self.scale is not None:
            try:
                check_scale(self.scale)
            except DleemError as error:
                raise ParameterError("scale", str(error).removeprefix("scale ")) from None
        defaults = preset_training(self.preset)
        self.batch = self.batch or defaults["batch"]
        self.patch = self.patch or defaults["patch"]
        self.disc_width = self.disc_width or defaults["disc_width"]
        if self.deterministic is None:
            self.deterministic = self.steps is not None

    @property
    def disc_stages(self) -> int:
        return preset_training(self.preset)["disc_stages"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _integer(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParameterError(name, f"must be an integer >= {low}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(name: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise ParameterError(name, f"must be a finite number > 0, got {value!r}")


def _number(name: str, value: Any, low: float, high: float | None = None, *, what: str = "") -> None:
    ok = _is_number(value) and value >= low and (high is None or value <= high)
    if not ok:
        raise ParameterError(name, f"must be {what or f'a finite number >= {low:g}'}, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParameterError(name, f"must be one of {', '.join(choices)}, got {value!r}")
