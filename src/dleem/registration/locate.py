"""Coarse location of an HR region in the LR image by fast normalised cross-correlation.

The HR region is reduced (anti-aliased, pixel-area resampling) to the pixel size of a
reduced copy of the LR image, rotated and rescaled over a small set of candidates, and
correlated with the whole reduced LR image. The correlation is J.P. Lewis' fast normalised
cross-correlation: the numerator by FFT (the LR spectrum is computed once for all
candidates), the local normalisation from running sums (integral images).

References
----------
J.P. Lewis, "Fast normalized cross-correlation", Vision Interface 1995 (Industrial Light &
Magic report, revised 2005).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from dleem.errors import RegistrationError
from dleem.registration.transform import AffineMap, scale_map

log = logging.getLogger(__name__)

#: A coarse peak must reach this normalised cross-correlation ...
MIN_PEAK = 0.3
#: ... and exceed the best peak outside its main lobe by this factor.
MIN_DISTINCTNESS = 1.1


@dataclass
class CoarseResult:
    """Outcome of :func:`locate`.

    Attributes
    ----------
    hr_to_lr : AffineMap
        Coarse HR px -> LR px map (accurate to about one reduced pixel, ``level`` LR px).
    ncc_peak : float
        Peak normalised cross-correlation (sub-pixel interpolated), in [-1, 1].
    ncc_distinctness : float
        Peak divided by the highest correlation outside the main lobe.
    level : int
        LR reduction factor at which the search ran.
    scale : float
        Candidate ratio factor that won (the ratio found is ``nominal / scale``).
    rotation_deg : float
        Candidate rotation that won.
    ncc_map : ndarray
        The winning candidate's correlation map (reduced LR grid, top-left anchored).
    """

    hr_to_lr: AffineMap
    ncc_peak: float
    ncc_distinctness: float
    level: int
    scale: float
    rotation_deg: float
    ncc_map: np.ndarray


def reduce_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Pixel-area reduction by an integer factor (float32); pixel i covers f*i ... f*i+f-1.

    The trailing rows/columns that do not fill a whole reduced pixel are dropped. The
    reduced pixel centre sits at ``f*i + (f-1)/2`` in input coordinates
    (:func:`dleem.registration.transform.scale_map`).
    """
    a = np.asarray(image)
    if factor == 1:
        return a.astype(np.float32, copy=False)
    h, w = a.shape[0] // factor, a.shape[1] // factor
    if h < 1 or w < 1:
        raise RegistrationError(f"image {a.shape} too small to reduce by {factor}")
    if a.dtype == bool:
        a = a.view(np.uint8)
    if a.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        a = a.astype(np.float32)
    out = cv2.resize(a[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)
    return out.astype(np.float32, copy=False)


def _fill_masked(img: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return img
    m = np.asarray(mask, dtype=bool)
    if m.shape != img.shape:
        raise RegistrationError(f"mask shape {m.shape} differs from image shape {img.shape}")
    if not m.any():
        raise RegistrationError("mask excludes every pixel")
    out = img.copy()
    out[~m] = float(img[m].mean())
    return out


class _Correlator:
    """Lewis' fast NCC of many templates against one image (spectrum and sums computed once)."""

    def __init__(self, image: np.ndarray, invalid: np.ndarray | None) -> None:
        self.image = image
        self.h, self.w = image.shape
        self.dh = cv2.getOptimalDFTSize(self.h)
        self.dw = cv2.getOptimalDFTSize(self.w)
        padded = np.zeros((self.dh, self.dw), np.float32)
        padded[: self.h, : self.w] = image - float(image.mean())
        self.spec = cv2.dft(padded)
        # Running sums (Lewis' local normalisation) by OpenCV's box filter (a running-sum
        # implementation) on the mean-centred image: float32 is ample after centring.
        self.centred = (image - np.float32(image.mean())).astype(np.float32)
        self.sq = self.centred * self.centred
        self.bad = None if invalid is None else invalid.astype(np.float32)
        self._norm: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]] = {}

    def _sum(self, img: np.ndarray, th: int, tw: int) -> np.ndarray:
        out = cv2.boxFilter(img, -1, (tw, th), anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT)
        return out[: self.h - th + 1, : self.w - tw + 1]

    def _denominator(self, th: int, tw: int) -> tuple[np.ndarray, np.ndarray | None]:
        """sqrt of the image's local variance sum over each window, and the bad-window mask."""
        key = (th, tw)
        if key not in self._norm:
            n = th * tw
            s1 = self._sum(self.centred, th, tw)
            var = self._sum(self.sq, th, tw) - s1 * s1 / np.float32(n)
            top = float(np.max(var)) if var.size else 0.0
            sd = np.sqrt(np.maximum(var, 0.0))
            sd[var <= max(top, 1e-30) * 1e-5] = np.inf
            bad = None
            if self.bad is not None:
                bad = self._sum(self.bad, th, tw) / n > 0.05
            self._norm[key] = (sd, bad)
        return self._norm[key]

    def ncc(self, templ: np.ndarray) -> np.ndarray:
        """TM_CCOEFF_NORMED map (valid positions, top-left anchored); -1 where undefined."""
        th, tw = templ.shape
        t = templ - np.float32(templ.mean())
        tnorm = float(np.sqrt(np.sum(t.astype(np.float64) ** 2)))
        tp = np.zeros((self.dh, self.dw), np.float32)
        tp[:th, :tw] = t
        prod = cv2.mulSpectrums(self.spec, cv2.dft(tp), 0, conjB=True)
        num = cv2.idft(prod, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        num = num[: self.h - th + 1, : self.w - tw + 1]
        sd, bad = self._denominator(th, tw)
        out = num / (sd * max(tnorm, 1e-30))
        if bad is not None:
            out[bad] = -1.0
        return np.clip(out, -1.0, 1.0)


def _subpixel_peak(c: np.ndarray, iy: int, ix: int) -> tuple[float, float, float]:
    """Separable quadratic fit around the integer peak: (x, y, value)."""
    dx = dy = 0.0
    v = float(c[iy, ix])
    vx = vy = 0.0
    if 0 < ix < c.shape[1] - 1:
        a, b, d = c[iy, ix - 1], c[iy, ix], c[iy, ix + 1]
        den = a - 2 * b + d
        if den < 0:
            dx = float(np.clip(0.5 * (a - d) / den, -0.5, 0.5))
            vx = -0.25 * (a - d) * dx
    if 0 < iy < c.shape[0] - 1:
        a, b, d = c[iy - 1, ix], c[iy, ix], c[iy + 1, ix]
        den = a - 2 * b + d
        if den < 0:
            dy = float(np.clip(0.5 * (a - d) / den, -0.5, 0.5))
            vy = -0.25 * (a - d) * dy
    return ix + dx, iy + dy, v + vx + vy


def _distinctness(c: np.ndarray, iy: int, ix: int, peak: float) -> float:
    """Peak over the highest other local maximum outside the main lobe.

    The main lobe is where c > peak/2 around the peak (grown 1.5x); only local maxima
    (5x5 neighbourhood) count as second peaks, so the shoulder of a broad main lobe on a
    smooth texture does not pass for a rival.
    """
    half = 0.5 * peak
    rad = 1
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        k = 1
        while 0 <= iy + k * dy < c.shape[0] and 0 <= ix + k * dx < c.shape[1] and c[iy + k * dy, ix + k * dx] > half:
            k += 1
        rad = max(rad, k)
    rad = max(2.0, 1.5 * rad)
    yy, xx = np.ogrid[: c.shape[0], : c.shape[1]]
    outside = (yy - iy) ** 2 + (xx - ix) ** 2 > rad * rad
    cf = c.astype(np.float32)
    local_max = cf >= cv2.dilate(cf, np.ones((5, 5), np.uint8)) - 1e-7
    rivals = outside & local_max
    if not rivals.any():
        return float("inf")
    second = float(c[rivals].max())
    return float(peak / max(second, 0.05))


def _inscribed(tw: int, th: int, angle: float) -> tuple[int, int]:
    """Largest centred axis-aligned box (same aspect) inside a tw x th box rotated by angle."""
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    alpha = min(tw / (tw * c + th * s), th / (tw * s + th * c))
    return max(4, int(math.floor(alpha * tw)) - 1), max(4, int(math.floor(alpha * th)) - 1)


def _template_direct(
    hr: np.ndarray, q: float, angle: float, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, AffineMap]:
    """HR reduced by q (HR px per reduced px), rotated by angle, centre-cropped.

    The crop is ``size`` (cols, rows) when given (one size for all candidates: one set of
    running sums), else the inscribed box. Returns the template and the HR px -> template map.
    """
    h, w = hr.shape
    tw, th = max(4, int(round(w / q))), max(4, int(round(h / q)))
    t0 = cv2.resize(hr, (tw, th), interpolation=cv2.INTER_AREA)
    sx, sy = tw / w, th / h
    m = AffineMap(np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]]))
    t = t0
    if angle != 0.0:
        rot = AffineMap.from_params(1.0, angle, center=((tw - 1) / 2.0, (th - 1) / 2.0))
        t = cv2.warpAffine(t0, rot.matrix, (tw, th), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        m = rot @ m
    if size is None:
        if angle == 0.0:
            return t0, m
        size = _inscribed(tw, th, angle)
    cw, ch = size
    cw, ch = min(cw, tw), min(ch, th)
    x0, y0 = (tw - cw) // 2, (th - ch) // 2
    crop = AffineMap(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]))
    return t[y0 : y0 + ch, x0 : x0 + cw], crop @ m


