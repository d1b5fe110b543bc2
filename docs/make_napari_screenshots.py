"""The napari screenshots in docs/napari.md, taken headless from a workspace.

    python docs/make_napari_screenshots.py [WORKSPACE]      (under xvfb-run on a server)

Without WORKSPACE it first runs ``dleem demo --quick`` into a temporary folder (about a
minute on a laptop CPU). Opens the workspace with the ``dleem`` reader, as a user
dropping the folder on napari does, and writes:

- docs/napari_workspace.png: the LR map with the HR regions placed by their fitted maps
  and the train / validation / test areas, in µm;
- docs/napari_sr.png: a close-up on the corner of an HR region: the SR over the LR map
  outside it, the HR region inside, so the structures run on across its edge.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent
SIZE = (900, 1200)  # canvas (height, width) in screen px


def _workspace(argv: list[str]) -> Path:
    if argv:
        return Path(argv[0])
    from dleem.workflow import demo

    folder = Path(tempfile.mkdtemp(prefix="dleem-napari-")) / "demo"
    demo(folder, quick=True, device="cpu")
    return folder


def _only(viewer, visible: set[str]) -> None:
    for layer in viewer.layers:
        layer.visible = layer.name in visible


def main(argv: list[str]) -> int:
    import napari

    ws = _workspace(argv)
    viewer = napari.Viewer(show=True)  # a shown window renders (offscreen ones screenshot black)
    viewer.window._qt_window.resize(SIZE[1] + 300, SIZE[0] + 100)
    layers = {layer.name: layer for layer in viewer.open(str(ws), plugin="dleem")}
    hr = sorted(name for name in layers if name.startswith("HR "))
    sr = next(name for name in layers if name.startswith("SR "))
    overlays = viewer.canvas.overlays
    overlays.scale_bar.visible = True
    overlays.text.visible = True
    overlays.text.font_size = 14

    _only(viewer, {"LR", *hr, "train / val / test"})
    for name in hr:  # tinted, so that the placed regions stand out from the map
        layers[name].colormap = "bop orange"
    overlays.text.text = "LR map; HR regions (orange) placed by their fitted maps; train / val / test"
    viewer.reset_view()
    viewer.screenshot(str(OUT / "napari_workspace.png"), size=SIZE, canvas_only=True)

    # a close-up on the corner of an HR region that lies inside the map: SR outside it, HR inside
    region = layers[max(hr, key=lambda name: min(layers[name].data_to_world([0, 0])))]
    region.colormap = "gray"
    h, w = region.data.shape[-2:]
    outline = np.array([region.data_to_world(p) for p in [(0, 0), (0, w - 1), (h - 1, w - 1), (h - 1, 0)]])
    viewer.add_shapes([outline], shape_type="polygon", edge_color="orange", face_color="transparent",
                      edge_width=0.15, name="HR outline", units=("µm", "µm"))
    _only(viewer, {"LR", sr, region.name, "HR outline"})
    overlays.text.text = f"{sr} over the LR map; {region.name} inside the orange outline"
    viewer.scene.camera.center = tuple(outline[0])
    viewer.scene.camera.zoom = SIZE[1] / 40.0  # 40 µm across
    viewer.screenshot(str(OUT / "napari_sr.png"), size=SIZE, canvas_only=True)
    viewer.close()
    print(f"wrote {OUT / 'napari_workspace.png'} and {OUT / 'napari_sr.png'} from {ws}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
