"""Where each dleem image lies in napari's world: the LR grid in µm, axes (row, col).

dleem's maps go HR px -> LR px in (x, y) = (column, row) order with pixel centres on
integers; napari also puts pixel centres on integer data coordinates but orders axes
(row, col). The world frame is the LR grid scaled by the LR pixel size, so LR pixel
(0, 0)'s centre is at (0, 0) µm, and the scale bar and cursor read µm on every layer.
Pure NumPy, so the geometry is tested without Qt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dleem.registration.transform import AffineMap


def lr_unit_um(lr_pixel_size_um: float | None) -> float:
    """µm per LR pixel; 1 when the LR image has no pixel size (the world is then in LR px)."""
    return float(lr_pixel_size_um) if lr_pixel_size_um else 1.0


def hr_affine(hr_to_lr: AffineMap, lr_pixel_size_um: float | None) -> np.ndarray:
    """The 3x3 napari affine (row, col) of an HR image placed by its fitted map HR px -> LR px."""
    m = np.asarray(hr_to_lr.matrix, dtype=np.float64)
    # (x, y) -> (row, col): swap both the outputs and the inputs of the linear part
    linear = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])
    shift = np.array([m[1, 2], m[0, 2]])
    out = np.eye(3)
    out[:2, :2] = linear * lr_unit_um(lr_pixel_size_um)
    out[:2, 2] = shift * lr_unit_um(lr_pixel_size_um)
    return out


def sr_origin_um(scale: int, lr_pixel_size_um: float | None) -> float:
    """World position of SR pixel (0, 0)'s centre along each axis: -(k-1)/(2k) LR px."""
    return -(scale - 1) / (2 * scale) * lr_unit_um(lr_pixel_size_um)


def box_corners(box: Sequence[int]) -> np.ndarray:
    """The four (row, col) corners, in LR px, of a half-open LR pixel box (r0, c0, r1, c1):
    pixel r spans [r - 0.5, r + 0.5], so the box's edges lie half a pixel before its indices."""
    r0, c0, r1, c1 = (float(v) - 0.5 for v in box)
    return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])


def world_box_to_lr(corners_um: np.ndarray, lr_pixel_size_um: float | None,
                    lr_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The half-open LR pixel box (r0, c0, r1, c1) covered by world-µm corners, clipped to the map."""
    px = np.asarray(corners_um, dtype=np.float64)[:, -2:] / lr_unit_um(lr_pixel_size_um)
    r0, c0 = np.floor(px.min(axis=0) + 0.5).astype(int)
    r1, c1 = np.ceil(px.max(axis=0) + 0.5).astype(int)
    h, w = lr_shape
    return (max(0, int(r0)), max(0, int(c0)), min(h, int(r1)), min(w, int(c1)))
