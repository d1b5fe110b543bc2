"""The training schedule: everything that is a function of the fraction of the budget spent.

The budget is ``steps`` or ``minutes``. The learning rate, the start of the adversarial
phase and the validation times are functions of the *fraction of the budget elapsed*,
so a wall-clock budget gets a complete schedule too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Validations over a whole budget (evenly spaced in budget fraction).
N_VALIDATIONS = 20
#: A validation may take at most 1/VALIDATION_COST_FACTOR of a wall-clock budget.
VALIDATION_COST_FACTOR = 20.0


def cosine_lr(fraction: float, *, warmup: float = 0.02, floor: float = 0.01) -> float:
    """LR multiplier at a fraction of the budget (steps or minutes) elapsed.

    Linear warm-up over the first ``warmup`` of the budget, then a cosine decay to
    ``floor``. Scheduling on the fraction, not the step, makes a wall-clock budget work.
    """
    f = min(max(float(fraction), 0.0), 1.0)
    if warmup > 0 and f < warmup:
        return max(f / warmup, 1e-3)
    t = (f - warmup) / max(1.0 - warmup, 1e-9)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def step_lr(fraction: float, *, milestones: tuple[float, ...] = (0.5, 0.75, 0.9), gamma: float = 0.5) -> float:
    """Step schedule: multiply by ``gamma`` at each milestone fraction of the budget."""
    return gamma ** sum(1 for m in milestones if fraction >= m)


LR_SCHEDULES = {"cosine": cosine_lr, "step": step_lr}


@dataclass
class Schedule:
    """Budget fraction, learning-rate multiplier, adversarial on/off and the next validation.

    Parameters
    ----------
    steps, minutes : the budget (exactly one is set).
    warmup : fraction of the budget trained pixel-only.
    adversarial : whether the run has an adversarial phase at all (``adv_weight > 0``).
    kind : "cosine" or "step" (see `LR_SCHEDULES`).
    """

    steps: int | None
    minutes: float | None
    warmup: float
    adversarial: bool
    kind: str = "cosine"
    n_validations: int = N_VALIDATIONS
    next_validation: float = 0.0

    @property
    def budget_s(self) -> float | None:
        return None if self.minutes is None else self.minutes * 60.0

    def fraction(self, step: int, elapsed_s: float) -> float:
        """Fraction of the budget spent after ``step`` steps and ``elapsed_s`` seconds."""
        if self.steps is not None:
            return step / self.steps
        return elapsed_s / self.budget_s

    def lr_multiplier(self, fraction: float) -> float:
        return LR_SCHEDULES[self.kind](fraction)

    def adversarial_on(self, fraction: float) -> bool:
        return self.adversarial and fraction >= self.warmup

    def final_phase(self) -> str:
        return "gan" if self.adversarial and self.warmup < 1 else "pixel"

    def start(self, step: int, elapsed_s: float) -> None:
        """Place the next validation after the point a (resumed) run starts from."""
        f = self.fraction(step, elapsed_s)
        self.next_validation = (math.floor(f * self.n_validations) + 1) / self.n_validations

    def validation_due(self, fraction: float) -> bool:
        return fraction >= self.next_validation or fraction >= 1.0

    def validated(self, fraction: float, cost_s: float) -> None:
        """Move the next validation past ``fraction``; under a wall-clock budget, also far
        enough that validation takes at most 1/`VALIDATION_COST_FACTOR` of the time."""
        while self.next_validation <= fraction:
            self.next_validation += 1.0 / self.n_validations
        if self.budget_s is not None:
            self.next_validation = max(self.next_validation,
                                       fraction + VALIDATION_COST_FACTOR * cost_s / self.budget_s)

    def progress(self, step: int, elapsed_s: float) -> tuple[int, int]:
        """(done, total) for a progress callback: steps, or whole seconds of a time budget."""
        if self.steps is not None:
            return step, self.steps
        total = int(self.budget_s)
        return min(int(elapsed_s), total), total
