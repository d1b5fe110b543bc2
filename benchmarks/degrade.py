"""A realistic SEM low-resolution acquisition simulated from a real high-resolution image.

The LR map of a DLE-EM workflow is the same specimen scanned with k-times larger pixels,
usually faster and with a larger probe. `degrade` treats a real image as the HR truth and
simulates that scan:

1. beam blur: a Gaussian probe of full width at half maximum `beam_fwhm_um`, in physical
   units through the HR pixel size (the HR image keeps the blur it already has);
2. area sampling: each LR pixel integrates the k x k HR pixels it covers (box average),
   so LR pixel i covers fine-grid pixels k*i ... k*i+k-1, the geometry of dleem's pairs;
3. shot noise: the grey value is proportional to the detected electrons, Poisson with a
   mean of `electrons_full_scale` at full scale (the dose per LR pixel times the detector
   yield of the brightest phase);
4. read noise: Gaussian, `read_noise_dn` grey levels (amplifier and ADC);
5. quantisation to the output dtype (8 bit).

Everything is seeded, so a benchmark recreates its LR images exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = ["SEMDegradation", "area_sample", "degrade"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def area_sample(image: np.ndarray, scale: int) -> np.ndarray:
    """Average each `scale` x `scale` block (the LR pixel's area on the HR grid).

    Parameters
    ----------
    image : ndarray, shape (scale*H, scale*W)
        Fine-grid image; its shape must be a multiple of `scale`.
    scale : int
        Integer ratio of LR to HR pixel size.

    Returns
    -------
    ndarray, shape (H, W), float64
    """
    h, w = image.shape
    if h % scale or w % scale:
        raise ValueError(f"shape {image.shape} is not a multiple of scale {scale}")
    return image.astype(np.float64).reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


@dataclass(frozen=True)
class SEMDegradation:
    """Parameters of a simulated LR SEM scan of an HR image (see module docstring).

    Parameters
    ----------
    scale : int
        LR pixel size over HR pixel size (integer).
    hr_pixel_size_um : float
        Pixel size of the HR image in micrometres (assumed where the file has none).
    beam_fwhm_um : float
        FWHM of the Gaussian probe of the LR scan, micrometres. 0 means no extra blur.
    electrons_full_scale : float or None
        Mean detected electrons per LR pixel at grey value `dtype_max` (Poisson shot
        noise). None means no shot noise.
    read_noise_dn : float
        Standard deviation of the Gaussian read noise, grey levels of the output dtype.
    dtype_max : int
        Full scale of the output (255 for 8 bit).
    """

    scale: int = 4
    hr_pixel_size_um: float = 0.01
    beam_fwhm_um: float = 0.05
    electrons_full_scale: float | None = 400.0
    read_noise_dn: float = 2.0
    dtype_max: int = 255

    @property
    def lr_pixel_size_um(self) -> float:
        return self.hr_pixel_size_um * self.scale

    @property
    def beam_sigma_hr_px(self) -> float:
        """Probe standard deviation in HR pixels."""
        return self.beam_fwhm_um / FWHM_PER_SIGMA / self.hr_pixel_size_um

    @property
    def beam_sigma_lr_px(self) -> float:
        """Probe standard deviation in LR pixels (what registration would estimate)."""
        return self.beam_sigma_hr_px / self.scale

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(lr_pixel_size_um=self.lr_pixel_size_um,
                 beam_sigma_hr_px=self.beam_sigma_hr_px,
                 beam_sigma_lr_px=self.beam_sigma_lr_px)
        return d


def degrade(hr: np.ndarray, params: SEMDegradation, seed: int) -> np.ndarray:
    """Simulate the LR scan of `hr` (beam blur, area sampling, shot/read noise, 8 bit).

    Parameters
    ----------
    hr : ndarray, shape (scale*H, scale*W)
        HR image, grey values in the output dtype's scale (0..`dtype_max`).
    params : SEMDegradation
        The scan (pixel size, probe, dose, read noise).
    seed : int
        Seed of the noise; the same seed gives the same LR image.

    Returns
    -------
    ndarray, shape (H, W), uint8 (or uint16 when `dtype_max` > 255)
    """
    if hr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {hr.shape}")
    rng = np.random.default_rng(seed)
    x = hr.astype(np.float64)
    if params.beam_fwhm_um > 0:
        x = ndimage.gaussian_filter(x, params.beam_sigma_hr_px, mode="reflect")
    x = area_sample(x, params.scale)
    if params.electrons_full_scale is not None:
        gain = params.dtype_max / params.electrons_full_scale  # grey levels per electron
        x = rng.poisson(np.clip(x, 0, None) / gain) * gain
    if params.read_noise_dn > 0:
        x = x + rng.normal(0.0, params.read_noise_dn, size=x.shape)
    dtype = np.uint8 if params.dtype_max <= 255 else np.uint16
    return np.clip(np.rint(x), 0, params.dtype_max).astype(dtype)
