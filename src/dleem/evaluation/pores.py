"""Pore phase: segmentation, porosity, pore-size distributions, two-point correlation.

Conventions (stated in the report and in docs/report.md):

- Segmentation: one global threshold, chosen on the HR tiles (Otsu by default) and applied
  alike to HR, SR and bicubic. Pores are the *dark* phase (epoxy-filled pores in
  back-scattered electron images) unless ``pores_dark=False``.
- Porosity: pore pixels / all pixels of the tile, pores cut by the tile edge included.
- Pores: connected components with 8-connectivity (default; 4 on request) of at least
  ``min_area_px`` fine pixels. Pores touching the tile edge are *excluded* from the pore count
  and the equivalent-diameter distribution (their true size is unknown) but stay in porosity.
- Equivalent diameter: ``2 * sqrt(area / pi)``, in µm.
- Local thickness (pore-size function): at every pore pixel, the diameter of the largest disc
  that lies inside the pore phase and covers that pixel (Hildebrand & Rüegsegger 1997); it
  does not depend on connectivity. Computed with Euclidean distance transforms (scipy) and a
  covering-discs dilation per radius, radii quantised to 1/4 px up to 8 px, 4 % beyond.
- Two-point correlation S2(r): probability that two points a distance r apart both lie in the
  pore phase, from the FFT autocorrelation of the indicator (zero-padded, normalised by the
  number of pairs at each lag), averaged over directions; S2(0) = porosity.
- Distances between distributions: 1-D Wasserstein (earth mover's) distance in µm and the
  two-sample Kolmogorov-Smirnov statistic, both from ``scipy.stats``.

References
----------
Otsu, N. (1979). A threshold selection method from gray-level histograms. IEEE TSMC 9(1).
Hildebrand, T., Rüegsegger, P. (1997). A new method for the model-independent assessment of
thickness in three-dimensional images. J. Microscopy 185(1).
Torquato, S. (2002). Random Heterogeneous Materials. Springer (two-point correlation).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

#: skimage.filters threshold methods accepted by name.
THRESHOLD_METHODS = ("otsu", "li", "yen", "isodata", "triangle", "mean", "minimum")


def choose_threshold(values: np.ndarray, method: str | float = "otsu") -> float:
    """A global grey-level threshold from ``values`` (the HR pixels), or the user's number.

    Parameters
    ----------
    values : array
        Grey values to choose from (any shape; NaN ignored).
    method : str or float
        A name in ``THRESHOLD_METHODS`` (skimage.filters ``threshold_<name>``) or a number,
        used as it is (grey levels of the LR grey scale).
    """
    if not isinstance(method, str):
        return float(method)
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold method {method!r}; use one of {THRESHOLD_METHODS}")
    import skimage.filters

    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() == v.max():
        raise ValueError("cannot choose a threshold on a constant image")
    func = getattr(skimage.filters, f"threshold_{method}")
    return float(func(v))


def segment(image: np.ndarray, threshold: float, *, pores_dark: bool = True) -> np.ndarray:
    """Boolean pore mask: ``image <= threshold`` (dark pores) or ``> threshold``."""
    img = np.asarray(image)
    return img <= threshold if pores_dark else img > threshold


def porosity(mask: np.ndarray) -> float:
    """Fraction of pore pixels (pores cut by the edge included)."""
    return float(np.count_nonzero(mask)) / float(mask.size)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity == 8:
        return np.ones((3, 3), dtype=bool)
    if connectivity == 4:
        return ndimage.generate_binary_structure(2, 1)
    raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")


@dataclass(frozen=True)
class PoreStats:
    """Pore statistics of one binary tile.

    Attributes
    ----------
    porosity : float
        Pore pixel fraction (edge pores included).
    count : int
        Pores fully inside the tile and at least ``min_area_px`` large.
    diameters_um : ndarray
        Equivalent diameters (µm) of those pores.
    n_edge : int
        Pores touching the tile edge (excluded from count and diameters).
    """

    porosity: float
    count: int
    diameters_um: np.ndarray
    n_edge: int


def pore_stats(
    mask: np.ndarray,
    pixel_size_um: float,
    *,
    connectivity: int = 8,
    min_area_px: int = 4,
) -> PoreStats:
    """Porosity, pore count and equivalent-diameter sizes of a binary pore mask.

    Parameters
    ----------
    mask : (h, w) bool
        True in the pore phase.
    pixel_size_um : float
        Pixel size of the mask (µm), for diameters in µm.
    connectivity : {8, 4}
        Pixel connectivity of a pore.
    min_area_px : int
        Pores smaller than this (pixels) are noise, not pores: not counted, not sized.
    """
    labels, n = ndimage.label(mask, structure=_structure(connectivity))
    if n == 0:
        return PoreStats(porosity(mask), 0, np.zeros(0), 0)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    edge = np.zeros(n + 1, dtype=bool)
    for border in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        edge[border] = True
    edge = edge[1:]
    keep = (~edge) & (areas >= min_area_px)
    diam = 2.0 * np.sqrt(areas[keep] / np.pi) * pixel_size_um
    n_edge = int(np.count_nonzero(edge & (areas >= min_area_px)))
    return PoreStats(porosity(mask), int(keep.sum()), diam.astype(np.float64), n_edge)


def _radius_levels(dt: np.ndarray, step_px: float, rel_step: float,
                   fine_up_to_px: float) -> np.ndarray:
    """Quantise radii down: steps of ``step_px`` up to ``fine_up_to_px``, then geometric."""
    q = np.floor(dt / step_px) * step_px
    big = dt > fine_up_to_px
    if np.any(big):
        n = np.floor(np.log(dt[big] / fine_up_to_px) / np.log1p(rel_step))
        q[big] = fine_up_to_px * (1.0 + rel_step) ** n
    return q


def local_thickness(mask: np.ndarray, *, step_px: float = 0.25, rel_step: float = 0.04,
                    fine_up_to_px: float = 8.0) -> np.ndarray:
    """Local thickness (diameter of the largest inscribed covering disc) in pixels.

    Parameters
    ----------
    mask : (h, w) bool
        True in the phase to measure (the pores).
    step_px : float
        Radius quantum of the covering-discs sweep up to ``fine_up_to_px`` (pixels).
    rel_step : float
        Relative radius step beyond ``fine_up_to_px`` (0.04: 4 %), so that large pores do
        not cost hundreds of distance transforms.

    Returns
    -------
    ndarray of float64
        Diameter (px) at every pore pixel, 0 elsewhere. The pixels of a disc of radius R px
        (pixel centres within R of its centre) get 2R within one pixel (within 4 % above
        ``fine_up_to_px``).

    Notes
    -----
    ``D``, the Euclidean distance transform of the pore phase, is at each pore pixel the
    distance to the nearest solid pixel centre: a disc centred there with radius ``D`` holds
    only pore pixel centres, and its physical radius is ``D - 1/2`` (the pore boundary lies
    between pixel centres). Sweeping radius levels ``L`` from large to small, every pore
    pixel closer than ``L`` to a centre with ``D >= L`` gets the diameter ``2 D_L - 1`` (``D_L``:
    the mean ``D`` of the level's own pixels) if it has none yet (Hildebrand & Rüegsegger 1997). Pores cut by
    the tile edge are extended by edge replication, so the tile border does not shrink them.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=np.float64)
    if not mask.any():
        return out
    padded = np.pad(mask, 1, mode="edge")
    dt = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    q = _radius_levels(dt, step_px, rel_step, fine_up_to_px)  # quantised down: inside pore
    levels, inverse = np.unique(q[mask], return_inverse=True)
    # The radius given to a level: the mean D of its own pixels (better than the bin edge).
    mean_d = np.bincount(inverse, weights=dt[mask]) / np.maximum(np.bincount(inverse), 1)
    h, w = mask.shape
    for level, d_level in zip(levels[::-1], mean_d[::-1], strict=True):
        if level <= 0:
            continue
        seeds = q >= level
        rows = np.flatnonzero(seeds.any(axis=1))
        cols = np.flatnonzero(seeds.any(axis=0))
        pad = int(np.ceil(level)) + 1
        r0, r1 = max(0, rows[0] - pad), min(h, rows[-1] + pad + 1)
        c0, c1 = max(0, cols[0] - pad), min(w, cols[-1] + pad + 1)
        reach = ndimage.distance_transform_edt(~seeds[r0:r1, c0:c1])
        sub = out[r0:r1, c0:c1]
        covered = (reach < level) & mask[r0:r1, c0:c1] & (sub == 0)
        sub[covered] = 2.0 * d_level - 1.0
    out[mask & (out == 0)] = 1.0  # thinner than the sweep resolves: one pixel
    return out


