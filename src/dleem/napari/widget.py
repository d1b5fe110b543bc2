"""The dock widget: register -> train -> upscale -> evaluate, and a quick look, in napari.

Each step is one call of `dleem.napari.steps` (the API functions the CLI calls) in a
napari thread worker; its progress callback drives the bar, and Cancel makes that
callback raise `dleem.errors.Cancelled`, so a step stops exactly as under Ctrl-C in the
CLI. Resume passes ``resume`` to the step; Discard removes the kept partial state.
Results come back as layers in the LR grid's µm (`dleem.napari.layers`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dleem.errors import Cancelled, DleemError
from dleem.napari import steps
from dleem.napari.geometry import sr_origin_um, world_box_to_lr
from dleem.napari.layers import LayerData, consistency_layer, sr_layer, units, workspace_layers
from dleem.napari.reader import show_colour_bar
from dleem.workspace import Workspace

log = logging.getLogger(__name__)

SELECTION = "dleem selection"
QUICK_LOOK_GAP_LR_PX = 8


class _Relay(QObject):
    """Carries progress from the worker thread to the widget (a queued Qt signal)."""

    progressed = Signal(str, int, int)


def layer_path(layer: Any) -> str | None:
    """The file behind an image layer: dleem's record of it, else napari's source."""
    recorded = (layer.metadata or {}).get("dleem", {}).get("path")
    if recorded and Path(recorded).is_file():
        return recorded
    source = getattr(getattr(layer, "source", None), "path", None)
    return source if source and Path(source).is_file() else None


class DleemWidget(QWidget):
    """Choose inputs, run each step with a progress bar, cancel, resume or discard."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        from dleem.models.arch import PRESETS
        from dleem.training.options import DEFAULT_RECIPE, PIXEL_LOSSES, RECIPES

        self.viewer = napari_viewer
        self.worker: Any = None
        self.token: steps.CancelToken | None = None
        self.last_step: str | None = None
        self._models: dict[str, Any] = {}
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)

        self.workspace = QLineEdit()
        self.workspace.setPlaceholderText("workspace folder")
        self.lr = QComboBox()
        self.hr = QListWidget()
        self.hr.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        self.lr_file = QLineEdit()
        self.lr_file.setPlaceholderText("or an LR file")
        self.hr_files = QLineEdit()
        self.hr_files.setPlaceholderText("or HR files, separated by ';'")
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText("cpu")
        self.budget = QDoubleSpinBox()
        self.budget.setRange(1, 1e6)
        self.budget.setValue(5)
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["minutes", "steps"])
        self.loss = QComboBox()
        self.loss.addItems(list(PIXEL_LOSSES))
        self.recipe = QComboBox()
        self.recipe.addItems(list(RECIPES))
        self.recipe.setCurrentText(DEFAULT_RECIPE)
        self.area = QComboBox()
        self.area.addItems(["whole map", "visible area"])
        self.model = QLineEdit()
        self.model.setPlaceholderText("model folder (default: WORKSPACE/models/model-LOSS)")
        self.resume = QCheckBox("resume")
        self.lr_grey = QCheckBox("HR in the LR grey scale (gain, offset)")
        self.lr_grey.toggled.connect(self.apply_lr_grey_scale)
        self.bar = QProgressBar()
        self.stage = QLabel("")
        self.buttons = {name: QPushButton(name.capitalize()) for name in steps.STEPS}
        for name, button in self.buttons.items():
            button.clicked.connect(lambda _=False, n=name: self.run_step(n))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.discard_button = QPushButton("Discard partial state")
        self.discard_button.clicked.connect(self.discard)
        self.look_button = QPushButton("Quick look: LR | bicubic | SR")
        self.look_button.clicked.connect(self.quick_look)
        open_button = QPushButton("Open workspace")
        open_button.clicked.connect(self.open_workspace)

        form = QFormLayout()
        form.addRow("workspace", self.workspace)
        form.addRow("", open_button)
        form.addRow("LR layer", self.lr)
        form.addRow("", self.lr_file)
        form.addRow("HR layers", self.hr)
        form.addRow("", self.hr_files)
        form.addRow("preset", self.preset)
        budget = QHBoxLayout()
        budget.addWidget(self.budget)
        budget.addWidget(self.budget_unit)
        form.addRow("budget", budget)
        form.addRow("loss", self.loss)
        form.addRow("recipe", self.recipe)
        form.addRow("upscale", self.area)
        form.addRow("model", self.model)
        form.addRow("", self.resume)
        form.addRow("", self.lr_grey)
        row = QHBoxLayout()
        for button in self.buttons.values():
            row.addWidget(button)
        control = QHBoxLayout()
        control.addWidget(self.cancel_button)
        control.addWidget(self.discard_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.look_button)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addLayout(control)
        layout.addStretch()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # -- inputs --------------------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        return [layer for layer in self.viewer.layers
                if type(layer).__name__ == "Image" and not getattr(layer, "multiscale", False)]

    def _refresh_layers(self, *_: Any) -> None:
        names = [layer.name for layer in self._image_layers()]
        current = self.lr.currentText()
        self.lr.clear()
        self.lr.addItems(names)
        if current in names:
            self.lr.setCurrentText(current)
        chosen = {item.text() for item in self.hr.selectedItems()}
        self.hr.clear()
        self.hr.addItems(names)
        for i in range(self.hr.count()):
            self.hr.item(i).setSelected(self.hr.item(i).text() in chosen)

    def ws(self) -> Workspace:
        text = self.workspace.text().strip()
        if not text:
            raise DleemError("choose a workspace folder first")
        return Workspace(text)

    def lr_path(self) -> str:
        if self.lr_file.text().strip():
            return self.lr_file.text().strip()
        if self.lr.currentText() in self.viewer.layers:
            path = layer_path(self.viewer.layers[self.lr.currentText()])
            if path:
                return path
        try:
            return self.ws().read_registration().lr_file
        except DleemError:
            raise DleemError("choose the LR layer (opened from a file) or an LR file") from None

    def hr_paths(self) -> list[str]:
        typed = [p.strip() for p in self.hr_files.text().split(";") if p.strip()]
        if typed:
            return typed
        paths = []
        for item in self.hr.selectedItems():
            path = layer_path(self.viewer.layers[item.text()])
            if path is None:
                raise DleemError(f"layer {item.text()!r} was not opened from a file: "
                                 "give HR files instead")
            paths.append(path)
        if not paths:
            raise DleemError("choose the HR layers or HR files")
        return paths

    def model_dir(self) -> Path:
        text = self.model.text().strip()
        return Path(text) if text else steps.model_dir(self.ws(), self.loss.currentText())

    def train_choice(self) -> steps.TrainChoice:
        by_steps = self.budget_unit.currentText() == "steps"
        return steps.TrainChoice(preset=self.preset.currentText(),
                                 steps=int(self.budget.value()) if by_steps else None,
                                 minutes=None if by_steps else float(self.budget.value()),
                                 loss=self.loss.currentText(), recipe=self.recipe.currentText(),
                                 resume=self.resume.isChecked())

    def lr_layer(self) -> Any:
        for layer in self.viewer.layers:
            if (layer.metadata or {}).get("dleem", {}).get("kind") == "lr":
                return layer
        if self.lr.currentText() in self.viewer.layers:
            return self.viewer.layers[self.lr.currentText()]
        raise DleemError("open the workspace (or the LR map) first")

    def visible_box(self) -> tuple[int, int, int, int]:
        """The LR pixels the canvas shows."""
        layer = self.lr_layer()
        centre = np.asarray(self.viewer.scene.camera.center[-2:], dtype=float)
        half = np.asarray(self.viewer.canvas.size, dtype=float) / self.viewer.scene.camera.zoom / 2
        corners = np.array([centre - half, centre + half])
        return world_box_to_lr(corners, float(layer.scale[-1]), tuple(layer.data.shape[-2:]))

    # -- steps ---------------------------------------------------------------------------
    def _call(self, name: str) -> Any:
        """The step's call (progress -> result) and what to do with its result, checked now."""
        ws = self.ws()
        if name == "register":
            lr, hrs = self.lr_path(), self.hr_paths()
            return (lambda p: steps.register(lr, hrs, ws, p)), lambda _: self.open_workspace()
        if name == "train":
            choice = self.train_choice()
            return (lambda p: steps.train(ws, choice, p)), self._trained
        if name == "upscale":
            model = self.model_dir()
            if self.area.currentText() == "visible area":
                layer = self.lr_layer()
                box = self.visible_box()
                return ((lambda p: steps.upscale_box(layer.data, box, model, p)),
                        lambda look: self._show_box(look, layer))
            lr = self.lr_path()
            resume = self.resume.isChecked()
            return (lambda p: steps.upscale_map(lr, model, ws, p, resume=resume)), self._upscaled
        if name == "evaluate":
            models = sorted(p for p in ws.models_dir.glob("*") if (p / "config.json").is_file())
            if not models:
                raise DleemError(f"{ws.models_dir}: no trained model to evaluate (train first)")
            return (lambda p: steps.evaluate(ws, models, p)), self._evaluated
        raise ValueError(name)

    def run_step(self, name: str) -> Any:
        """Start one step in a thread worker; returns the worker (None if refused)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        if self.worker is not None:
            show_error("dleem: a step is running; cancel it first")
            return None
        try:
            call, done = self._call(name)
        except DleemError as error:
            show_error(f"dleem {name}: {error}")
            return None
        self.last_step = name
        self.token = steps.CancelToken(self._relay.progressed.emit)
        self.worker = create_worker(call, self.token, _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(done)
        self.worker.errored.connect(lambda error: self._failed(name, error))
        self.worker.finished.connect(self._finished)
        self._busy(True)
        self.stage.setText(f"{name} ...")
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        if self.token is not None:
            self.token.cancel()
            self.stage.setText("cancelling at the next progress report ...")

    def discard(self) -> list[Path]:
        """Remove the partial state of the last cancelled train or upscale."""
        from napari.utils.notifications import show_info

        if self.worker is not None or self.last_step is None:
            return []
        removed = steps.discard(self.last_step, self.ws(), self.loss.currentText())
        show_info("dleem: removed " + (", ".join(map(str, removed)) or "nothing"))
        return removed

    def _busy(self, busy: bool) -> None:
        for button in (*self.buttons.values(), self.look_button, self.discard_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.stage.setText(stage)
        self.bar.setMaximum(max(total, 1))
        self.bar.setValue(min(done, max(total, 1)))

    def _failed(self, name: str, error: BaseException) -> None:
        from napari.utils.notifications import show_error, show_info

        if isinstance(error, Cancelled):
            kept = [str(p) for p in steps.partial_state(name, self.ws(), self.loss.currentText())
                    if p.exists()]
            show_info(f"dleem {name}: cancelled; nothing written under a final name"
                      + (f"; kept for resume: {', '.join(kept)}" if kept else ""))
            self.stage.setText(f"{name} cancelled")
        elif isinstance(error, DleemError):
            show_error(f"dleem {name}: {error}")
            self.stage.setText(f"{name} failed")
        else:
            log.error("dleem %s failed", name, exc_info=error)
            show_error(f"dleem {name}: {type(error).__name__}: {error}")
            self.stage.setText(f"{name} failed")

    def _finished(self) -> None:
        self.worker = None
        self._busy(False)

    # -- results as layers -------------------------------------------------------------
    def add_layers(self, layers: list[LayerData]) -> None:
        """Add layer data, replacing layers of the same name."""
        from napari.layers import Layer

        for data, kwargs, kind in layers:
            name = kwargs.get("name")
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            layer = self.viewer.add_layer(Layer.create(data, kwargs, kind))
            show_colour_bar(layer)

    def open_workspace(self) -> None:
        from napari.utils.notifications import show_warning

        try:
            found = workspace_layers(self.ws().path)
        except DleemError as error:
            show_warning(f"dleem: {error}")
            return
        self.add_layers(found.layers)
        if found.problems:
            show_warning("dleem: " + "; ".join(found.problems))
        self.apply_lr_grey_scale(self.lr_grey.isChecked())

    def apply_lr_grey_scale(self, on: bool) -> None:
        """Show every HR region raw, or mapped to the LR grey scale by its fitted gain and offset."""
        from dleem.napari.layers import in_lr_grey_scale

        for layer in self.viewer.layers:
            meta = (layer.metadata or {}).get("dleem", {})
            if meta.get("kind") != "hr" or meta.get("lr_grey_scale") == on:
                continue
            raw = meta.setdefault("raw", layer.data)
            layer.data = in_lr_grey_scale(raw, meta["gain"], meta["offset"]) if on else raw
            meta["lr_grey_scale"] = on
            layer.reset_contrast_limits()

    def _trained(self, model_dir: Path) -> None:
        from napari.utils.notifications import show_info

        self._models.pop(str(model_dir), None)
        show_info(f"dleem: model saved in {model_dir}")

    def _upscaled(self, sr: Path) -> None:
        ws = self.ws()
        lr = self.lr_layer()
        layers = [sr_layer(sr)]
        if ws.consistency_path.is_file():
            px = (lr.metadata or {}).get("dleem", {}).get("pixel_size_um")
            layers.append(consistency_layer(ws.consistency_path, px))
        self.add_layers(layers)

    def _evaluated(self, index: Path) -> None:
        from napari.utils.notifications import show_info

        show_info(f"dleem: report written to {index}")

    def _show_box(self, look: Any, lr: Any) -> None:
        u = float(lr.scale[-1])
        r0, c0 = look.box[:2]
        origin = sr_origin_um(look.scale, u)
        self.add_layers([(look.sr, {"name": f"SR x{look.scale} of LR {look.box}", "colormap": "gray",
                              **units(lr.metadata.get("dleem", {}).get("pixel_size_um")),
                              "scale": (u / look.scale,) * 2,
                              "translate": (r0 * u + origin, c0 * u + origin),
                              "metadata": {"dleem": {"kind": "sr box", "box": look.box}}},
                    "image")])

    # -- quick look ----------------------------------------------------------------------
    def selection(self) -> tuple[int, int, int, int]:
        """The LR box of the last rectangle drawn in the selection layer (made if missing)."""
        lr = self.lr_layer()
        if SELECTION not in self.viewer.layers or not len(self.viewer.layers[SELECTION].data):
            if SELECTION not in self.viewer.layers:
                shapes = self.viewer.add_shapes(name=SELECTION, edge_color="orange",
                                                face_color="transparent", ndim=2)
                shapes.mode = "add_rectangle"
            raise DleemError("draw a rectangle on the LR map in the 'dleem selection' layer")
        shapes = self.viewer.layers[SELECTION]
        corners = np.array([shapes.data_to_world(p) for p in np.asarray(shapes.data[-1])])
        box = world_box_to_lr(corners, float(lr.scale[-1]), tuple(lr.data.shape[-2:]))
        if box[0] >= box[2] or box[1] >= box[3]:
            raise DleemError("the rectangle lies outside the LR map")
        return box

    def quick_look(self) -> Any:
        """LR | bicubic | SR of the selection, side by side right of the map."""
        from napari.utils.notifications import show_error

        from dleem.models import load_model
        from dleem.napari.quicklook import quick_look

        try:
            lr = self.lr_layer()
            box = self.selection()
            folder = self.model_dir()
            if str(folder) not in self._models:
                self._models[str(folder)] = load_model(folder, "cpu")
            look = quick_look(lr.data, box, self._models[str(folder)])
        except DleemError as error:
            show_error(f"dleem quick look: {error}")
            return None
        self._show_look(look, float(lr.scale[-1]), lr.data.shape[-1])
        return look

    def _show_look(self, look: Any, u: float, width: int) -> None:
        k, (r0, c0, _, c1) = look.scale, look.box
        side, gap = (c1 - c0) * u, QUICK_LOOK_GAP_LR_PX * u
        left = width * u + gap
        origin = sr_origin_um(k, u)  # fine pixel (0, 0) relative to LR pixel (0, 0)
        unit_of = units(u) if u != 1.0 else {}
        panels = [("LR", look.lr, u, 0.0), ("bicubic", look.bicubic, u / k, origin),
                  (f"SR x{k}", look.sr, u / k, origin)]
        layers = []
        for i, (name, data, unit, shift) in enumerate(panels):
            layers.append((data, {"name": f"quick look: {name}", "colormap": "gray", **unit_of,
                                  "scale": (unit, unit),
                                  "translate": (r0 * u + shift, left + i * (side + gap) + shift),
                                  "metadata": {"dleem": {"kind": "quick look", "box": look.box}}},
                           "image"))
        self.add_layers(layers)
