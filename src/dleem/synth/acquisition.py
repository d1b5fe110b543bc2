"""An SEM acquisition simulator: the LR map of the whole area and HR regions inside it.

Geometry (x = column, y = row, pixel centres on integers, lengths in µm):

- LR pixel (x_l, y_l) has its centre at physical ``(p_LR x_l, p_LR y_l)``. The LR scan
  defines the frame: it has no distortion of its own.
- HR region i has nominal centre ``c_i`` (µm) and pixel size ``p_HR = p_LR / ratio``.
  Its pixel (x_h, y_h) has its centre at ``P(x_h, y_h) = L (u - u_c) + c_i + D tau``
  with ``u = (x_h, y_h)``, ``u_c`` the frame centre ``((W-1)/2, (H-1)/2)``,
  ``L = p_HR R(rotation) (1 + scale_error) [[1, shear], [0, 1]]``, and the drift
  ``D = p_HR R(rotation) drift_px`` scaled by the scan time fraction
  ``tau = (y_h W + x_h) / (H W)`` (a raster scan, row after row): linear in x_h and
  y_h, so P stays affine.
- Hence ``hr_to_lr = (1 / p_LR) [A | t]`` where ``P(u) = A u + t`` exactly.

Imaging (each image has its own values): the noise-free signal S (0-1, rendered from
the specimen with the image's Gaussian beam blur, area-integrated over each pixel),
shot noise ``n ~ Poisson(dose S) / dose`` (dose = electrons per pixel at S = 1, i.e.
proportional to the dwell time), scan-line noise (per-line offset), read noise,
optional charging streaks, then grey value ``offset + gain n`` as a fraction of full
scale, quantised to `bits`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from dleem.errors import DleemError, reject_unknown_keys
from dleem.synth.specimen import SpecimenParams


@dataclass
class SynthParams:
    """Every parameter of a synthetic acquisition (API and CLI).

    Lengths in µm; blur sigmas in pixels of the image's own grid; gain and offset map
    the BSE signal (0-1) to a fraction of the full grey scale: ``value = offset + gain S``.

    Attributes
    ----------
    seed : int
        Fixes the specimen, the region placement, the distortions and the noise.
    ratio : float
        LR pixel size over HR pixel size (> 1; 2..16 supported; need not be integer).
    lr_size : int
        LR image side (pixels); `lr_shape` overrides it with (rows, cols).
    hr_size : int
        HR region side (pixels); `hr_shape` overrides it.
    regions : int
        Number of HR regions, placed at random inside the LR area, not overlapping.
    lr_pixel_size_um : float
    bits : int
        8 or 16.
    noise : bool
        False: no shot, read, line noise nor charging (blur, gain, offset kept).
    lr_blur_sigma_px, hr_blur_sigma_px : float
        Gaussian beam-spot sigma (pixels of the LR resp. HR grid).
    lr_dose, hr_dose : float
        Detected electrons per pixel at full signal (∝ dwell time x beam current);
        shot noise std ∝ 1/sqrt(dose).
    lr_gain, lr_offset, hr_gain, hr_offset : float
        Brightness/contrast of each acquisition.
    read_noise : float
        Gaussian detector noise (fraction of full scale).
    line_noise : float
        Std of a per-scan-line offset (fraction of full scale).
    charging : float
        Amplitude of charging streaks (0: none); a few bright streaks decaying
        along the scan direction.
    rotation_deg, scale_error, shear : float
        HR scan distortion relative to the LR frame (degrees, fraction, fraction).
    drift_px : (float, float)
        Specimen drift over one whole HR frame, in HR pixels (x, y).
    jitter : float
        Relative per-region random variation of blur, dose, gain, and absolute
        variation of rotation (x 1 deg), scale error (x 0.01), shear (x 0.005),
        drift (x 1 px), offset (x 0.02). 0 gives identical regions.
    databar_rows : int
        Rows of an SEM-style databar appended under every image (0: none).
    lr_supersample, hr_supersample : int
        Fine samples per pixel per axis used to area-integrate the beam-blurred specimen
        (numerical quadrature, not physics; 0: chosen from the blur). Polygon edges are
        integrated exactly over each fine sample; the beam blur is then applied on the
        fine grid, whose quadrature error changes an edge's profile with its sub-pixel
        phase. That error is a registration bias between the LR map and an HR region:
        noise-free, 16-bit, ratio 4, 128 LR px footprint, median RMS corner error 0.003 LR px
        at s = 2, 0.001 at 4, 0.0003 at 8 (see tests/test_synth.py). 4 for the LR map
        keeps it below the 0.003 LR px registration target, at a cost: the default acquisition
        (LR 2048 px, two 1024 px regions) takes 23 s instead of 10 s at s = 2 on 2 shared
        cores (the random fields are evaluated on the fine grid). The HR regions' error
        counts 1/ratio in LR px.
    specimen : SpecimenParams
    """

    seed: int = 0
    ratio: float = 4.0
    lr_size: int = 2048
    hr_size: int = 1024
    lr_shape: tuple[int, int] | None = None
    hr_shape: tuple[int, int] | None = None
    regions: int = 2
    lr_pixel_size_um: float = 0.5
    bits: int = 8
    noise: bool = True
    lr_blur_sigma_px: float = 0.8
    hr_blur_sigma_px: float = 1.0
    lr_dose: float = 150.0
    hr_dose: float = 600.0
    lr_gain: float = 0.95
    lr_offset: float = 0.03
    hr_gain: float = 1.05
    hr_offset: float = -0.01
    read_noise: float = 0.004
    line_noise: float = 0.003
    charging: float = 0.0
    rotation_deg: float = 0.5
    scale_error: float = 0.004
    shear: float = 0.002
    drift_px: tuple[float, float] = (0.6, 1.2)
    jitter: float = 0.3
    databar_rows: int = 0
    lr_supersample: int = 4
    hr_supersample: int = 3
    specimen: SpecimenParams = field(default_factory=SpecimenParams)

    @property
    def lr_shape_(self) -> tuple[int, int]:
        return tuple(self.lr_shape) if self.lr_shape else (self.lr_size, self.lr_size)

    @property
    def hr_shape_(self) -> tuple[int, int]:
        return tuple(self.hr_shape) if self.hr_shape else (self.hr_size, self.hr_size)

    @property
    def hr_pixel_size_um(self) -> float:
        return self.lr_pixel_size_um / self.ratio

    def validate(self) -> None:
        """Raise DleemError on values no acquisition can have."""
        if not self.ratio > 1:
            raise DleemError(f"ratio must be > 1 (LR pixel size / HR pixel size), got {self.ratio}")
        if self.bits not in (8, 16):
            raise DleemError(f"bits must be 8 or 16, got {self.bits}")
        if min(self.lr_shape_) < 16 or min(self.hr_shape_) < 8:
            raise DleemError("images too small (LR side >= 16, HR side >= 8)")
        if self.regions < 0:
            raise DleemError("regions must be >= 0")
        if not self.lr_pixel_size_um > 0:
            raise DleemError("pixel size must be > 0")
        if min(self.lr_dose, self.hr_dose) <= 0:
            raise DleemError("dose must be > 0")
        if min(self.lr_blur_sigma_px, self.hr_blur_sigma_px) < 0:
            raise DleemError("blur sigma must be >= 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["specimen"] = self.specimen.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict) -> SynthParams:
        reject_unknown_keys(data, (f.name for f in fields(cls)), "synth parameters")
        d = dict(data)
        if isinstance(d.get("specimen"), dict):
            d["specimen"] = SpecimenParams.from_dict(d["specimen"])
        for k in ("lr_shape", "hr_shape", "drift_px"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class RegionSpec:
    """One HR acquisition: where it is, how it is distorted, how it is imaged."""

    file: str
    shape: tuple[int, int]
    pixel_size_um: float
    centre_um: tuple[float, float]
    rotation_deg: float
    scale_error: float
    shear: float
    drift_px: tuple[float, float]
    blur_sigma_px: float
    dose: float
    gain: float
    offset: float
    hr_to_phys: np.ndarray  # (2, 3)

    def hr_to_lr(self, lr_pixel_size_um: float) -> np.ndarray:
        return self.hr_to_phys / lr_pixel_size_um


def hr_pixel_to_phys(
    shape: tuple[int, int],
    pixel_size_um: float,
    centre_um: tuple[float, float],
    rotation_deg: float,
    scale_error: float,
    shear: float,
    drift_px: tuple[float, float],
) -> np.ndarray:
    """The exact affine map from HR pixel coordinates to physical µm (see module doc)."""
    rows, cols = shape
    # Counter-clockwise on screen (x right, y down), as AffineMap.rotation_deg reports it.
    th = math.radians(rotation_deg)
    rot = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])
    lin = pixel_size_um * (1 + scale_error) * rot @ np.array([[1.0, shear], [0.0, 1.0]])
    drift = pixel_size_um * rot @ np.asarray(drift_px, float)
    # tau = (y W + x) / (H W) = x / (H W) + y / H
    a = lin + np.outer(drift, [1.0 / (rows * cols), 1.0 / rows])
    uc = np.array([(cols - 1) / 2.0, (rows - 1) / 2.0])
    t = np.asarray(centre_um, float) - lin @ uc
    return np.concatenate([a, t[:, None]], axis=1)


def plan_regions(params: SynthParams) -> list[RegionSpec]:
    """Draw the HR regions: placement (inside the LR area, no overlap) and distortions."""
    rng = np.random.default_rng([int(params.seed), 7401])
    j = params.jitter
    p_lr = params.lr_pixel_size_um
    p_hr = params.hr_pixel_size_um
    lr_rows, lr_cols = params.lr_shape_
    hr_rows, hr_cols = params.hr_shape_
    margin_lr = 4.0  # LR pixels kept free around each region
    specs: list[RegionSpec] = []
    boxes: list[np.ndarray] = []
    for i in range(params.regions):
        rot = params.rotation_deg + j * rng.uniform(-1, 1)
        se = params.scale_error + 0.01 * j * rng.uniform(-1, 1)
        sh = params.shear + 0.005 * j * rng.uniform(-1, 1)
        dr = (params.drift_px[0] + j * rng.uniform(-1, 1), params.drift_px[1] + j * rng.uniform(-1, 1))
        blur = params.hr_blur_sigma_px * (1 + 0.2 * j * rng.uniform(-1, 1))
        dose = params.hr_dose * (1 + j * rng.uniform(-1, 1))
        gain = params.hr_gain * (1 + 0.1 * j * rng.uniform(-1, 1))
        off = params.hr_offset + 0.02 * j * rng.uniform(-1, 1)
        placed = False
        for _ in range(2000):
            cx = rng.uniform(0, (lr_cols - 1) * p_lr)
            cy = rng.uniform(0, (lr_rows - 1) * p_lr)
            m = hr_pixel_to_phys((hr_rows, hr_cols), p_hr, (cx, cy), rot, se, sh, dr)
            corners = np.array([[-0.5, -0.5, 1], [hr_cols - 0.5, -0.5, 1],
                                [hr_cols - 0.5, hr_rows - 0.5, 1], [-0.5, hr_rows - 0.5, 1]])
            lr = corners @ (m / p_lr).T  # LR pixel coordinates of the frame corners
            lo = lr.min(0)
            hi = lr.max(0)
            if lo.min() < margin_lr or hi[0] > lr_cols - 1 - margin_lr or hi[1] > lr_rows - 1 - margin_lr:
                continue
            box = np.concatenate([lo - margin_lr, hi + margin_lr])
            if any(_boxes_overlap(box, b) for b in boxes):
                continue
            boxes.append(box)
            placed = True
            break
        if not placed:
            raise DleemError(
                f"cannot place {params.regions} HR regions of {hr_rows}x{hr_cols} px at ratio "
                f"{params.ratio:g} inside a {lr_rows}x{lr_cols} LR image without overlap; "
                "use fewer or smaller regions, a larger ratio or a larger LR image"
            )
        specs.append(RegionSpec(
            file=f"HR_{i + 1}.tif", shape=(hr_rows, hr_cols), pixel_size_um=p_hr,
            centre_um=(float(cx), float(cy)), rotation_deg=float(rot), scale_error=float(se),
            shear=float(sh), drift_px=(float(dr[0]), float(dr[1])), blur_sigma_px=float(blur),
            dose=float(dose), gain=float(gain), offset=float(off), hr_to_phys=m,
        ))
    return specs


def _boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def lr_pixel_to_phys(params: SynthParams) -> np.ndarray:
    p = params.lr_pixel_size_um
    return np.array([[p, 0.0, 0.0], [0.0, p, 0.0]])


def specimen_extent(params: SynthParams) -> tuple[float, float, float, float]:
    """Physical area the specimen must cover: the LR field plus a margin."""
    rows, cols = params.lr_shape_
    p = params.lr_pixel_size_um
    m = 1.5 * params.specimen.grain_size_um + 2 * p
    return (-m, -m, cols * p + m, rows * p + m)


def acquire(
    signal: np.ndarray,
    *,
    dose: float,
    gain: float,
    offset: float,
    bits: int,
    noise: bool,
    read_noise: float,
    line_noise: float,
    charging: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Turn a noise-free signal (0-1) into a quantised detector image.

    Shot noise is Poisson in the number of detected electrons ``dose * S``; the noise
    std on a flat area of signal S is therefore ``gain sqrt(S / dose)`` (full-scale
    fraction), i.e. ∝ 1/sqrt(dwell time).
    """
    rows, cols = signal.shape
    vmax = 2**bits - 1
    out = np.empty((rows, cols), np.uint8 if bits == 8 else np.uint16)
    streaks = _streak_list(rows, cols, charging, rng) if noise and charging > 0 else []
    x = np.arange(cols)
    block = max(1, 4_000_000 // max(cols, 1))  # rows per block: bounded memory
    for r0 in range(0, rows, block):
        r1 = min(r0 + block, rows)
        s = np.clip(signal[r0:r1], 0, None).astype(np.float64)
        if noise:
            v = rng.poisson(s * dose).astype(np.float32) / np.float32(dose)
            if read_noise > 0:
                v += rng.normal(0, read_noise / max(gain, 1e-9), v.shape).astype(np.float32)
            if line_noise > 0:
                v += rng.normal(0, line_noise / max(gain, 1e-9), (r1 - r0, 1)).astype(np.float32)
            for sr0, sr1, c0, length, amp in streaks:
                lo, hi = max(sr0, r0), min(sr1, r1)
                if lo < hi:
                    prof = np.where(x >= c0, amp * np.exp(-(x - c0) / length), 0.0)
                    v[lo - r0 : hi - r0] += prof.astype(np.float32)
        else:
            v = s.astype(np.float32)
        value = offset + gain * v
        out[r0:r1] = np.clip(np.rint(value * vmax), 0, vmax)
    return out


def _streak_list(
    rows: int, cols: int, amp: float, rng: np.random.Generator
) -> list[tuple[int, int, int, float, float]]:
    """Charging streaks: (row0, row1, start column, decay length px, amplitude)."""
    out = []
    for _ in range(max(1, int(rows / 256 * 3))):
        r0 = int(rng.integers(0, rows))
        h = int(rng.integers(1, 4))
        c0 = int(rng.integers(0, cols))
        length = float(rng.uniform(0.05, 0.4) * cols)
        out.append((r0, r0 + h, c0, length, float(amp * rng.uniform(0.5, 1.0))))
    return out


def add_databar(img: np.ndarray, rows: int, text: str) -> np.ndarray:
    """Append an SEM-style databar under `img`: a separator line, then a black panel
    with one line of thin white text and a scale-bar-like rule (burnt in digitally)."""
    import cv2

    if rows <= 0:
        return img
    vmax = np.iinfo(img.dtype).max
    width = img.shape[1]
    bar = np.zeros((rows, width), np.uint8)
    bar[0] = 255
    scale = max(min(rows / 90.0, width / 1100.0), 0.2)
    # a real panel never runs its text over the scale bar: drop the trailing fields of
    # `text` (two-space separated) that do not fit left of it
    x0, room = int(rows * 0.3), width - width // 6 - 2 * int(rows * 0.3)
    fields = text.split("  ")
    while len(fields) > 1 and cv2.getTextSize("  ".join(fields), cv2.FONT_HERSHEY_SIMPLEX,
                                              scale, 1)[0][0] > room:
        fields.pop()
    cv2.putText(bar, "  ".join(fields), (x0, int(rows * 0.6)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, 255, 1, cv2.LINE_8)
    y = int(rows * 0.8)
    bar[y : y + max(1, rows // 20), width - width // 6 : width - width // 20] = 255
    bar = (bar.astype(np.float64) * (vmax / 255)).astype(img.dtype)
    return np.concatenate([img, bar], axis=0)
