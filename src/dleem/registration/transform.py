"""The affine map between an HR region and the LR image, and the pixel convention it carries.

Convention (the same everywhere in dleem, and in ``truth.json`` of ``dleem synth``):
x = column, y = row, pixel centres on integers, so pixel (row r, col c) covers
[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]. An :class:`AffineMap` maps HR pixel
coordinates to LR pixel coordinates::

    [x_lr, y_lr] = M @ [x_hr, y_hr, 1]

A pure change of pixel size by ``ratio`` (LR pixel size / HR pixel size) whose HR image
edge sits on an LR pixel edge ``(e_x, e_y)`` (LR coordinates of the HR image's top-left
corner) is ``x_lr = e_x + (x_hr + 0.5) / ratio``: translations are carried between grids
with the scale factor and the half-pixel offsets, never as raw pixel counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    0: cv2.INTER_NEAREST,
    1: cv2.INTER_LINEAR,
    3: cv2.INTER_CUBIC,
}


@dataclass(frozen=True, eq=False)
class AffineMap:
    """A 2-D affine map from HR pixel coordinates to LR pixel coordinates.

    Parameters
    ----------
    matrix : (2, 3) array_like of float
        ``[[a, b, c], [d, e, f]]`` with ``x' = a x + b y + c`` and ``y' = d x + e y + f``
        (x = column, y = row, pixel centres on integers).
    """

    matrix: np.ndarray

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64).reshape(2, 3)
        if not np.all(np.isfinite(m)):
            raise ValueError("AffineMap: matrix has non-finite entries")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AffineMap) and bool(np.array_equal(self.matrix, other.matrix))

    __hash__ = None  # type: ignore[assignment]

    # --- construction -------------------------------------------------------------------
    @classmethod
    def identity(cls) -> AffineMap:
        """The identity map."""
        return cls(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))

    @classmethod
    def from_params(
        cls,
        scale: float = 1.0,
        rotation_deg: float = 0.0,
        tx: float = 0.0,
        ty: float = 0.0,
        *,
        aspect: float = 1.0,
        shear: float = 0.0,
        center: Sequence[float] = (0.0, 0.0),
    ) -> AffineMap:
        """A similarity (plus optional aspect and shear) about ``center``, then a translation.

        ``x' = R(rotation) @ S @ (x - center) + center + (tx, ty)`` with
        ``S = [[scale * aspect, shear], [0, scale]]``. ``scale`` is output px per input px
        (``1 / ratio`` for an HR -> LR map); ``rotation_deg`` is counter-clockwise in the
        (x right, y down) image frame as seen on screen, i.e. positive angles turn +x toward -y.
        """
        t = np.deg2rad(rotation_deg)
        c, s = np.cos(t), np.sin(t)
        rot = np.array([[c, s], [-s, c]])
        lin = rot @ np.array([[scale * aspect, shear], [0.0, scale]])
        cen = np.asarray(center, dtype=np.float64)
        off = cen - lin @ cen + np.array([tx, ty], dtype=np.float64)
        return cls(np.column_stack([lin, off]))

    @classmethod
    def from_list(cls, values: Sequence[Sequence[float]]) -> AffineMap:
        """From the nested list written in JSON (``[[a, b, c], [d, e, f]]``)."""
        m = np.asarray(values, dtype=np.float64)
        if m.shape == (3, 3):
            if not np.allclose(m[2], [0.0, 0.0, 1.0]):
                raise ValueError("AffineMap.from_list: 3x3 matrix is not affine")
            m = m[:2]
        if m.shape != (2, 3):
            raise ValueError(f"AffineMap.from_list: expected 2x3, got shape {m.shape}")
        return cls(m)

    def to_list(self) -> list[list[float]]:
        """Nested list of Python floats, for JSON (full double precision)."""
        return [[float(v) for v in row] for row in self.matrix]

    # --- algebra ------------------------------------------------------------------------
    @property
    def linear(self) -> np.ndarray:
        """The 2x2 linear part."""
        return self.matrix[:, :2]

    @property
    def translation(self) -> np.ndarray:
        """The translation (image of the origin)."""
        return self.matrix[:, 2]

    def as3x3(self) -> np.ndarray:
        """Homogeneous 3x3 matrix."""
        return np.vstack([self.matrix, [0.0, 0.0, 1.0]])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) xy points (or one (2,) point); returns the same shape."""
        p = np.asarray(points, dtype=np.float64)
        out = p.reshape(-1, 2) @ self.linear.T + self.translation
        return out.reshape(p.shape)

    def apply_xy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinate arrays of any (equal) shape: x = columns, y = rows."""
        m = self.matrix
        return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]

    def compose(self, other: AffineMap) -> AffineMap:
        """``self ∘ other``: first ``other``, then ``self``."""
        return AffineMap((self.as3x3() @ other.as3x3())[:2])

    def __matmul__(self, other: AffineMap) -> AffineMap:
        return self.compose(other)

    def inverse(self) -> AffineMap:
        """The inverse map; raises ValueError when singular."""
        lin = self.linear
        det = np.linalg.det(lin)
        if abs(det) < 1e-14:
            raise ValueError("AffineMap.inverse: singular matrix")
        inv = np.linalg.inv(lin)
        return AffineMap(np.column_stack([inv, -inv @ self.translation]))

    @property
    def mean_scale(self) -> float:
        """sqrt(|det|): output px per input px, averaged over directions."""
        return float(np.sqrt(abs(np.linalg.det(self.linear))))

    @property
    def rotation_deg(self) -> float:
        """Rotation angle of the linear part (same sign convention as :meth:`from_params`)."""
        lin = self.linear
        return float(np.rad2deg(np.arctan2(lin[0, 1] - lin[1, 0], lin[0, 0] + lin[1, 1])))

    # --- images -------------------------------------------------------------------------
    def warp(
        self,
        image: np.ndarray,
        output_shape: tuple[int, int],
        *,
        order: int | str = "cubic",
        fill: float = np.nan,
    ) -> np.ndarray:
        """Resample ``image``, defined on this map's *input* grid, onto its *output* grid.

        ``out[y, x] = image(self.inverse().apply((x, y)))``: for an HR -> LR map,
        ``hr_to_lr.warp(hr, lr.shape)`` puts the HR image on the LR grid (point sampling,
        no anti-aliasing: blur first when the map shrinks), and
        ``hr_to_lr.inverse().warp(lr, hr.shape)`` puts the LR image on the HR grid.

        Parameters
        ----------
        image : 2-D array
            Any real dtype; computed in float32 (float64 input stays float64).
        output_shape : (rows, cols)
        order : {"nearest", "linear", "cubic", "lanczos"} or 0, 1, 3
            OpenCV kernels. OpenCV's bicubic (a = -0.75) does not reproduce a linear ramp and
            moves values by up to 0.05 px: fine for display, not for sub-pixel targets (use a
            spline, e.g. ``scipy.ndimage.map_coordinates``, as ``dleem.pairs.geometry`` does).
        fill : float
            Value for output pixels whose source lies outside ``image``.
        """
        img = np.asarray(image)
        work = img if img.dtype in (np.float32, np.float64) else img.astype(np.float32)
        inv = self.inverse().matrix
        flags = _INTERP[order] | cv2.WARP_INVERSE_MAP
        rows, cols = int(output_shape[0]), int(output_shape[1])
        out = cv2.warpAffine(
            work,
            inv,
            (cols, rows),
            flags=flags,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        if fill is not None:
            # Source coordinates outside the input image's pixel extent get `fill`: nearest-
            # neighbour warping of an all-ones image marks exactly -0.5 <= x < w - 0.5.
            h, w = img.shape[:2]
            inside = cv2.warpAffine(
                np.ones((h, w), np.uint8), inv, (cols, rows),
                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT, borderValue=0,
            )
            out = out.astype(np.result_type(out.dtype, np.float32), copy=False)
            out[inside == 0] = fill
        return out

    def corners(self, hr_shape: tuple[int, int]) -> np.ndarray:
        """The four outer corners of an input image of ``hr_shape`` (pixel extent), mapped."""
        return self.apply(image_corners(hr_shape))

    def corners_rms_error(self, other: AffineMap, hr_shape: tuple[int, int]) -> float:
        """RMS distance (output px) between the four mapped corners of an ``hr_shape`` image.

        The corners are the outer pixel corners (-0.5, -0.5) ... (w - 0.5, h - 0.5): the
        accuracy figure of the registration benchmark.
        """
        d = self.corners(hr_shape) - other.corners(hr_shape)
        return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


def image_corners(shape: tuple[int, int]) -> np.ndarray:
    """(4, 2) xy of an image's outer corners: TL, TR, BR, BL (pixel extent, not centres)."""
    h, w = float(shape[0]), float(shape[1])
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])


def scale_map(factor: float) -> AffineMap:
    """Map between two grids over the same field whose pixels differ in size by ``factor``.

    Coarse pixel i covers fine pixels ``factor*i ... factor*i + factor - 1`` (edges aligned at
    the image's top-left corner), so ``x_coarse = (x_fine + 0.5) / factor - 0.5``. Returns the
    fine -> coarse map.
    """
    s = 1.0 / factor
    o = 0.5 * s - 0.5
    return AffineMap(np.array([[s, 0.0, o], [0.0, s, o]]))
