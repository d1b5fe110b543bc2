"""Established registration tools, run the way a careful user would, as benchmark anchors.

Every anchor gets the same inputs as dleem (the whole LR image, the HR region, the nominal
ratio) and returns an HR -> LR :class:`AffineMap`. All of them start from a full-resolution
normalised cross-correlation of the HR region reduced to LR pixel size (pixel-area
resampling), as the benchmark specifies, and then refine with their own method:

* ``opencv``: ``cv2.matchTemplate`` (TM_CCOEFF_NORMED) then ``cv2.findTransformECC``
  (MOTION_AFFINE) between the reduced HR and the LR crop;
* ``skimage``: ``skimage.feature.match_template`` then ``phase_cross_correlation``
  (upsample 100): translation only, as scikit-image offers;
* ``sitk``: SimpleITK ``ImageRegistrationMethod``, affine transform, correlation metric,
  regular-step gradient descent from the NCC start, centred transform
  (a pyramid and the other optimisers we tried were less accurate);
* ``spam``: ``spam.DIC.register`` (Tudisco et al. 2017), a Gauss-Newton on a 4x4 Phi.
"""

from __future__ import annotations

import cv2
import numpy as np

from dleem.registration.transform import AffineMap


def reduce_hr(hr: np.ndarray, ratio: float) -> tuple[np.ndarray, AffineMap]:
    """HR reduced to LR pixel size (INTER_AREA) and the exact HR -> reduced map."""
    h, w = hr.shape
    tw, th = int(round(w / ratio)), int(round(h / ratio))
    t = cv2.resize(np.asarray(hr, np.float32), (tw, th), interpolation=cv2.INTER_AREA)
    sx, sy = tw / w, th / h
    return t, AffineMap(np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]]))


def ncc_full(lr: np.ndarray, t: np.ndarray) -> tuple[int, int]:
    """Integer top-left position of the template in the LR image (OpenCV NCC, full res)."""
    c = cv2.matchTemplate(np.asarray(lr, np.float32), t, cv2.TM_CCOEFF_NORMED)
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    return int(ix), int(iy)


def _crop(lr: np.ndarray, x0: int, y0: int, w: int, h: int, margin: int):
    r0, c0 = max(0, y0 - margin), max(0, x0 - margin)
    r1, c1 = min(lr.shape[0], y0 + h + margin), min(lr.shape[1], x0 + w + margin)
    return np.asarray(lr[r0:r1, c0:c1], np.float32), r0, c0


def opencv_ecc(lr: np.ndarray, hr: np.ndarray, ratio: float) -> AffineMap:
    """matchTemplate + findTransformECC (MOTION_AFFINE) at full LR resolution."""
    t, hr_to_t = reduce_hr(hr, ratio)
    x0, y0 = ncc_full(lr, t)
    margin = 16
    crop, r0, c0 = _crop(lr, x0, y0, t.shape[1], t.shape[0], margin)
    warp = np.array([[1, 0, x0 - c0], [0, 1, y0 - r0]], np.float32)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-7)
    _, warp = cv2.findTransformECC(t, crop, warp, cv2.MOTION_AFFINE, crit, None, 5)
    t_to_lr = AffineMap(np.array(warp, np.float64))
    shift = AffineMap(np.array([[1.0, 0, c0], [0, 1.0, r0]]))
    return shift @ t_to_lr @ hr_to_t


def skimage_pcc(lr: np.ndarray, hr: np.ndarray, ratio: float) -> AffineMap:
    """skimage match_template + phase_cross_correlation (translation, 1/100 px)."""
    from skimage.feature import match_template
    from skimage.registration import phase_cross_correlation

    t, hr_to_t = reduce_hr(hr, ratio)
    c = match_template(np.asarray(lr, np.float32), t)
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    win = np.asarray(lr[iy : iy + t.shape[0], ix : ix + t.shape[1]], np.float32)
    shift, _, _ = phase_cross_correlation(win, t, upsample_factor=100, normalization=None)
    dy, dx = float(shift[0]), float(shift[1])
    return AffineMap(np.array([[1.0, 0, ix + dx], [0, 1.0, iy + dy]])) @ hr_to_t


def sitk_affine(lr: np.ndarray, hr: np.ndarray, ratio: float) -> AffineMap:
    """SimpleITK affine registration (correlation metric) of the reduced HR onto the LR crop."""
    import SimpleITK as sitk

    t, hr_to_t = reduce_hr(hr, ratio)
    x0, y0 = ncc_full(lr, t)
    margin = 8
    crop, r0, c0 = _crop(lr, x0, y0, t.shape[1], t.shape[0], margin)
    fixed = sitk.GetImageFromArray(crop)
    fixed.SetOrigin((float(c0), float(r0)))  # physical = LR px coordinates
    moving = sitk.GetImageFromArray(t)  # physical = reduced-HR px coordinates
    tx = sitk.AffineTransform(2)
    tx.SetCenter((c0 + crop.shape[1] / 2.0, r0 + crop.shape[0] / 2.0))  # conditioning
    tx.SetTranslation((-float(x0), -float(y0)))  # LR -> template
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-6, numberOfIterations=300, gradientMagnitudeTolerance=1e-10
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(fixed, moving)
    m = np.array(tx.GetMatrix()).reshape(2, 2)
    c = np.array(tx.GetCenter())
    tr = np.array(tx.GetTranslation())
    lr_to_t = AffineMap(np.column_stack([m, tr + c - m @ c]))
    return lr_to_t.inverse() @ hr_to_t


def spam_register(lr: np.ndarray, hr: np.ndarray, ratio: float) -> AffineMap:
    """spam.DIC.register (Tudisco et al. 2017) of the reduced HR against the LR crop."""
    import spam.DIC

    t, hr_to_t = reduce_hr(hr, ratio)
    x0, y0 = ncc_full(lr, t)
    h, w = t.shape
    margin = 8
    r0, c0 = y0 - margin, x0 - margin
    if r0 < 0 or c0 < 0 or y0 + h + margin > lr.shape[0] or x0 + w + margin > lr.shape[1]:
        margin = 0
        r0, c0 = y0, x0
    im2 = np.asarray(lr[r0 : y0 + h + margin, c0 : x0 + w + margin], np.float32)
    res = spam.DIC.register(
        t[None].astype(np.float32), im2[None], margin=max(2, int(0.05 * max(h, w))),
        maxIterations=100, deltaPhiMin=1e-5, interpolationOrder=1, verbose=False,
        verboseHistory=False,
    )
    phi = np.asarray(res["Phi"])
    # im1(x) = im2(Phi x), x relative to im1's centre; im2 is centred on im1 (equal margins).
    lin = np.array([[phi[2, 2], phi[2, 1]], [phi[1, 2], phi[1, 1]]])
    tr = np.array([phi[2, 3], phi[1, 3]])
    c1 = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    c2 = np.array([(im2.shape[1] - 1) / 2.0, (im2.shape[0] - 1) / 2.0])
    t_to_im2 = AffineMap(np.column_stack([lin, c2 + tr - lin @ c1]))
    shift = AffineMap(np.array([[1.0, 0, c0], [0, 1.0, r0]]))
    return shift @ t_to_im2 @ hr_to_t


ANCHORS = {
    "opencv": opencv_ecc,
    "skimage": skimage_pcc,
    "sitk": sitk_affine,
    "spam": spam_register,
}
