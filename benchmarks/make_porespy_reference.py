"""Write tests/data/porespy_local_thickness.npz: porespy's local thickness of fixed masks.

porespy (the field's library for local thickness) pulls vtk, pyvista and numba, too heavy
for dleem's test install, so dleem has its own implementation; the suite compares it with
these stored porespy results. Rerun in an environment with porespy to refresh them:

    python -m venv /tmp/ps && /tmp/ps/bin/pip install porespy
    /tmp/ps/bin/python benchmarks/make_porespy_reference.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import porespy as ps
from scipy import ndimage

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "porespy_local_thickness.npz"


def discs(shape: tuple[int, int], centres_radii: list) -> np.ndarray:
    yy, xx = np.indices(shape)
    m = np.zeros(shape, bool)
    for (cy, cx), r in centres_radii:
        m |= np.hypot(yy - cy, xx - cx) <= r
    return m


def masks() -> dict[str, np.ndarray]:
    """Discs, strips and a random porous medium (pores not touching the edge matter most)."""
    strips = np.zeros((96, 96), bool)
    strips[10:16, 8:88] = True   # 6 px wide
    strips[30:45, 8:88] = True   # 15 px wide
    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 3)
    return {
        "discs": discs((96, 96), [((30, 30), 10.5), ((70, 66), 16.5)]),
        "strips": strips,
        "random": field > 0.05,
    }


def main() -> None:
    out = {}
    for name, m in masks().items():
        out[f"{name}_mask"] = np.packbits(m)
        out[f"{name}_shape"] = np.array(m.shape)
        out[f"{name}_radius"] = ps.filters.local_thickness(m, sizes=80).astype(np.float32)
    out["porespy_version"] = np.array(ps.__version__)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} (porespy {ps.__version__})")


if __name__ == "__main__":
    main()
