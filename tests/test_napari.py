"""The napari plugin on a small real workspace: the reader's layers and their geometry,
bad input, and the dock widget running register -> train -> upscale through the API.

Skipped, with the reason, only where napari is not installed or Qt cannot start (no
display: the test command runs them under xvfb-run where it exists).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari extra is not installed")


def _qt_problem() -> str | None:
    """Why Qt cannot start here (None if it can): tried in a child, since Qt aborts."""
    code = "from qtpy.QtWidgets import QApplication; QApplication([])"
    try:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return "starting Qt timed out"
    if run.returncode == 0:
        return None
    lines = [line.strip() for line in run.stderr.splitlines() if line.strip()]
    told = [line for line in lines if "could not" in line.lower()]  # "could not connect to display"
    return (told or lines or [f"exit {run.returncode}"])[0]


_PROBLEM = _qt_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=f"Qt cannot start: {_PROBLEM}")

from dleem.cli import main  # noqa: E402
from dleem.napari.reader import get_reader  # noqa: E402
from dleem.workspace import Workspace  # noqa: E402

RATIO = 4


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """`dleem synth`: an LR map of 160 px and one HR region of 256 px at ratio 4."""
    from dleem import synth

    root = tmp_path_factory.mktemp("napari")
    synth.generate(root / "data", synth.SynthParams(seed=3, ratio=RATIO, lr_size=160, hr_size=256,
                                                    regions=1, databar_rows=0))
    return root / "data"


@pytest.fixture(scope="module")
def workspace(scene, tmp_path_factory):
    """A whole workspace made through the CLI: register, train (2 steps), upscale."""
    ws = Workspace(tmp_path_factory.mktemp("ws") / "ws")
    assert main(["register", str(scene / "LR.tif"), str(scene / "HR_1.tif"), "-o", str(ws.path),
                 "--no-qc"]) == 0
    model = ws.models_dir / "model-mae"
    assert main(["train", str(ws.path), "-o", str(model), "--steps", "2", "--preset", "tiny",
                 "--device", "cpu"]) == 0
    assert main(["upscale", str(scene / "LR.tif"), "--model", str(model), "-o", str(ws.sr_path),
                 "--consistency", str(ws.consistency_path), "--device", "cpu"]) == 0
    return ws


def _world(layer, points):
    return np.array([layer.data_to_world(p) for p in np.asarray(points)])


def _open(viewer, path):
    layers = viewer.open(str(path), plugin="dleem")
    return {layer.name: layer for layer in layers}


def test_the_workspace_opens_as_layers_in_lr_micrometres(make_napari_viewer, workspace):
    reg = json.loads(workspace.registration_json.read_text())
    px = reg["lr_pixel_size_um"]
    viewer = make_napari_viewer()
    layers = _open(viewer, workspace.path)
    assert {"LR", "HR HR_1", "train / val / test", "SR x4", "consistency"} <= set(layers)

    lr = layers["LR"]
    np.testing.assert_allclose(lr.scale, [px, px])
    np.testing.assert_allclose(lr.translate, [0, 0])

    # a known HR pixel lands, in world µm, where registration.json puts it on the LR grid
    m = np.array(reg["regions"][0]["hr_to_lr"])
    hr = layers["HR HR_1"]
    for row, col in [(0, 0), (255, 17), (100, 200)]:
        x_lr, y_lr = m @ [col, row, 1.0]
        np.testing.assert_allclose(hr.data_to_world([row, col]), [y_lr * px, x_lr * px], atol=1e-9)

    # the SR: a multiscale layer at the OME metadata's pixel size and sub-pixel origin
    import tifffile

    with tifffile.TiffFile(workspace.sr_path) as tif:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        shapes = [level.shape for level in tif.series[0].levels]
    record = json.loads(ome["Description"])["dleem"]
    pixels = ome["Pixels"]
    sr = layers["SR x4"]
    np.testing.assert_allclose(sr.scale, [pixels["PhysicalSizeY"], pixels["PhysicalSizeX"]])
    np.testing.assert_allclose(sr.translate, [pixels["Plane"]["PositionY"]] * 2)
    assert sr.translate[0] == pytest.approx(record["sr_origin_lr_px"] * px)
    assert sr.multiscale and [level.shape for level in sr.data] == shapes

    # the splits: rectangles whose edges are the LR pixel edges of the manifest's boxes
    pairs = workspace.read_pairs()
    region = pairs.regions[0]
    expected = [region.global_box(b) for name in ("train", "val", "test")
                for b in region.splits.of(name)]
    shapes = layers["train / val / test"]
    assert len(shapes.data) == len(expected)
    r0, c0, r1, c1 = expected[0]
    corners = _world(shapes, shapes.data[0])
    np.testing.assert_allclose(corners.min(axis=0), [(r0 - 0.5) * px, (c0 - 0.5) * px])
    np.testing.assert_allclose(corners.max(axis=0), [(r1 - 0.5) * px, (c1 - 0.5) * px])

    cons = layers["consistency"]
    np.testing.assert_allclose(cons.scale, [px, px])
    assert cons.opacity < 1 and cons.colorbar.visible


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_an_ome_zarr_sr_opens_at_its_ngff_scale_and_translation(make_napari_viewer, workspace,
                                                                scene, tmp_path, ngff):
    import zarr

    out = tmp_path / "SR.ome.zarr"
    assert main(["upscale", str(scene / "LR.tif"), "--model", str(workspace.models_dir / "model-mae"),
                 "-o", str(out), "--ngff", ngff, "--device", "cpu"]) == 0
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    multiscale = (attrs.get("ome") or attrs)["multiscales"][0]
    level0 = {t["type"]: t[t["type"]] for t in multiscale["datasets"][0]["coordinateTransformations"]}
    (sr,) = _open(make_napari_viewer(), out).values()
    np.testing.assert_allclose(sr.scale, level0["scale"])
    np.testing.assert_allclose(sr.translate, level0["translation"])
    assert sr.translate[0] == pytest.approx(attrs["dleem"]["sr_origin_lr_px"]
                                            * attrs["dleem"]["lr_pixel_size_um"])


def test_trust_blocks_and_proposed_regions_are_placed(make_napari_viewer, workspace, tmp_path):
    """The trust map as `dleem upscale --trust` writes it (CYX: predicted RMSE, supported;
    one pixel per block, the block size in its .json) and plan.json's proposals."""
    import shutil

    import tifffile

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(workspace.path, ws.path)
    px = ws.read_registration().lr_pixel_size_um
    planes = np.stack([np.random.default_rng(0).random((20, 20)), np.eye(20)]).astype(np.float32)
    tifffile.imwrite(ws.trust_path, planes, metadata={"axes": "CYX"})
    ws.trust_path.with_suffix(".json").write_text(json.dumps(
        {"schema": "dleem-trust", "schema_version": 1, "block_size_lr_px": 8, "blocks_shape": [20, 20]}))
    ws.plan_json.parent.mkdir()
    ws.plan_json.write_text(json.dumps({"schema": "dleem-plan", "regions": [
        {"lr_box": [8, 16, 40, 48], "center_lr": [24, 32]}]}))
    layers = _open(make_napari_viewer(), ws.path)
    rmse, unsupported = layers["trust: predicted RMSE"], layers["trust: unsupported"]
    np.testing.assert_array_equal(rmse.data, planes[0])
    np.testing.assert_array_equal(unsupported.data, 1 - planes[1])
    for layer in (rmse, unsupported):  # block i covers LR px 8 i .. 8 i + 7: centred on 8 i + 3.5
        np.testing.assert_allclose(layer.scale, [8 * px, 8 * px])
        np.testing.assert_allclose(layer.data_to_world([2, 5]), [19.5 * px, 43.5 * px])
    assert rmse.colorbar.visible and rmse.opacity < 1
    plan = layers["proposed regions"]
    np.testing.assert_allclose(_world(plan, plan.data[0]).min(axis=0), [7.5 * px, 15.5 * px])
    np.testing.assert_allclose(_world(plan, plan.data[0]).max(axis=0), [39.5 * px, 47.5 * px])