def _candidates(max_abs: float, step: float) -> np.ndarray:
    n = int(math.ceil(max_abs / step - 1e-9))
    return np.linspace(-max_abs, max_abs, 2 * n + 1) if n > 0 else np.array([0.0])


def locate(
    lr: np.ndarray,
    hr: np.ndarray,
    ratio: float,
    *,
    rotation_search: bool = False,
    lr_mask: np.ndarray | None = None,
    hr_mask: np.ndarray | None = None,
    scale_range: float = 0.15,
    rotation_range_deg: float | None = None,
    template_px: int = 32,
    min_peak: float = MIN_PEAK,
    min_distinctness: float = MIN_DISTINCTNESS,
) -> CoarseResult:
    """Find an HR region in the LR image: translation, scale and rotation to one reduced pixel.

    Parameters
    ----------
    lr : 2-D array
        Whole LR image (any real dtype; array-likes are read once).
    hr : 2-D array
        HR region.
    ratio : float
        Nominal LR/HR pixel-size ratio; candidates span ``ratio * (1 ± scale_range)``.
    rotation_search : bool
        Rotations within ±45° (default ±10°).
    lr_mask, hr_mask : bool arrays, optional
        True where usable (e.g. False on the databar).
    template_px : int
        Side of the reduced template (reduced LR px) the search aims for; sets the level.

    Returns
    -------
    CoarseResult

    Raises
    ------
    RegistrationError
        Flat region, region larger than the LR image, or no distinct peak.
    """
    lr_a = np.asarray(lr)
    hr_f = np.asarray(hr, dtype=np.float32)
    if lr_a.ndim != 2 or hr_f.ndim != 2:
        raise RegistrationError("LR and HR images must be 2-D")
    rot_max = rotation_range_deg if rotation_range_deg is not None else (45.0 if rotation_search else 10.0)
    hr_f = _fill_masked(hr_f, hr_mask)
    sub = hr_f[::4, ::4]
    spread = float(np.percentile(sub, 99) - np.percentile(sub, 1))
    full = float(np.max(np.abs(sub))) + 1e-12
    if spread <= 1e-6 * full or not np.isfinite(spread):
        raise RegistrationError("HR region is flat: nothing to correlate")
    side_lr = min(hr_f.shape) / ratio
    if side_lr < 8:
        raise RegistrationError(f"HR region spans only {side_lr:.1f} LR px: too small to register")
    if hr_f.shape[0] / ratio > lr_a.shape[0] * 1.05 or hr_f.shape[1] / ratio > lr_a.shape[1] * 1.05:
        raise RegistrationError("HR region is larger than the LR image at this ratio")
    level = max(1, int(side_lr // template_px))
    # Large reductions read every `stride`-th LR pixel only (the pixel-area average over the
    # rest of a coarse pixel changes nothing at this scale, and reading 64 MB costs time).
    stride = 4 if level >= 16 else 2 if level >= 8 else 1
    level -= level % stride
    lr_red = reduce_image(lr_a[::stride, ::stride] if stride > 1 else lr_a, level // stride)
    invalid = None
    if lr_mask is not None:
        m = np.asarray(lr_mask, dtype=bool)
        if m.shape != lr_a.shape:
            raise RegistrationError(f"lr_mask shape {m.shape} differs from LR shape {lr_a.shape}")
        ms = m[::stride, ::stride] if stride > 1 else m
        keep = reduce_image(ms.view(np.uint8), level // stride) > 0.999
        invalid = ~keep
        if keep.any():
            lr_red = lr_red.copy()
            lr_red[invalid] = float(lr_red[keep].mean())
    corr = _Correlator(lr_red, invalid)

    t_side = side_lr / level
    half_diag = 0.5 * t_side * math.sqrt(2.0)
    angle_step = math.degrees(2.0 / max(half_diag, 1.0))
    angle_step = min(max(angle_step, 1.0), 5.0)
    scale_step = min(max(1.5 / max(0.5 * t_side, 1.0), 0.02), 0.15)
    angles = _candidates(rot_max, angle_step)
    scales = 1.0 + _candidates(scale_range, scale_step)
    # One exact integer pixel-area reduction of the HR image serves every candidate.
    k = max(1, int(ratio * level * (1.0 - scale_range) // 3))
    hr_k = reduce_image(hr_f, k) if k > 1 else hr_f
    pre = scale_map(k) if k > 1 else AffineMap.identity()
    tried: dict[tuple[float, float], tuple] = {}

    def trial(a: float, sc: float):
        key = (round(a, 6), round(sc, 6))
        if key not in tried:
            templ, k_to_t = _template_direct(hr_k, ratio * level / sc / k, a)
            if templ.shape[0] >= lr_red.shape[0] or templ.shape[1] >= lr_red.shape[1]:
                tried[key] = None
            else:
                c = corr.ncc(templ)
                iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
                tried[key] = (float(c[iy, ix]), c, iy, ix, k_to_t @ pre, a, sc)
        return tried[key]

    # Separable search: rotations at the nominal scale, then scales at the best rotation,
    # then the best of both (the correlation peak survives a few % of scale error).
    def best_of(keys):
        res = [r for r in (trial(a, sc) for a, sc in keys) if r is not None]
        return max(res, key=lambda r: r[0]) if res else None

    best = best_of([(float(a), 1.0) for a in angles])
    if best is not None:
        best = best_of([(best[5], float(sc)) for sc in scales])
    if best is not None:
        best_a = best_of([(float(a), best[6]) for a in angles if abs(a - best[5]) <= angle_step + 1e-9])
        best = max((best, best_a), key=lambda r: r[0])
    if best is None:
        raise RegistrationError("HR region does not fit in the LR image at this ratio")
    _, c, iy, ix, hr_to_t, angle, sc = best
    px, py, peak = _subpixel_peak(c, int(iy), int(ix))
    dist = _distinctness(c, int(iy), int(ix), float(c[iy, ix]))
    log.debug("locate: level %d peak %.3f distinct %.2f angle %.1f scale %.3f", level, peak, dist, angle, sc)
    if peak < min_peak:
        raise RegistrationError(
            f"region not found in the LR image: best correlation {peak:.2f} < {min_peak}"
        )
    if dist < min_distinctness:
        raise RegistrationError(
            f"no distinct correlation peak (peak/second peak {dist:.2f} < {min_distinctness}): "
            "flat, periodic or absent region"
        )
    shift = AffineMap(np.array([[1.0, 0.0, px], [0.0, 1.0, py]]))
    # reduced pixel i covers strided samples k*i ... k*i+k-1 (k = level/stride), i.e. LR
    # pixels stride*(k*i) ... : its centre is LR level*i + (level - stride)/2.
    to_lr = AffineMap(np.array([[level, 0.0, (level - stride) / 2.0], [0.0, level, (level - stride) / 2.0]]))
    return CoarseResult(
        hr_to_lr=to_lr @ shift @ hr_to_t,
        ncc_peak=float(peak),
        ncc_distinctness=dist,
        level=level,
        scale=sc,
        rotation_deg=angle,
        ncc_map=c.astype(np.float32),
    )