@functools.lru_cache(maxsize=8)
def _radial_bins(h: int, w: int, r_max_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lag selection, radial bin and pair count of every lag of an (h, w) window."""
    shape = (2 * h, 2 * w)
    ones = np.fft.rfft2(np.ones((h, w)), shape)
    pairs = np.fft.fftshift(np.fft.irfft2(ones * np.conj(ones), shape))
    yy, xx = np.indices(shape)
    rr = np.rint(np.hypot(yy - h, xx - w)).astype(int)
    sel = (rr <= r_max_px) & (pairs > 0.5)
    counts = np.bincount(rr[sel], minlength=r_max_px + 1)
    return sel, rr[sel], np.rint(pairs[sel]) * 1.0, counts  # type: ignore[return-value]


def two_point_correlation(mask: np.ndarray, *, r_max_px: int | None = None) -> np.ndarray:
    """Radially averaged two-point correlation S2(r) of the pore phase, r = 0, 1, ... px.

    Non-periodic: the indicator is zero-padded and each lag is normalised by the number of
    pixel pairs at that lag, so the tile edge does not bias S2. ``S2[0]`` is the porosity and
    S2 tends to porosity**2 at distances beyond the pore size.
    """
    f = np.asarray(mask, dtype=np.float64)
    h, w = f.shape
    if r_max_px is None:
        r_max_px = min(h, w) // 4
    sel, rbin, npairs, counts = _radial_bins(h, w, int(r_max_px))
    spec = np.fft.rfft2(f, (2 * h, 2 * w))
    auto = np.fft.fftshift(np.fft.irfft2(spec * np.conj(spec), (2 * h, 2 * w)))
    sums = np.bincount(rbin, weights=auto[sel] / npairs, minlength=r_max_px + 1)
    return sums / np.maximum(counts, 1)


@dataclass(frozen=True)
class Distances:
    """Distances of a sample to a reference sample (same unit as the samples)."""

    wasserstein: float | None
    ks_statistic: float | None
    ks_pvalue: float | None


def distribution_distances(sample: np.ndarray, reference: np.ndarray) -> Distances:
    """Wasserstein distance and two-sample KS test of ``sample`` against ``reference``.

    Returns None fields when either sample is empty (no pores found).
    """
    a = np.asarray(sample, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return Distances(None, None, None)
    ks = stats.ks_2samp(a, b)
    return Distances(
        float(stats.wasserstein_distance(a, b)), float(ks.statistic), float(ks.pvalue)
    )
