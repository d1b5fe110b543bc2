"""Where dleem's layers lie in napari's world (LR grid in µm, axes row, col): no Qt needed."""

from __future__ import annotations

import numpy as np
import pytest

from dleem.napari.geometry import box_corners, hr_affine, sr_origin_um, world_box_to_lr
from dleem.registration.transform import AffineMap


def test_a_known_hr_pixel_lands_where_the_map_puts_it_on_the_lr_grid():
    m = AffineMap(np.array([[0.26, 0.03, 40.2], [-0.02, 0.24, 17.7]]))  # rotation, shear, shift
    px = 0.4
    affine = hr_affine(m, px)
    for x_hr, y_hr in [(0, 0), (511, 3), (17.5, 300.25)]:
        x_lr, y_lr = m.apply_xy(x_hr, y_hr)
        world = affine @ np.array([y_hr, x_hr, 1.0])  # napari data coordinates are (row, col)
        np.testing.assert_allclose(world[:2], [y_lr * px, x_lr * px], atol=1e-12)


def test_without_a_pixel_size_the_world_is_in_lr_pixels():
    m = AffineMap(np.array([[0.25, 0.0, 10.0], [0.0, 0.25, 20.0]]))
    np.testing.assert_allclose(hr_affine(m, None)[:2, 2], [20.0, 10.0])


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_sr_pixel_centres_sit_on_the_fine_grid_of_the_lr_pixels(k):
    px = 0.5
    origin, unit = sr_origin_um(k, px), px / k
    # fine pixels k*i .. k*i+k-1 average to LR pixel i's centre, i * px
    for i in (0, 5):
        centres = origin + unit * np.arange(k * i, k * i + k)
        assert centres.mean() == pytest.approx(i * px)


def test_an_lr_box_round_trips_through_world_corners():
    box = (10, 20, 74, 100)
    px = 0.3
    corners = box_corners(box) * px
    assert world_box_to_lr(corners, px, (512, 512)) == box
    assert world_box_to_lr(corners + 1000.0, px, (512, 512))[2:] == (512, 512)  # clipped
