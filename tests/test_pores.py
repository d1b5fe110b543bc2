"""Pore statistics on known pore sets: discs of known radius, a known porosity, S2 limits."""

from __future__ import annotations

import numpy as np
import pytest

from dleem.evaluation import pores


def discs(shape, centres_radii):
    yy, xx = np.indices(shape)
    m = np.zeros(shape, bool)
    for (cy, cx), r in centres_radii:
        m |= np.hypot(yy - cy, xx - cx) <= r
    return m


def test_equivalent_diameters_of_known_discs_and_edge_rule():
    spec = [((30, 30), 10.5), ((30, 90), 6.5), ((90, 40), 15.5), ((95, 100), 3.5),
            ((0, 60), 8.0)]  # the last one is cut by the top edge
    m = discs((128, 128), spec)
    st = pores.pore_stats(m, pixel_size_um=0.05, connectivity=8, min_area_px=4)
    assert st.count == 4 and st.n_edge == 1
    expect = sorted(2 * r * 0.05 for _, r in spec[:4])
    np.testing.assert_allclose(sorted(st.diameters_um), expect, rtol=0.03)
    assert st.porosity == pytest.approx(m.mean())


def test_min_size_and_connectivity():
    m = np.zeros((20, 20), bool)
    m[5, 5] = m[6, 6] = True  # diagonal neighbours: one pore with 8-, two with 4-connectivity
    m[10:13, 10:13] = True
    assert pores.pore_stats(m, 1.0, connectivity=8, min_area_px=2).count == 2
    assert pores.pore_stats(m, 1.0, connectivity=4, min_area_px=1).count == 3
    assert pores.pore_stats(m, 1.0, connectivity=4, min_area_px=2).count == 1


@pytest.mark.parametrize("radius", [4.5, 8.5, 12.5])
def test_local_thickness_of_a_disc_is_its_diameter(radius):
    m = discs((64, 64), [((32, 32), radius)])
    lt = pores.local_thickness(m)
    inside = lt[m]
    assert np.all(lt[~m] == 0)
    # Every pixel of a single disc is covered by the disc itself: thickness = diameter.
    assert np.median(inside) == pytest.approx(2 * radius, abs=1.0)
    assert np.mean(np.abs(inside - 2 * radius) <= 1.0) > 0.95


def test_local_thickness_separates_two_sizes_independently_of_connectivity():
    # A thin channel joins a small and a large disc: one pore, two thicknesses.
    m = discs((80, 120), [((40, 25), 6.5), ((40, 85), 16.5)])
    m[39:42, 25:85] = True
    lt = pores.local_thickness(m)
    assert lt[40, 25] == pytest.approx(13, abs=1.0)
    assert lt[40, 85] == pytest.approx(33, abs=1.0)
    assert lt[40, 55] == pytest.approx(3, abs=1.0)


def test_two_point_correlation_limits():
    rng = np.random.default_rng(0)
    m = rng.random((128, 128)) < 0.3  # uncorrelated: S2(r>0) = phi^2
    s2 = pores.two_point_correlation(m)
    phi = m.mean()
    assert s2[0] == pytest.approx(phi, abs=1e-9)
    assert np.allclose(s2[2:20], phi**2, atol=0.01)
    d = discs((128, 128), [((64, 64), 20.5)])
    s2d = pores.two_point_correlation(d, r_max_px=60)
    assert s2d[0] == pytest.approx(d.mean())
    assert np.all(np.diff(s2d[:40]) <= 1e-12)  # decreasing while r < diameter


def test_otsu_threshold_splits_two_phases_and_user_threshold_passes():
    rng = np.random.default_rng(1)
    img = np.where(discs((64, 64), [((32, 32), 12)]), 40.0, 180.0) + rng.normal(0, 5, (64, 64))
    t = pores.choose_threshold(img, "otsu")
    assert 40 < t < 180  # anywhere in the gap between the two phases splits them alike
    m = pores.segment(img, t)
    assert np.mean(m == discs((64, 64), [((32, 32), 12)])) > 0.995
    assert pores.choose_threshold(img, 99.0) == 99.0
    with pytest.raises(ValueError):
        pores.choose_threshold(img, "nope")


def test_distribution_distances():
    a = np.array([1.0, 2.0, 3.0])
    d = pores.distribution_distances(a + 0.5, a)
    assert d.wasserstein == pytest.approx(0.5)
    assert d.ks_statistic == pytest.approx(1 / 3)
    same = pores.distribution_distances(a, a)
    assert same.wasserstein == 0 and same.ks_statistic == 0
    assert pores.distribution_distances(np.zeros(0), a).wasserstein is None