def test_an_sr_file_opens_alone_and_other_files_are_declined(make_napari_viewer, workspace, scene,
                                                               tmp_path):
    layers = _open(make_napari_viewer(), workspace.sr_path)
    assert list(layers) == ["SR x4"]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "plain").mkdir()
    for path in (scene / "LR.tif", scene, tmp_path / "plain", tmp_path / "notes.txt",
                 tmp_path / "missing.tif", workspace.pairs_dir / "HR_1_hr.tif"):
        assert get_reader(str(path)) is None, path
    assert get_reader([str(workspace.path), str(workspace.path)]) is None


def test_an_invalid_record_gives_one_notification_and_the_rest_is_shown(
        make_napari_viewer, workspace, tmp_path, monkeypatch):
    import shutil

    import napari.utils.notifications as notifications

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(workspace.path, ws.path)
    manifest = json.loads(ws.pairs_manifest_json.read_text())
    manifest["colour"] = "red"
    ws.pairs_manifest_json.write_text(json.dumps(manifest))
    ws.consistency_path.write_bytes(b"II*\0 truncated")
    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    layers = _open(make_napari_viewer(), ws.path)
    assert {"LR", "HR HR_1", "SR x4"} <= set(layers)
    assert "train / val / test" not in layers and "consistency" not in layers
    (message,) = shown
    assert f"{ws.pairs_manifest_json}: unknown key 'colour'" in message
    assert str(ws.consistency_path) in message


def _wait(qtbot, widget, timeout_s=120):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout_s * 1000)


