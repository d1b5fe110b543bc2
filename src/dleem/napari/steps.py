"""The widget's steps as plain calls of the API the CLI uses, with cancel and discard.

Nothing here knows Qt: the widget runs these in a napari thread worker and draws the
progress they report. A `CancelToken` is the step's ``progress`` callback; once
cancelled it raises `dleem.errors.Cancelled` at the step's next report, and the step
stops as it does under Ctrl-C in the CLI: nothing under a final name, its partial state
(training checkpoints, the upscale work store) kept for ``resume`` until `discard`.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from dleem.errors import Cancelled
from dleem.progress import ProgressCallback, report
from dleem.workspace import Workspace

STEPS = ("register", "train", "upscale", "evaluate")


class CancelToken:
    """A progress callback that forwards to ``on_progress`` and raises `Cancelled` once asked."""

    def __init__(self, on_progress: ProgressCallback | None = None) -> None:
        self.on_progress = on_progress
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._cancelled.is_set():
            raise Cancelled(f"{stage} cancelled")
        report(self.on_progress, stage, done, total)


@dataclass
class TrainChoice:
    """What the widget offers for training: preset, budget (steps or minutes), pixel loss and
    recipe (None: `dleem.training.options.DEFAULT_RECIPE`)."""

    preset: str = "cpu"
    steps: int | None = None
    minutes: float | None = 5.0
    loss: str = "mae"
    recipe: str | None = None
    resume: bool = False


def model_dir(ws: Workspace, loss: str) -> Path:
    """The model folder a loss trains into, as `dleem run` names it."""
    from dleem.workflow import model_name

    return ws.models_dir / model_name(loss)


def register(lr: str | PathLike[str], hrs: Sequence[str | PathLike[str]], ws: Workspace,
             progress: ProgressCallback) -> Any:
    from dleem.registration.pipeline import register_files

    return register_files(lr, list(hrs), ws, progress=progress)


def train(ws: Workspace, choice: TrainChoice, progress: ProgressCallback,
          device: str = "auto") -> Path:
    from dleem.training import TrainOptions
    from dleem.training import train as train_model

    options = TrainOptions(steps=choice.steps, minutes=None if choice.steps else choice.minutes,
                           preset=choice.preset, loss=choice.loss, recipe=choice.recipe, device=device,
                           resume=choice.resume)  # never force: Discard starts over
    return Path(train_model(ws, model_dir(ws, choice.loss), options, progress=progress).model_dir)


def upscale_map(lr: str | PathLike[str], model: str | PathLike[str], ws: Workspace,
                progress: ProgressCallback, *, resume: bool = False, device: str = "auto") -> Path:
    """The whole LR map into the workspace's SR OME-TIFF and consistency map."""
    from dleem.upscale import upscale_file

    return upscale_file(lr, model, ws.sr_path, consistency_path=ws.consistency_path,
                        resume=resume, device=device, progress=progress)


def upscale_box(lr_map: Any, box: tuple[int, int, int, int], model: str | PathLike[str],
                progress: ProgressCallback, device: str = "cpu") -> Any:
    """One LR box (the visible area), in memory: the quick look's SR with its context."""
    from dleem.napari.quicklook import quick_look

    report(progress, "upscale visible area", 0, 1)
    look = quick_look(lr_map, box, model, device=device)
    report(progress, "upscale visible area", 1, 1)
    return look


def evaluate(ws: Workspace, models: Sequence[str | PathLike[str]], progress: ProgressCallback,
             tiles: int = 50) -> Path:
    from dleem.evaluation.evaluate import EvalOptions
    from dleem.evaluation.pipeline import evaluate_workspace
    from dleem.workflow import fit_tile_size

    sr, consistency, sr_model = ws.upscaled()
    options = EvalOptions(tiles=tiles, tile_size=fit_tile_size(ws, 256))
    return evaluate_workspace(ws, list(models), options, sr_path=sr, sr_model=sr_model,
                              consistency_path=consistency, progress=progress)


def partial_state(step: str, ws: Workspace, loss: str = "mae") -> list[Path]:
    """What a cancelled ``step`` keeps for resume (and `discard` removes)."""
    from dleem.upscale.stream import lock_path, work_store_path

    if step == "train":
        return [model_dir(ws, loss) / "checkpoints"]
    if step == "upscale":
        work = work_store_path(ws.sr_path)
        return [work, lock_path(work)]
    return []


def discard(step: str, ws: Workspace, loss: str = "mae") -> list[Path]:
    """Remove a cancelled step's partial state; returns what was removed."""
    removed = []
    for path in partial_state(step, ws, loss):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed

