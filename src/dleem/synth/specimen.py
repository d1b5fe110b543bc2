"""A procedural sandstone, defined in physical coordinates (µm) from a seed.

The specimen is a list of grain polygons (and their clay coatings) plus a few random
fields (`dleem.synth.fields`), all in µm. Nothing in it depends on a pixel grid, so it
can be rendered noise-free for any window at any pixel size, rotated or sheared: the
exact truth that the synthetic acquisitions and their evaluation share.

What it contains, with backscattered-electron (BSE) grey levels on a 0-1 signal scale
(BSE yield grows with the mean atomic number; Goldstein et al., *Scanning Electron
Microscopy and X-ray Microanalysis*, 4th ed., 2018, ch. 2):

- detrital grains packed by random sequential addition with log-normal sizes (a silt
  fraction fills part of the pore space), irregular outlines from angular to
  sub-rounded, some elongated; minerals quartz (mid grey), K-feldspar (brighter, with
  perthite lamellae and dissolution pores), plagioclase (twin lamellae), lithic
  fragments (mottled), mica laths (cleavage), heavy minerals (bright: zircon, rutile,
  ilmenite, pyrite);
- clay coatings on grains, pore-filling clay patches with micro-porosity (darker grey),
  patchy carbonate cement (slightly brighter than quartz);
- intergranular pores (epoxy-filled, black) from tens of µm down to sub-µm
  micro-pores, and subtle grain texture;
- slightly soft edges (a Gaussian of `edge_softness_um`, the BSE interaction volume).

Rendering (`render`) area-samples a grid `supersample` times finer than the output
in each direction (polygons exactly, smooth fields at the fine pixel centres), blurs it
there (edge softness and beam), and box-averages back, so an output pixel is the area
integral of the blurred specimen over that pixel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields

import cv2
import numpy as np
from scipy.special import ndtri

from dleem.errors import reject_unknown_keys
from dleem.synth.fields import WaveField, evaluate_on_grid, make_field
from dleem.synth.raster import polygon_coverage

# Mineral codes and their BSE signal (0 = no backscatter, 1 = saturating).
QUARTZ, KFELDSPAR, PLAGIOCLASE, LITHIC, MICA, HEAVY = range(6)
MINERALS = ("quartz", "k-feldspar", "plagioclase", "lithic", "mica", "heavy")
MINERAL_SIGNAL = {QUARTZ: 0.48, KFELDSPAR: 0.585, PLAGIOCLASE: 0.52, LITHIC: 0.45, MICA: 0.60}
PORE_SIGNAL = 0.035
CLAY_SIGNAL = 0.31
CEMENT_SIGNAL = 0.555
N_ORIENT = 4  # discrete orientations for the anisotropic (lamellae / dissolution) fields


@dataclass
class SpecimenParams:
    """Physical description of the procedural sandstone (lengths in µm).

    Attributes
    ----------
    grain_size_um : float
        Median equivalent-circle diameter of the framework grains.
    grain_size_sigma : float
        Log-normal standard deviation of ln(diameter) (sorting: 0.35 well, 0.7 poor).
    silt_fraction : float
        Area of silt grains (median `silt_size_um`) per area, filling pore space.
    silt_size_um : float
        Median silt grain diameter.
    packing : float
        Target area fraction of the grains' hard cores (random sequential addition
        saturates near 0.55-0.65).
    overlap : float
        Allowed interpenetration, as a fraction of the radius (long and concavo-convex
        contacts of a compacted sand).
    roundness : float
        Mean roundness, 0 angular .. 1 rounded.
    elongation : float
        Mean (aspect ratio - 1) of the framework grains.
    fractions : dict
        Mineral proportions by number of grains.
    clay_coat_um : float
        Mean thickness of the clay coating on grains.
    clay_fill : float
        Fraction of the pore space filled by clay patches.
    cement_fill : float
        Fraction of the pore space filled by carbonate cement.
    clay_microporosity : float
        Fraction of clay area that is micro-pore.
    feldspar_dissolution : float
        Mean fraction of a feldspar grain dissolved into secondary pores.
    fractures : float
        Probability that a large quartz or feldspar grain has open cracks.
    framboids : float
        Pyrite framboids (clusters, 4-12 µm across, of 0.45-0.9 µm bright microcrystals) per mm² of pore
        space and clay: sub-pixel detail in the LR map, resolved in the HR regions.
    texture : float
        Multiplier of the grain-texture amplitudes (0: flat grains).
    edge_softness_um : float
        Sigma of the Gaussian that softens every edge (BSE interaction volume).
    supersample : int
        Point samples per output pixel along each axis when rendering (area integration);
        0 (default) chooses 2-4 from the blur (`auto_supersample`). Used only where the
        caller of `render` gives none: `dleem.synth.generate` always passes
        ``SynthParams.lr_supersample`` / ``hr_supersample``, so set those there.
    """

    grain_size_um: float = 60.0
    grain_size_sigma: float = 0.5
    silt_fraction: float = 0.015
    silt_size_um: float = 9.0
    packing: float = 0.64
    overlap: float = 0.10
    roundness: float = 0.3
    elongation: float = 0.3
    fractions: dict = field(
        default_factory=lambda: {
            "quartz": 0.70,
            "k-feldspar": 0.11,
            "plagioclase": 0.07,
            "lithic": 0.06,
            "mica": 0.03,
            "heavy": 0.03,
        }
    )
    clay_coat_um: float = 1.2
    clay_fill: float = 0.16
    cement_fill: float = 0.10
    clay_microporosity: float = 0.22
    feldspar_dissolution: float = 0.06
    fractures: float = 0.15
    framboids: float = 6.0
    texture: float = 1.0
    edge_softness_um: float = 0.05
    supersample: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpecimenParams:
        reject_unknown_keys(data, (f.name for f in fields(cls)), "specimen parameters")
        return cls(**data)


@dataclass
class Specimen:
    """Grains (polygons in µm) and random fields: everything needed to render."""

    params: SpecimenParams
    seed: int
    extent_um: tuple[float, float, float, float]  # x0, y0, x1, y1
    polys: list[np.ndarray]  # grain outlines (n_i, 2) in µm
    coats: list[np.ndarray]  # clay-coating outlines
    centre: np.ndarray  # (n, 2)
    bound: np.ndarray  # (n,) radius of a circle around the grain and its coat
    mineral: np.ndarray  # (n,) int
    signal: np.ndarray  # (n,) base BSE signal
    texture: np.ndarray  # (n,) texture amplitude
    orient: np.ndarray  # (n,) index of the anisotropic field
    dissolve: np.ndarray  # (n,) threshold (in field sigmas) for dissolution pores
    cracks: list[list[np.ndarray] | None]  # thin crack polygons (µm) per grain
    fields: dict[str, WaveField]

    @property
    def n_grains(self) -> int:
        return len(self.polys)


# --------------------------------------------------------------------------- building


def build_specimen(
    params: SpecimenParams, seed: int, extent_um: tuple[float, float, float, float]
) -> Specimen:
    """Build the specimen for `seed` covering `extent_um` = (x0, y0, x1, y1) in µm.

    Deterministic: the same arguments give the same specimen (cached).
    """
    extent = tuple(float(v) for v in extent_um)
    key = (int(seed), extent, repr(sorted(params.to_dict().items())))
    spec = _CACHE.get(key)
    if spec is None:
        spec = _build(SpecimenParams.from_dict(params.to_dict()), int(seed), extent)
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = spec
    return spec


_CACHE: dict[tuple, Specimen] = {}


def _build(params: SpecimenParams, seed: int, extent: tuple[float, float, float, float]) -> Specimen:
    x0, y0, x1, y1 = extent
    rng = np.random.default_rng([int(seed), 7301])
    centres, radii = _pack(rng, params, extent)
    n = len(radii)
    names = list(params.fractions)
    probs = np.array([params.fractions[k] for k in names], dtype=float)
    probs = probs / probs.sum()
    codes = np.array([MINERALS.index(k) for k in names])
    median_r = params.grain_size_um / 2
    mineral = codes[rng.choice(len(codes), size=n, p=probs)]
    # Heavy minerals are small (hydraulic equivalence); large grains rarely heavy.
    small = radii < 0.6 * median_r
    heavy_p = params.fractions.get("heavy", 0.0)
    mineral[(mineral == HEAVY) & ~small] = QUARTZ
    mineral[small & (mineral == QUARTZ) & (rng.random(n) < 1.5 * heavy_p)] = HEAVY
    silt = radii < 0.25 * median_r
    mineral[silt & np.isin(mineral, [HEAVY, MICA, LITHIC])] = QUARTZ
    mineral[silt & (rng.random(n) < 0.03)] = HEAVY
    # Mica flakes are thin and rarely as large as the framework grains.
    mineral[(mineral == MICA) & (radii > 0.9 * median_r)] = QUARTZ

    signal = np.empty(n)
    texture = np.empty(n)
    for code, base in MINERAL_SIGNAL.items():
        sel = mineral == code
        signal[sel] = base + rng.normal(0, 0.012, sel.sum())
    sel = mineral == LITHIC
    signal[sel] = rng.uniform(0.38, 0.52, sel.sum())
    sel = mineral == HEAVY
    signal[sel] = rng.uniform(0.78, 0.93, sel.sum())
    tex_by_mineral = {QUARTZ: 0.008, KFELDSPAR: 0.014, PLAGIOCLASE: 0.012, LITHIC: 0.045,
                      MICA: 0.02, HEAVY: 0.015}
    for code, amp in tex_by_mineral.items():
        texture[mineral == code] = amp * params.texture
    orient = rng.integers(0, N_ORIENT, n)
    # Dissolution threshold in sigmas of a unit Gaussian field: P(F > t) = fraction.
    # Most feldspars are slightly dissolved, a few are honeycombed.
    frac = params.feldspar_dissolution * rng.lognormal(-0.5, 1.0, n)
    frac = np.clip(frac, 1e-4, 0.45)
    dissolve = np.where(np.isin(mineral, [KFELDSPAR, PLAGIOCLASE]), -ndtri(frac), np.inf)

    polys: list[np.ndarray] = []
    coats: list[np.ndarray] = []
    bound = np.empty(n)
    for i in range(n):
        poly, coat = _grain_outline(rng, params, centres[i], radii[i], int(mineral[i]), orient[i])
        polys.append(poly)
        coats.append(coat)
        bound[i] = np.max(np.hypot(*(coat - centres[i]).T)) + 1e-6
    cracks = [
        _cracks(rng, centres[i], radii[i])
        if mineral[i] in (QUARTZ, KFELDSPAR) and radii[i] > 0.5 * median_r
        and rng.random() < params.fractures
        else None
        for i in range(n)
    ]
    # Paint order (painter's algorithm makes the contacts): silt first, so that a
    # framework grain overlapping a silt grain covers it; framework grains at random.
    order = np.concatenate([rng.permutation(np.flatnonzero(silt)),
                            rng.permutation(np.flatnonzero(~silt))])
    fields_ = _make_fields(np.random.default_rng([int(seed), 7302]), params)
    # Pyrite framboids (clusters of sub-µm bright spheres) in the pore space, painted last.
    f_c, f_r = _framboids(np.random.default_rng([int(seed), 7303]), params, extent,
                          centres, radii)
    f_polys = [c + r * _UNIT12 for c, r in zip(f_c, f_r, strict=True)]
    nf = len(f_polys)
    return Specimen(
        params=params,
        seed=int(seed),
        extent_um=(x0, y0, x1, y1),
        polys=[polys[i] for i in order] + f_polys,
        coats=[coats[i] for i in order] + f_polys,
        centre=np.concatenate([centres[order], f_c.reshape(-1, 2)]),
        bound=np.concatenate([bound[order], f_r * 1.01]),
        mineral=np.concatenate([mineral[order], np.full(nf, HEAVY)]),
        signal=np.concatenate([signal[order], np.random.default_rng([int(seed), 7304]).uniform(
            0.86, 0.94, nf)]),
        texture=np.concatenate([texture[order], np.zeros(nf)]),
        orient=np.concatenate([orient[order], np.zeros(nf, int)]),
        dissolve=np.concatenate([dissolve[order], np.full(nf, np.inf)]),
        cracks=[cracks[i] for i in order] + [None] * nf,
        fields=fields_,
    )


_UNIT12 = np.stack([np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False))], 1)


def _framboids(
    rng: np.random.Generator,
    p: SpecimenParams,
    extent: tuple[float, float, float, float],
    centres: np.ndarray,
    radii: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and radii (µm) of the microcrystals of pyrite framboids in the pores."""
    x0, y0, x1, y1 = extent
    n = rng.poisson(p.framboids * (x1 - x0) * (y1 - y0) * 1e-6)
    out_c: list[np.ndarray] = []
    out_r: list[np.ndarray] = []
    for _ in range(n):
        big = rng.uniform(2.0, 6.0)
        for _ in range(50):
            c = rng.uniform([x0, y0], [x1, y1])
            if np.all(np.hypot(*(centres - c).T) > radii + big):
                break
        else:
            continue
        k = int(np.clip((big / 0.45) ** 2 * 0.55, 6, 160))
        rr = big * np.sqrt(rng.random(k))
        th = rng.uniform(0, 2 * np.pi, k)
        out_c.append(c + np.stack([rr * np.cos(th), rr * np.sin(th)], 1))
        out_r.append(rng.uniform(0.22, 0.45, k))
    if not out_c:
        return np.zeros((0, 2)), np.zeros(0)
    return np.concatenate(out_c), np.concatenate(out_r)


