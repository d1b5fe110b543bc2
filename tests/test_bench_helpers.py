"""Quick checks of the benchmark helpers: anchor generators and the SEM degradation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from anchors import ANCHORS, EDSRBaseline, SRGANGenerator, build_anchor, count_parameters  # noqa: E402
from degrade import SEMDegradation, area_sample, degrade  # noqa: E402


@pytest.mark.parametrize("name", ["srgan", "edsr"])
@pytest.mark.parametrize("scale", [2, 4])
def test_anchor_output_shape(name: str, scale: int) -> None:
    net = build_anchor(name, scale=scale).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 1, 12, 10))
    assert y.shape == (2, 1, 12 * scale, 10 * scale)


def test_anchor_sizes_match_papers() -> None:
    srgan, edsr = SRGANGenerator(), EDSRBaseline()
    # 16 residual blocks, 64 channels; BN only in SRGAN.
    assert len(srgan.body) == 16 and len(edsr.body) == 16
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in srgan.modules()) == 33
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in edsr.modules())
    # Grey versions of the published sizes (SRResNet ~1.5 M, EDSR-baseline x4 ~1.5 M).
    assert 1.4e6 < count_parameters(srgan) < 1.6e6
    assert 1.4e6 < count_parameters(edsr) < 1.6e6
    with pytest.raises(ValueError):
        build_anchor("vdsr")


def test_area_sampling_geometry() -> None:
    """LR pixel i is the mean of fine pixels k*i ... k*i+k-1 (dleem's fine-grid convention)."""
    hr = np.zeros((16, 16))
    hr[4:8, 8:12] = 100.0
    lr = area_sample(hr, 4)
    assert lr.shape == (4, 4)
    assert lr[1, 2] == 100.0 and lr.sum() == 100.0
    with pytest.raises(ValueError):
        area_sample(np.zeros((10, 8)), 4)


def test_beam_blur_keeps_position_and_width() -> None:
    """A point at HR pixel (r, c) lands at LR ((r + 0.5) / k - 0.5) with the probe width."""
    p = SEMDegradation(scale=4, hr_pixel_size_um=0.01, beam_fwhm_um=0.08,
                       electrons_full_scale=None, read_noise_dn=0.0, dtype_max=65535)
    hr = np.zeros((128, 128))
    hr[61, 70] = 6.0e6
    lr = degrade(hr, p, seed=0).astype(float)
    rows, cols = np.indices(lr.shape)
    cy, cx = (lr * rows).sum() / lr.sum(), (lr * cols).sum() / lr.sum()
    assert cy == pytest.approx((61 + 0.5) / 4 - 0.5, abs=0.02)
    assert cx == pytest.approx((70 + 0.5) / 4 - 0.5, abs=0.02)
    # variance in LR px^2 = probe variance + box variance ((k^2 - 1) / 12 per HR px^2) / k^2
    var = (lr * (cols - cx) ** 2).sum() / lr.sum()
    expected = (p.beam_sigma_hr_px**2 + (16 - 1) / 12) / 16
    assert var == pytest.approx(expected, rel=0.03)
    assert p.beam_sigma_hr_px == pytest.approx(0.08 / 2.3548 / 0.01, rel=1e-3)


def test_noise_statistics_and_seed() -> None:
    """Flat field: mean kept, variance = Poisson (v * gain) + read noise^2 + quantisation."""
    p = SEMDegradation(scale=4, beam_fwhm_um=0.05, electrons_full_scale=100.0,
                       read_noise_dn=3.0)
    v = 120.0
    hr = np.full((1024, 1024), v)
    lr = degrade(hr, p, seed=1)
    assert lr.dtype == np.uint8 and lr.shape == (256, 256)
    assert lr.mean() == pytest.approx(v, abs=0.2)
    expected_var = v * 255 / 100 + 3.0**2 + 1 / 12
    assert lr.astype(float).var() == pytest.approx(expected_var, rel=0.03)
    assert np.array_equal(lr, degrade(hr, p, seed=1))
    assert not np.array_equal(lr, degrade(hr, p, seed=2))


@pytest.mark.parametrize("name", ["srgan", "edsr"])
def test_anchor_receptive_field_is_declared(name: str) -> None:
    """The trainer and the tiler trust `receptive_field_lr_px`: it must cover the measured one."""
    from dleem.models import measure_receptive_field

    torch.manual_seed(0)
    net = ANCHORS[name](scale=4, width=16)  # the radius depends on depth, not width
    assert net.receptive_field_lr_px == build_anchor(name).receptive_field_lr_px
    measured = measure_receptive_field(net, 4, size=85)
    # The far edge of the field can vanish in float32 rounding: allow a few px of slack.
    assert measured <= net.receptive_field_lr_px <= measured + 3
