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


def test_local_thickness_of_a_strip_is_its_width():
    m = np.zeros((60, 200), bool)
    m[20:31, :] = True  # 11 px wide, running off both side edges
    lt = pores.local_thickness(m)
    centre = lt[20:31, 40:160]
    assert np.median(centre) == pytest.approx(11, abs=1.0)


def test_local_thickness_is_not_inflated_by_the_image_edge():
    # A pore cut by the edge: before, edge replication extended it without bound.
    m = np.zeros((64, 64), bool)
    m[:, :12] = True  # a 12-px band along the left edge, open to three edges
    lt = pores.local_thickness(m)
    assert lt.max() <= 12 + 1e-9
    # The whole image pore: bounded by the image, not infinite.
    full = pores.local_thickness(np.ones((40, 40), bool))
    assert full.max() <= 40


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_local_thickness_exceeds_the_largest_disc_that_fits(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    m = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 3) > 0.05
    lt = pores.local_thickness(m)
    d = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    largest = 2 * d.max() - 1  # diameter of the largest disc inside the pore phase
    assert lt.max() <= largest + 1e-9 and np.all(lt[m] > 0) and np.all(lt[~m] == 0)


@pytest.mark.parametrize("name", ["discs", "strips", "random"])
def test_local_thickness_agrees_with_porespy(data_dir, name):
    """Against porespy 3.2's local thickness of the same masks, stored by
    benchmarks/make_porespy_reference.py (porespy itself is too heavy for the test install).
    Measured: median |difference| 0.11 / 1.0 / 0.86 px, 90th percentile 0.52 / 1.0 / 2.2 px;
    porespy's diameters run about one pixel wider on straight walls."""
    ref = np.load(data_dir / "porespy_local_thickness.npz")
    shape = tuple(ref[f"{name}_shape"])
    m = np.unpackbits(ref[f"{name}_mask"])[: np.prod(shape)].reshape(shape).astype(bool)
    diff = np.abs(pores.local_thickness(m) - 2 * ref[f"{name}_radius"])[m]
    assert np.median(diff) <= 1.0 and np.percentile(diff, 90) <= 2.5


def test_remove_edge_pores_keeps_the_interior_ones():
    m = discs((64, 64), [((32, 32), 6.5), ((0, 10), 5.0)])
    kept = pores.remove_edge_pores(m)
    assert kept[32, 32] and not kept[0, 10] and kept.sum() == discs((64, 64), [((32, 32), 6.5)]).sum()


def test_match_pores_precision_recall_merges_splits():
    ref = discs((100, 100), [((20, 20), 5.5), ((20, 40), 5.5), ((70, 70), 8.5), ((70, 25), 4.5)])
    method = np.zeros_like(ref)
    method[14:27, 14:47] = True  # one blob over the first two: a merge
    method[62:79, 62:69] = True  # the third, in two halves: a split
    method[62:79, 70:79] = True
    method[88:94, 88:94] = True  # a false pore
    # the fourth reference pore is missed
    m = pores.match_pores(method, ref, min_area_px=4)
    assert m.ref_recalled.tolist() == [True, True, True, False]  # raster order: (70, 25) last
    # correct: the two halves; the merging blob is mostly solid between its two discs, and
    # the false pore is no pore at all
    assert m.n_method == 4 and m.n_correct == 2
    assert m.merges == 1 and m.splits == 1
    np.testing.assert_allclose(m.ref_diameter_px, 2 * np.sqrt(ref_areas(ref) / np.pi))
    s = pores.match_summary([m, m], scale=4)
    assert s["pore_precision"] == pytest.approx(0.5) and s["pore_recall"] == pytest.approx(0.75)
    assert s["pore_merges"] == 2 and s["pore_splits"] == 2


def ref_areas(mask):
    from scipy import ndimage

    labels, n = ndimage.label(mask, np.ones((3, 3)))
    return np.bincount(labels.ravel())[1:]


def test_edge_pores_and_tiny_pores_are_not_matched():
    ref = discs((50, 50), [((0, 25), 6.0), ((25, 25), 6.5)])
    ref[40, 5] = True  # one pixel: below min_area_px
    m = pores.match_pores(ref, ref, min_area_px=4)
    assert m.ref_recalled.size == 1 and m.n_method == 1 and m.n_correct == 1


def test_recall_by_size_classes_and_resolved_size():
    d = np.array([0.5, 0.7, 1.2, 1.7, 2.5, 4.0, 6.0])
    ok = np.array([False, True, False, True, True, True, True])
    classes = pores.recall_by_size(d, ok)
    assert [(c["min_lr_px"], c["max_lr_px"]) for c in classes] == [
        (0.0, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, None)]
    assert [c["n"] for c in classes] == [2, 1, 1, 1, 1, 1] and classes[0]["recall"] == 0.5
    assert pores.recall_by_size(np.zeros(0), np.zeros(0, bool))[0]["recall"] is None

    def cl(*rows):
        return [{"min_lr_px": lo, "max_lr_px": None, "n": n, "recall": r} for lo, n, r in rows]

    # from 2 up, every class with n >= 20 reaches 0.8 (the 3-5 class has too few to count)
    assert pores.resolved_pore_size(cl((1, 50, 0.3), (2, 40, 0.85), (3, 5, 0.1), (5, 30, 1.0))) == 2
    # a counted class below 0.8 above the others: no start qualifies from below it
    assert pores.resolved_pore_size(cl((1, 50, 0.9), (2, 40, 0.5), (5, 30, 0.95))) == 5
    assert pores.resolved_pore_size(cl((1, 50, 0.9), (5, 30, 0.5))) is None
    assert pores.resolved_pore_size(cl((1, 5, 1.0))) is None


def test_ks_pvalue_needs_three_values_per_side():
    assert pores.ks_pvalue(np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0])) is None
    assert 0 <= pores.ks_pvalue(np.arange(10.0), np.arange(10.0) + 0.5) <= 1
