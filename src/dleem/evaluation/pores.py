"""Pore phase: segmentation, porosity, pores matched one by one, sizes, two-point correlation.

Conventions (stated in the report and in docs/report.md):

- Segmentation: one global threshold, chosen on the HR tiles (Otsu by default) and applied
  alike to HR, SR and bicubic. Pores are the *dark* phase (epoxy-filled pores in
  back-scattered electron images) unless ``pores_dark=False``.
- Porosity: pore pixels / all pixels of the tile, pores cut by the tile edge included.
- Pores: connected components with 8-connectivity (default; 4 on request) of at least
  ``min_area_px`` fine pixels (smaller ones are removed from the pore phase). Pores touching
  the tile edge are *excluded* from the pore count, the size distributions and the matching
  (their true size is unknown) but stay in porosity.
- Equivalent diameter: ``2 * sqrt(area / pi)``, in µm, or in LR px (divided by ``k``).
- Matching (`match_pores`): a reference pore (HR, or the truth) is *recalled* when the method
  marks at least half of its pixels as pore; a method's pore is *correct* when at least half
  of its pixels are reference pore. A *merge* is a method's pore holding at least half of the
  pixels of two or more recalled reference pores; a *split* is a reference pore holding at
  least half of the pixels of two or more of the method's pores.
- Local thickness (pore-size function): at every pore pixel, the diameter of the largest disc
  that lies inside the pore phase and covers that pixel (Hildebrand & Rüegsegger 1997), with
  everything outside the image taken as solid, so no pore is extended beyond the image; the
  evaluation computes it with the edge pores removed, so no value is cut either.
- Two-point correlation S2(r): probability that two points a distance r apart both lie in the
  pore phase, from the FFT autocorrelation of the indicator (zero-padded, normalised by the
  number of pairs at each lag), averaged over directions; S2(0) = porosity.
- Distances between distributions: 1-D Wasserstein (earth mover's) distance in µm and the
  two-sample Kolmogorov-Smirnov statistic, both from ``scipy.stats``, as descriptions; no
  p-value is computed on pooled pores (they are not independent samples).

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
    the mean ``D`` of the level's own pixels) if it has none yet (Hildebrand & Rüegsegger 1997).
    Outside the image is solid: a pore cut by the image edge is measured as if the edge were
    a wall, so no value is inflated and none exceeds ``2 max(D) - 1``, the diameter of the
    largest disc that fits in the pore phase (remove the edge pores to leave them out).
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=np.float64)
    if not mask.any():
        return out
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
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


def distribution_distances(sample: np.ndarray, reference: np.ndarray) -> Distances:
    """Wasserstein distance and two-sample KS statistic of ``sample`` against ``reference``.

    Descriptive only: pooled pores are not independent samples, so no p-value is given here.
    Returns None fields when either sample is empty (no pores found).
    """
    a = np.asarray(sample, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return Distances(None, None)
    return Distances(float(stats.wasserstein_distance(a, b)),
                     float(stats.ks_2samp(a, b).statistic))


def ks_pvalue(sample: np.ndarray, reference: np.ndarray) -> float | None:
    """Two-sample KS p-value of one value per tile (e.g. each tile's median pore diameter).

    Tiles on the independent grid are the sampling unit here, not pores; None when either
    side has fewer than 3 values.
    """
    a = np.asarray(sample, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 3 or b.size < 3:
        return None
    return float(stats.ks_2samp(a, b).pvalue)


# ---------------------------------------------------------------------------- matching


def pore_objects(mask: np.ndarray, *, connectivity: int = 8,
                 min_area_px: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label the pores of a mask after the ``min_area_px`` cut.

    Returns ``(labels, areas, interior)``: labels 1..n (0 = solid or removed), the area of
    each label (index 0 unused), and whether it is free of the tile edge (index 0 False).
    """
    labels, n = ndimage.label(mask, structure=_structure(connectivity))
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    small = areas < min_area_px
    small[0] = False
    if small.any():
        keep = np.flatnonzero(~small)
        remap = np.zeros(n + 1, dtype=np.int64)
        remap[keep] = np.arange(keep.size)
        labels = remap[labels]
        areas = areas[keep]
        n = keep.size - 1
    interior = np.ones(n + 1, dtype=bool)
    interior[0] = False
    for border in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        interior[border] = False
    return labels, areas, interior


def remove_edge_pores(mask: np.ndarray, *, connectivity: int = 8,
                      min_area_px: int = 4) -> np.ndarray:
    """The pore phase without the pores cut by the tile edge (and without the small ones)."""
    labels, _, interior = pore_objects(mask, connectivity=connectivity, min_area_px=min_area_px)
    return interior[labels]


@dataclass(frozen=True)
class PoreMatch:
    """One tile's pores of a method matched against the reference pores.

    Attributes
    ----------
    ref_diameter_px : ndarray
        Equivalent diameters (fine px) of the reference pores not cut by the edge.
    ref_recalled : ndarray of bool
        Whether the method marks at least half of each reference pore's pixels as pore.
    n_method, n_correct : int
        The method's pores not cut by the edge, and those at least half reference pore.
    merges : int
        The method's pores holding at least half of two or more recalled reference pores.
    splits : int
        Reference pores holding at least half of two or more of the method's pores.
    """

    ref_diameter_px: np.ndarray
    ref_recalled: np.ndarray
    n_method: int
    n_correct: int
    merges: int
    splits: int


def match_pores(method: np.ndarray, reference: np.ndarray, *, connectivity: int = 8,
                min_area_px: int = 4) -> PoreMatch:
    """Match the pores of ``method`` to those of ``reference`` one by one (rules above)."""
    lm, am, im = pore_objects(method, connectivity=connectivity, min_area_px=min_area_px)
    lr, ar, ir = pore_objects(reference, connectivity=connectivity, min_area_px=min_area_px)
    nm, nr = am.size, ar.size
    # overlap counts of every (method label, reference label) pair, 0 = background
    pair = np.bincount((lm * nr + lr).ravel(), minlength=nm * nr).reshape(nm, nr)
    ref_marked = pair[1:, :].sum(axis=0)  # reference pixels inside the method's pore phase
    met_marked = pair[:, 1:].sum(axis=1)
    recalled = 2 * ref_marked >= ar
    correct = 2 * met_marked >= am
    half_of_ref = 2 * pair >= ar[None, :]  # method pore m holds >= half of reference pore r
    half_of_met = 2 * pair >= am[:, None]
    merges = int(np.count_nonzero(
        (half_of_ref[1:, 1:] & recalled[None, 1:]).sum(axis=1)[im[1:]] >= 2))
    splits = int(np.count_nonzero(half_of_met[1:, 1:].sum(axis=0)[ir[1:]] >= 2))
    return PoreMatch(
        ref_diameter_px=2.0 * np.sqrt(ar[1:][ir[1:]] / np.pi),
        ref_recalled=recalled[1:][ir[1:]],
        n_method=int(np.count_nonzero(im[1:])),
        n_correct=int(np.count_nonzero(correct[1:][im[1:]])),
        merges=merges, splits=splits,
    )


#: Size classes of equivalent diameter in LR px: [lo, hi), the last open.
SIZE_CLASSES_LR_PX: tuple[tuple[float, float | None], ...] = (
    (0.0, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, None))
#: A class counts for the resolved pore size from this many reference pores.
RESOLVED_MIN_N = 20
#: ... when its recall reaches this.
RESOLVED_MIN_RECALL = 0.8


def recall_by_size(diameter_lr_px: np.ndarray, recalled: np.ndarray) -> list[dict]:
    """``[{min_lr_px, max_lr_px, n, recall}]`` over `SIZE_CLASSES_LR_PX` (recall None if n = 0)."""
    d = np.asarray(diameter_lr_px, dtype=np.float64)
    ok = np.asarray(recalled, dtype=bool)
    out = []
    for lo, hi in SIZE_CLASSES_LR_PX:
        sel = (d >= lo) & (d < (np.inf if hi is None else hi))
        n = int(np.count_nonzero(sel))
        out.append({"min_lr_px": lo, "max_lr_px": hi, "n": n,
                    "recall": float(ok[sel].mean()) if n else None})
    return out


def resolved_pore_size(classes: list[dict]) -> float | None:
    """``min_lr_px`` of the lowest class from which every class with n >= 20 has recall >= 0.8.

    A start counts only with at least one such class from it upward; None where no start
    qualifies (no class with 20 pores, or the largest of them below 0.8).
    """
    for i, c in enumerate(classes):
        counted = [x for x in classes[i:] if x["n"] >= RESOLVED_MIN_N]
        if counted and all(x["recall"] >= RESOLVED_MIN_RECALL for x in counted):
            return c["min_lr_px"]
    return None


def match_summary(matches: list[PoreMatch], scale: int) -> dict:
    """Precision, recall, merges, splits, recall by size and resolved size of many tiles."""
    d = np.concatenate([m.ref_diameter_px for m in matches]) if matches else np.zeros(0)
    ok = np.concatenate([m.ref_recalled for m in matches]) if matches else np.zeros(0, bool)
    n_method = sum(m.n_method for m in matches)
    classes = recall_by_size(d / scale, ok)
    return {
        "pore_precision": sum(m.n_correct for m in matches) / n_method if n_method else None,
        "pore_recall": float(ok.mean()) if ok.size else None,
        "pore_merges": sum(m.merges for m in matches),
        "pore_splits": sum(m.splits for m in matches),
        "pore_recall_by_size": classes,
        "resolved_pore_size_lr_px": resolved_pore_size(classes),
        "n_reference_pores": int(ok.size),
        "n_method_pores": int(n_method),
    }