def _make_fields(rng: np.random.Generator, p: SpecimenParams) -> dict[str, WaveField]:
    g = p.grain_size_um
    f = {
        "clay": make_field(rng, (0.15 * g, 0.8 * g), 48, slope=0.5),
        "cement": make_field(rng, (0.3 * g, 1.5 * g), 48, slope=0.5),
        "micro": make_field(rng, (1.2, 4.0), 96, slope=0.4),
        "tex": make_field(rng, (1.0, 12.0), 48, slope=1.0),
        "mottle": make_field(rng, (1.5, 8.0), 96, slope=0.5),
    }
    for o in range(N_ORIENT):
        d = np.pi * o / N_ORIENT + rng.uniform(0, np.pi / N_ORIENT)
        f[f"lam{o}"] = make_field(rng, (1.2, 3.0), 48, slope=0.0, direction=d, spread=0.08)
        f[f"dis{o}"] = make_field(rng, (2.0, 10.0), 64, slope=0.7, direction=d, spread=np.pi,
                                  stretch=3.0)
    return f


def _pack(
    rng: np.random.Generator, p: SpecimenParams, extent: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Random sequential addition of disks, largest first, guided by a distance map.

    Returns centres (n, 2) and equivalent radii (n,) in µm.
    """
    x0, y0, x1, y1 = extent
    area = (x1 - x0) * (y1 - y0)
    med = p.grain_size_um / 2
    core = 1.0 - p.overlap
    # Draw framework radii until their core area reaches the target packing.
    mean_area = np.pi * (med * core) ** 2 * np.exp(2 * p.grain_size_sigma**2)
    n_main = int(1.3 * p.packing * area / mean_area) + 10
    r_main = med * np.exp(rng.normal(0, p.grain_size_sigma, n_main))
    r_main = np.clip(r_main, 0.3 * med, 3.5 * med)
    cum = np.cumsum(np.pi * (r_main * core) ** 2)
    r_main = r_main[: int(np.searchsorted(cum, p.packing * area)) + 1]
    smed = p.silt_size_um / 2
    n_silt = int(p.silt_fraction * area / (np.pi * smed**2 * np.exp(2 * 0.35**2)))
    r_silt = np.clip(smed * np.exp(rng.normal(0, 0.35, n_silt)), 0.4 * smed, 2.5 * smed)
    radii = np.sort(np.concatenate([r_main, r_silt]))[::-1]

    cell = max(min(med / 10.0, 4.0), 0.25)
    nx = int(math.ceil((x1 - x0) / cell))
    ny = int(math.ceil((y1 - y0) / cell))
    occ = np.zeros((ny, nx), np.uint8)
    placed_c: list[np.ndarray] = []
    placed_r: list[float] = []
    batch = 64
    i = 0
    while i < len(radii):
        chunk = radii[i : i + batch]
        i += batch
        free = (occ == 0).astype(np.uint8)
        dt = cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).ravel() * cell
        cand = np.flatnonzero(dt >= chunk[-1] * core)
        if cand.size == 0:
            continue
        recent_c = np.zeros((0, 2))
        recent_r = np.zeros(0)
        for r in chunk:
            need = r * core
            for _ in range(40):
                j = int(cand[rng.integers(0, cand.size)])
                if dt[j] < need:
                    continue
                cy, cx = divmod(j, nx)
                c = np.array([x0 + (cx + rng.random()) * cell, y0 + (cy + rng.random()) * cell])
                if recent_r.size:
                    d = np.hypot(*(recent_c - c).T)
                    if np.any(d < (recent_r + r) * core):
                        continue
                placed_c.append(c)
                placed_r.append(float(r))
                recent_c = np.vstack([recent_c, c])
                recent_r = np.append(recent_r, r)
                cv2.circle(
                    occ,
                    (int(round((c[0] - x0) / cell - 0.5)), int(round((c[1] - y0) / cell - 0.5))),
                    max(int(round(need / cell)), 1),
                    1,
                    -1,
                )
                break
    return np.array(placed_c).reshape(-1, 2), np.array(placed_r)


def _grain_outline(
    rng: np.random.Generator, p: SpecimenParams, c: np.ndarray, r: float, mineral: int, orient: int
) -> tuple[np.ndarray, np.ndarray]:
    """An irregular grain outline of equivalent radius `r` and its clay coating (µm)."""
    nv = 24 if r < 6 else (48 if r < 20 else 96)
    theta = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    # Smooth part: low harmonics with decaying amplitudes, plus fine boundary roughness.
    rad = 1.0 + _harmonics(rng, theta, np.arange(2, 9), 0.09, 1.3)
    rough = _harmonics(rng, theta, np.arange(9, max(nv // 3, 9)), 0.25, 1.6)
    # Angular part: a polygon with few facets (straight edges).
    m = int(rng.integers(6, 15)) if mineral != HEAVY else int(rng.integers(5, 8))
    # Jittered even spacing keeps every gap < pi, so the origin stays inside.
    ta = (np.arange(m) + rng.uniform(-0.35, 0.35, m)) * (2 * np.pi / m) + rng.uniform(0, 2 * np.pi)
    ra = rng.uniform(0.85, 1.12, m)
    va = np.stack([ra * np.cos(ta), ra * np.sin(ta)], 1)
    ang = _polygon_radius(va, theta)
    rho = float(np.clip(rng.beta(2.0, 2.0) * 2 * p.roundness, 0, 1))
    if mineral == HEAVY:
        rho *= 0.2
    if r < 0.125 * p.grain_size_um:  # silt is angular
        rho *= 0.4
    rad = rho * rad + (1 - rho) * ang + rough
    pts = np.stack([rad * np.cos(theta), rad * np.sin(theta)], 1)
    e = rng.gamma(2.0, p.elongation / 2.0)
    if mineral == MICA:
        e = rng.uniform(3.0, 6.0)
    elif mineral == HEAVY:
        e = rng.uniform(0.2, 1.5)
    sx, sy = math.sqrt(1 + e), 1 / math.sqrt(1 + e)
    phi = rng.uniform(0, np.pi)
    if mineral in (KFELDSPAR, PLAGIOCLASE, MICA):
        # Cleavage / lamellae run along the long axis of the grain.
        phi = np.pi * orient / N_ORIENT + np.pi / 2
    rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    pts = pts * np.array([sx, sy]) @ rot.T
    area = 0.5 * abs(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
    pts *= r / math.sqrt(area / np.pi)
    poly = pts + c
    # Clay coating: patchy thickness, thinner on heavy minerals and micas.
    t = p.clay_coat_um * (1.0 + _harmonics(rng, theta, np.arange(1, 5), 0.7, 1.0))
    t = np.clip(t, 0, 3 * p.clay_coat_um)
    if mineral in (HEAVY, MICA) or r < 0.15 * p.grain_size_um:
        t *= 0.3
    dist = np.hypot(*pts.T)
    coat = c + pts * ((dist + t) / np.maximum(dist, 1e-9))[:, None]
    return poly, coat


def _cracks(rng: np.random.Generator, c: np.ndarray, r: float) -> list[np.ndarray]:
    """One to three thin, slightly jagged crack polygons crossing a grain (µm)."""
    out = []
    for _ in range(int(rng.integers(1, 4))):
        phi = rng.uniform(0, np.pi)
        d = np.array([np.cos(phi), np.sin(phi)])
        nrm = np.array([-d[1], d[0]])
        start = c + nrm * rng.uniform(-0.6, 0.6) * r
        n = 12
        s = np.linspace(-1.3 * r, 1.3 * r, n)
        wob = np.cumsum(rng.normal(0, 0.06 * r, n))
        wob -= np.linspace(wob[0], wob[-1], n)
        mid = start + s[:, None] * d + wob[:, None] * nrm
        w = rng.uniform(0.15, 0.6) * np.sin(np.linspace(0.2, np.pi - 0.2, n)) + 0.05
        out.append(np.concatenate([mid + w[:, None] * nrm, (mid - w[:, None] * nrm)[::-1]]))
    return out


def _harmonics(
    rng: np.random.Generator, theta: np.ndarray, k: np.ndarray, amp: float, decay: float
) -> np.ndarray:
    """Random Fourier series sum_k N(0, amp k^-decay) cos(k theta + phi_k)."""
    if k.size == 0:
        return np.zeros_like(theta)
    a = rng.normal(0, amp * k.astype(float) ** -decay)
    ph = rng.uniform(0, 2 * np.pi, k.size)
    return a @ np.cos(np.outer(k, theta) + ph[:, None])


def _polygon_radius(vertices: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Radius at angles `theta` of a star-shaped polygon around the origin."""
    a = vertices[:, None, :]  # (m, 1, 2) edge starts
    e = (np.roll(vertices, -1, axis=0) - vertices)[:, None, :]  # (m, 1, 2) edge vectors
    d = np.stack([np.cos(theta), np.sin(theta)], 1)[None]  # (1, n, 2)
    # Solve s d = a + u e for s (along the ray) and u (along the edge).
    det = -d[..., 0] * e[..., 1] + d[..., 1] * e[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (-a[..., 0] * e[..., 1] + a[..., 1] * e[..., 0]) / det
        u = (d[..., 0] * a[..., 1] - d[..., 1] * a[..., 0]) / det
    ok = (u >= -1e-9) & (u <= 1 + 1e-9) & (s > 0)
    s = np.where(ok, s, np.inf).min(axis=0)
    return np.where(np.isfinite(s), s, 1.0)


# --------------------------------------------------------------------------- rendering


def render(
    spec: Specimen,
    pix_to_phys: np.ndarray,
    shape: tuple[int, int],
    *,
    blur_sigma_px: float = 0.0,
    supersample: int | None = None,
    tile: int | None = None,
    threads: int | None = None,
    on_tile: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Render the noise-free BSE signal (0-1) of `spec` on a pixel grid.

    Parameters
    ----------
    spec : Specimen
    pix_to_phys : (2, 3) array
        Affine map from output pixel coordinates (x = column, y = row, pixel centres on
        integers) to physical coordinates (µm). Any rotation, shear, scale.
    shape : (rows, cols)
    blur_sigma_px : float
        Gaussian beam-spot sigma in output pixels (on top of the specimen's own edge
        softness, which is in µm).
    supersample : int, optional
        Point samples per output pixel along each axis (0 or None: the specimen's
        `supersample`, else chosen from the blur by `auto_supersample`).
    tile : int, optional
        Output pixels per tile side (default: fine tiles of about 2048 px).
    threads : int, optional
        Worker threads over tiles (default: the CPU count, at most 4).
    on_tile : callable, optional
        Called with the number of output pixels after each tile (progress display).

    Returns
    -------
    float32 array of `shape`: each pixel is the area average over the pixel of the
    specimen convolved with the edge softness and the beam.
    """
    m = np.asarray(pix_to_phys, dtype=np.float64).reshape(2, 3)
    rows, cols = (int(v) for v in shape)
    p_out = math.sqrt(abs(np.linalg.det(m[:, :2])))
    sigma = math.sqrt(blur_sigma_px**2 + (spec.params.edge_softness_um / p_out) ** 2)
    s = int(supersample or spec.params.supersample or auto_supersample(sigma))
    halo = int(math.ceil(4 * sigma)) + 1 if sigma > 0 else 0
    tile = int(tile or max(256, 2048 // s))  # fine tiles up to ~2048 px: fewer grain repeats
    out = np.empty((rows, cols), np.float32)
    boxes = [(r, c, min(r + tile, rows), min(c + tile, cols))
             for r in range(0, rows, tile) for c in range(0, cols, tile)]

    def work(box: tuple[int, int, int, int]) -> None:
        r0, c0, r1, c1 = box
        out[r0:r1, c0:c1] = _render_tile(spec, m, (r0 - halo, c0 - halo, r1 + halo, c1 + halo),
                                         s, sigma)[halo * s or None: (-halo * s) or None,
                                                   halo * s or None: (-halo * s) or None].reshape(
            r1 - r0, s, c1 - c0, s).mean(axis=(1, 3))
        if on_tile is not None:
            on_tile((r1 - r0) * (c1 - c0))

    n_threads = threads or min(os.cpu_count() or 1, 4)
    if n_threads > 1 and len(boxes) > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(work, boxes))
    else:
        for b in boxes:
            work(b)
    return out


def auto_supersample(sigma_px: float) -> int:
    """Samples per pixel per axis: enough that the blur spans >= 1.6 fine pixels (2..4)."""
    return int(min(max(math.ceil(1.6 / max(sigma_px, 1e-3)), 2), 4))


def _render_tile(
    spec: Specimen, m: np.ndarray, box: tuple[int, int, int, int], s: int, sigma: float
) -> np.ndarray:
    """Area-sampled, blurred signal on the fine grid of output box (r0, c0, r1, c1).

    Layers are composited in painter's order with their pixel coverage (`alpha`):
    the pore-space phases (epoxy, clay patches, cement; their smooth-field boundaries
    anti-aliased with a one-pixel ramp), then grain by grain its clay coat and the grain
    itself (exact area coverage, `polygon_coverage`). A later grain's coat covers the
    rim of an earlier one, leaving a clay film along the contact.
    """
    r0, c0, r1, c1 = box
    fr, fc = (r1 - r0) * s, (c1 - c0) * s
    shape = (fr, fc)
    # Fine pixel j (per axis) has output coordinate (j + 0.5)/s - 0.5 + start.
    a2 = m[:, :2]
    off = np.array([c0 + 0.5 / s - 0.5, r0 + 0.5 / s - 0.5])
    fine = np.concatenate([a2 / s, (a2 @ off + m[:, 2])[:, None]], axis=1)
    inv = np.linalg.inv(np.vstack([fine, [0, 0, 1]]))[:2]
    corners = np.array([[0, 0, 1], [fc - 1, 0, 1], [0, fr - 1, 1], [fc - 1, fr - 1, 1]], float)
    phys = corners @ fine.T
    lo = phys.min(0) - 1.0
    hi = phys.max(0) + 1.0
    near = np.all(spec.centre + spec.bound[:, None] >= lo, axis=1) & np.all(
        spec.centre - spec.bound[:, None] <= hi, axis=1
    )
    idx = np.flatnonzero(near)
    to_pix = inv[:, :2].T
    to_pix_t = inv[:, 2]
    f = spec.fields
    p = spec.params

    def fld(name: str, sub: tuple[int, int, int, int] | None = None) -> np.ndarray:
        if sub is None:
            return evaluate_on_grid(f[name], fine, shape)
        y0, x0, y1, x1 = sub
        g = fine.copy()
        g[:, 2] = fine[:, :2] @ [x0, y0] + fine[:, 2]
        return evaluate_on_grid(f[name], g, (y1 - y0, x1 - x0))

    # Pore space: epoxy, carbonate cement, clay patches (micro-porous clay).
    micro = fld("micro")
    clay_sig = CLAY_SIGNAL - 0.03 * p.texture * micro
    clay_sig += _soft_step(micro, _thr(p.clay_microporosity)) * (PORE_SIGNAL - clay_sig)
    sig = np.full(shape, PORE_SIGNAL, np.float32)
    sig += _soft_step(fld("cement"), _thr(p.cement_fill)) * (CEMENT_SIGNAL - PORE_SIGNAL)
    sig += _soft_step(fld("clay"), _thr(p.clay_fill)) * (clay_sig - sig)
    if not idx.size:
        return _blur(sig, sigma * s)
    tex = fld("tex")

    for i in idx:
        coat = polygon_coverage(spec.coats[i] @ to_pix + to_pix_t, shape)
        grain = polygon_coverage(spec.polys[i] @ to_pix + to_pix_t, shape)
        if coat is None:
            continue  # the grain lies inside its coat
        y0, x0, ac = coat
        y1, x1 = y0 + ac.shape[0], x0 + ac.shape[1]
        # The grain's coverage on the coat's box: the coat shows on (coat - grain), exactly,
        # not on coat * (1 - grain) as plain alpha compositing would have it.
        ag = np.zeros_like(ac)
        if grain is not None:
            gy0, gx0, a = grain
            gy1, gx1 = gy0 + a.shape[0], gx0 + a.shape[1]
            ag[gy0 - y0 : gy1 - y0, gx0 - x0 : gx1 - x0] = a
            g = np.float32(spec.signal[i]) + np.float32(spec.texture[i]) * tex[gy0:gy1, gx0:gx1]
            _grain_structure(spec, i, g, (gy0, gx0, gy1, gx1), fld, to_pix, to_pix_t)
        view = sig[y0:y1, x0:x1]
        ring = np.clip(ac - ag, 0.0, 1.0)
        view *= 1.0 - np.maximum(ac, ag)
        view += ring * clay_sig[y0:y1, x0:x1]
        if grain is not None:
            view[gy0 - y0 : gy1 - y0, gx0 - x0 : gx1 - x0] += a * g
    return _blur(sig, sigma * s)


def _grain_structure(
    spec: Specimen,
    i: int,
    g: np.ndarray,
    sub: tuple[int, int, int, int],
    fld: Callable[..., np.ndarray],
    to_pix: np.ndarray,
    to_pix_t: np.ndarray,
) -> None:
    """Add grain `i`'s own structure (lamellae, dissolution pores, cracks) to `g` in place."""
    p = spec.params
    mineral = int(spec.mineral[i])
    o = int(spec.orient[i])
    if mineral == LITHIC:
        g += 0.05 * p.texture * np.tanh(2 * fld("mottle", sub))
    elif mineral == MICA:
        g -= 0.08 * p.texture * _soft_step(fld(f"lam{o}", sub), 1.4)
    elif mineral in (KFELDSPAR, PLAGIOCLASE):
        lam = fld(f"lam{o}", sub)
        if mineral == KFELDSPAR:
            g += 0.035 * p.texture * _soft_step(lam, 0.9)
        else:
            g += 0.012 * p.texture * (2 * _soft_step(lam, 0.0) - 1)
        if np.isfinite(spec.dissolve[i]):
            g += _soft_step(fld(f"dis{o}", sub), float(spec.dissolve[i])) * (PORE_SIGNAL - g)
    if spec.cracks[i] is not None:
        y0, x0, y1, x1 = sub
        for c in spec.cracks[i]:
            cov = polygon_coverage(c @ to_pix + to_pix_t - [x0, y0], g.shape)
            if cov is not None:
                cy, cx, a = cov
                view = g[cy : cy + a.shape[0], cx : cx + a.shape[1]]
                view += a * (PORE_SIGNAL - view)


def _soft_step(field: np.ndarray, threshold: float) -> np.ndarray:
    """Coverage of {field > threshold}: a ramp one pixel wide across the boundary.

    The field is smooth on the pixel scale, so its boundary is locally straight and the
    ramp (distance to the boundary in pixels = (field - threshold) / |grad field|) gives
    an unbiased estimate of each pixel's covered fraction.
    """
    if min(field.shape) < 2:
        return (field > threshold).astype(np.float32)
    f = np.ascontiguousarray(field, dtype=np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    grad = cv2.magnitude(gx, gy)
    grad += np.float32(1e-6)
    out = f - np.float32(threshold)
    out /= grad
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _thr(fraction: float) -> float:
    """Threshold on a unit Gaussian field exceeded over `fraction` of the area."""
    return float(-ndtri(min(max(fraction, 1e-9), 1 - 1e-9)))


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