def test_the_widget_registers_trains_and_upscales_and_adds_the_layers(
        make_napari_viewer, qtbot, scene, tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    from dleem.napari.widget import DleemWidget

    errors = []
    monkeypatch.setattr(notifications, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = DleemWidget(viewer)
    ws = Workspace(tmp_path / "ws")
    widget.workspace.setText(str(ws.path))
    widget.lr_file.setText(str(scene / "LR.tif"))
    widget.hr_files.setText(str(scene / "HR_1.tif"))
    stages = []
    widget._relay.progressed.connect(lambda stage, done, total: stages.append(stage))

    widget.run_step("register")
    _wait(qtbot, widget)
    assert not errors and ws.read_pairs().regions
    assert {"LR", "HR HR_1", "train / val / test"} <= {layer.name for layer in viewer.layers}

    widget.preset.setCurrentText("tiny")
    widget.budget_unit.setCurrentText("steps")
    widget.budget.setValue(2)
    assert widget.recipe.currentText() == "pixel"
    widget.recipe.setCurrentText("gan")
    widget.run_step("train")
    _wait(qtbot, widget)
    assert not errors and (ws.models_dir / "model-mae" / "generator.safetensors").is_file()
    assert json.loads((ws.models_dir / "model-mae" / "config.json").read_text())["training"]["recipe"] == "gan"

    widget.run_step("upscale")
    _wait(qtbot, widget)
    assert not errors and ws.sr_path.is_file() and ws.consistency_path.is_file()
    sr = viewer.layers["SR x4"]
    assert sr.scale[0] == pytest.approx(viewer.layers["LR"].scale[0] / 4)
    assert {"register", "train"} & set(stages) and any(s.startswith("upscale") for s in stages)

    # gain and offset: the HR region in the LR grey scale, and back
    hr = viewer.layers["HR HR_1"]
    raw = np.asarray(hr.data).copy()
    gain, offset = hr.metadata["dleem"]["gain"], hr.metadata["dleem"]["offset"]
    widget.lr_grey.setChecked(True)
    np.testing.assert_allclose(hr.data, gain * raw.astype(np.float32) + offset, rtol=1e-6)
    widget.lr_grey.setChecked(False)
    np.testing.assert_array_equal(hr.data, raw)

    # the quick look of a drawn rectangle: LR | bicubic | SR, the SR equal to the whole map's
    widget.quick_look()  # no rectangle yet: it makes the selection layer and asks for one
    assert errors and "draw a rectangle" in errors.pop()
    u = viewer.layers["LR"].scale[0]
    viewer.layers["dleem selection"].add_rectangles(np.array([[20, 30], [60, 90]]) * u - 0.5 * u)
    look = widget.quick_look()
    assert not errors and look.box == (20, 30, 60, 90)
    import tifffile

    whole = tifffile.imread(ws.sr_path)
    np.testing.assert_array_equal(look.sr, whole[80:240, 120:360])
    assert {"quick look: LR", "quick look: bicubic", "quick look: SR x4"} <= {
        layer.name for layer in viewer.layers}

    # the visible area, upscaled in memory and placed on the fine grid of its LR box
    viewer.reset_view()
    widget.area.setCurrentText("visible area")
    widget.run_step("upscale")
    _wait(qtbot, widget)
    (box_layer,) = [layer for layer in viewer.layers if layer.name.startswith("SR x4 of LR")]
    r0, c0 = box_layer.metadata["dleem"]["box"][:2]
    np.testing.assert_allclose(box_layer.data_to_world([0, 0]),
                               [(r0 - 0.375) * u, (c0 - 0.375) * u])


def test_a_cancelled_upscale_leaves_no_output_and_discard_clears_the_rest(
        make_napari_viewer, qtbot, workspace, scene, tmp_path, monkeypatch):
    import shutil

    import napari.utils.notifications as notifications

    from dleem.napari.widget import DleemWidget
    from dleem.upscale.stream import work_store_path

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(workspace.path, ws.path)
    shutil.rmtree(ws.upscale_dir)
    info = []
    monkeypatch.setattr(notifications, "show_info", info.append)
    _, widget = make_napari_viewer().window.add_plugin_dock_widget("dleem", "dleem")
    assert isinstance(widget, DleemWidget)  # the manifest's widget, docked
    widget.workspace.setText(str(ws.path))
    widget.lr_file.setText(str(scene / "LR.tif"))
    widget.model.setText(str(ws.models_dir / "model-mae"))
    assert widget.run_step("upscale") is not None
    widget.cancel()
    _wait(qtbot, widget)
    assert "cancelled" in info[0] and "nothing written under a final name" in info[0]
    assert not ws.sr_path.exists() and not ws.consistency_path.exists()
    assert "SR x4" not in widget.viewer.layers
    widget.discard()
    assert not work_store_path(ws.sr_path).exists()
