"""Place one HR region in the LR image to a small fraction of an LR pixel.

Two stages:

1. :func:`dleem.registration.locate.locate`: coarse location by fast normalised
   cross-correlation (Lewis 1995/2005) of the HR region reduced to LR pixel size, coarse to
   fine, over scales and rotations, with a sub-pixel peak and its distinctness.
2. :func:`dleem.registration.refine.refine`: Gauss-Newton on the six affine parameters, a
   grey-level gain and offset and the LR blur, minimising the squared difference between the
   LR crop and the HR image degraded to LR, coarse to fine, with robust weights on request.

:func:`register_region` runs both and applies the quality gates: a region that is not in
the LR image, has no distinct correlation peak, or whose refinement diverges raises
:class:`dleem.errors.RegistrationError`; a wrong map is never returned silently.

Conventions: see :mod:`dleem.registration.transform` (x = column, y = row, pixel centres on
integers; maps go HR px -> LR px).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dleem.errors import RegistrationError
from dleem.registration.locate import locate
from dleem.registration.refine import refine
from dleem.registration.transform import AffineMap
from dleem.workspace import RegionRegistration


@dataclass
class RegistrationResult:
    """Everything known about one registered HR region.

    Attributes
    ----------
    hr_to_lr : AffineMap
        HR pixel coordinates -> LR pixel coordinates (full LR image, not the crop).
    gain, offset : float
        Grey-level model ``LR ≈ gain * degrade(HR) + offset`` in LR grey units (raw values
        of the input arrays).
    blur_sigma_lr_px : float
        Width (sigma, LR px) of the Gaussian that, applied on top of the HR image and of the
        LR pixel footprint, best reproduces the LR image. It is the LR beam PSF *in excess of*
        the HR image's own blur: ``sqrt(s_lr**2 - (s_hr / ratio)**2)`` for Gaussian PSFs of
        widths ``s_lr`` (LR px) and ``s_hr`` (HR px).
    ncc_peak, ncc_distinctness : float
        Coarse normalised cross-correlation peak, and its ratio to the highest peak outside
        the main lobe (1 = ambiguous).
    residual : float
        RMS grey-level residual (LR units) over the valid pixels at convergence.
    iterations : int
        Gauss-Newton iterations, all pyramid levels together.
    uncertainty : dict
        ``{"corner_rms_lr_px": ..., "param_std": {...}, "noise_std": ...}``: parameter standard
        deviations from the Gauss-Newton normal matrix times the residual variance, and the
        implied RMS error of the four mapped HR corners (LR px). A lower bound when the
        residual is spatially correlated (non-affine distortion).
    residual_map : ndarray (float32)
        LR minus model on the LR crop ``lr_box``; NaN where not used (outside the HR
        footprint, masked).
    lr_box : (row0, col0, row1, col1)
        Half-open LR pixel box of the crop that the region covers (clipped to the image).
    ratio : float
        Fitted LR/HR pixel-size ratio (1 / mean scale of ``hr_to_lr``).
    rotation_deg : float
        Rotation of ``hr_to_lr`` (degrees, see :meth:`AffineMap.from_params`).
    """

    hr_to_lr: AffineMap
    gain: float
    offset: float
    blur_sigma_lr_px: float
    ncc_peak: float
    ncc_distinctness: float
    residual: float
    iterations: int
    uncertainty: dict
    residual_map: np.ndarray
    lr_box: tuple[int, int, int, int]
    ratio: float
    rotation_deg: float
    coarse_hr_to_lr: AffineMap | None = None
    valid_fraction: float = 1.0
    timings_s: dict = field(default_factory=dict)

    def noise_model(self, lr: np.ndarray) -> dict[str, float]:
        """The LR noise model {a, b} (variance = a + b * signal, LR grey levels) from the
        residual of the fit, its signal being the model (LR minus residual); from the LR
        crop alone (`dleem.trust.noise.estimate_noise_model`) where too few residuals exist."""
        from dleem.trust.noise import estimate_noise_model, noise_from_residual

        r0, c0, r1, c1 = self.lr_box
        crop = np.asarray(lr[r0:r1, c0:c1], dtype=np.float32)
        used = np.isfinite(self.residual_map)
        try:
            if used.sum() < 1000:
                raise ValueError("too few residuals")
            model = noise_from_residual(crop[used] - self.residual_map[used], self.residual_map[used])
        except ValueError:
            model = estimate_noise_model(crop)
        return {"a": model.a, "b": model.b}

    def to_record(
        self,
        file: str,
        *,
        ratio_source: str,
        hr_shape: tuple[int, int],
        hr_pixel_size_um: float | None = None,
        hr_pixel_size_source: str | None = None,
        hr_databar_rows: int = 0,
        noise_model: dict[str, float] | None = None,
    ) -> RegionRegistration:
        """This result as its entry of ``registration.json`` (no arrays)."""
        return RegionRegistration(
            file=file, status="ok", hr_to_lr=self.hr_to_lr,
            ncc_peak=float(self.ncc_peak), ncc_distinctness=float(self.ncc_distinctness),
            residual=float(self.residual), iterations=int(self.iterations),
            blur_sigma_lr_px=float(self.blur_sigma_lr_px), uncertainty=dict(self.uncertainty),
            gain=float(self.gain), offset=float(self.offset), ratio=float(self.ratio),
            ratio_source=ratio_source, rotation_deg=float(self.rotation_deg),
            lr_box=tuple(int(v) for v in self.lr_box), hr_shape=(int(hr_shape[0]), int(hr_shape[1])),
            hr_pixel_size_um=hr_pixel_size_um, hr_pixel_size_source=hr_pixel_size_source,
            hr_databar_rows=int(hr_databar_rows), noise_model=noise_model,
        )


def register_region(
    lr: np.ndarray,
    hr: np.ndarray,
    ratio: float,
    *,
    rotation_search: bool = False,
    robust: str | None = None,
    lr_mask: np.ndarray | None = None,
    hr_mask: np.ndarray | None = None,
    max_iterations: int = 50,
    initial: AffineMap | None = None,
    blur_sigma_lr_px: float | None = None,
    max_uncertainty_lr_px: float = 0.5,
) -> RegistrationResult:
    """Register one HR region into the LR image.

    Parameters
    ----------
    lr : 2-D array (NumPy, memory-map or other array-like)
        The whole LR image, any real dtype. Only a reduced copy and a crop are made.
    hr : 2-D array
        The HR region, any real dtype.
    ratio : float
        Nominal LR pixel size / HR pixel size (> 1). Searched within ±15 % and refined.
    rotation_search : bool
        Search rotations within ±45° instead of ±10°.
    robust : {None, "huber", "tukey"}
        Robust weights against charging, dust, drift.
    lr_mask, hr_mask : 2-D bool arrays, optional
        True where a pixel may be used (e.g. False on the LR databar).
    max_iterations : int
        Cap on Gauss-Newton iterations per pyramid level.
    initial : AffineMap, optional
        Skip the coarse search and start the refinement from this HR -> LR map.
    blur_sigma_lr_px : float, optional
        Fix the LR blur instead of estimating it.
    max_uncertainty_lr_px : float
        Refuse a map whose predicted corner error (1 sigma, LR px) exceeds this: too little
        texture or signal in the region to place it reliably.

    Returns
    -------
    RegistrationResult

    Raises
    ------
    RegistrationError
        Region not found in the LR image, no distinct peak (flat or periodic), or the
        refinement diverged.
    """
    if not np.isfinite(ratio) or ratio <= 0:
        raise RegistrationError(f"ratio must be a positive number, got {ratio}")
    if robust not in (None, "huber", "tukey"):
        raise RegistrationError(f"robust must be None, 'huber' or 'tukey', got {robust!r}")
    if getattr(lr, "ndim", 2) != 2 or getattr(hr, "ndim", 2) != 2:
        raise RegistrationError("LR and HR images must be 2-D (grey level)")
    t0 = time.perf_counter()
    if initial is None:
        coarse = locate(
            lr, hr, ratio, rotation_search=rotation_search, lr_mask=lr_mask, hr_mask=hr_mask
        )
        start, peak, dist, level = coarse.hr_to_lr, coarse.ncc_peak, coarse.ncc_distinctness, coarse.level
    else:
        start, peak, dist, level = initial, float("nan"), float("nan"), 1
    t1 = time.perf_counter()
    fine = refine(
        lr,
        hr,
        start,
        start_level=level,
        robust=robust,
        lr_mask=lr_mask,
        hr_mask=hr_mask,
        max_iterations=max_iterations,
        blur_sigma_lr_px=blur_sigma_lr_px,
    )
    t2 = time.perf_counter()
    unc = fine.uncertainty.get("corner_rms_lr_px", float("nan"))
    if not unc <= max_uncertainty_lr_px:
        raise RegistrationError(
            f"map too uncertain: predicted corner error {unc:.2f} LR px > {max_uncertainty_lr_px} "
            "(too little texture or signal in the region)"
        )
    return RegistrationResult(
        hr_to_lr=fine.hr_to_lr,
        gain=fine.gain,
        offset=fine.offset,
        blur_sigma_lr_px=fine.blur_sigma_lr_px,
        ncc_peak=peak,
        ncc_distinctness=dist,
        residual=fine.residual,
        iterations=fine.iterations,
        uncertainty=fine.uncertainty,
        residual_map=fine.residual_map,
        lr_box=fine.lr_box,
        ratio=1.0 / fine.hr_to_lr.mean_scale,
        rotation_deg=fine.hr_to_lr.rotation_deg,
        coarse_hr_to_lr=start,
        valid_fraction=fine.valid_fraction,
        timings_s={"locate": t1 - t0, "refine": t2 - t1},
    )
