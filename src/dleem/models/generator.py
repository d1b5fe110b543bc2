"""The dleem generator: a residual CNN at LR resolution with one sub-pixel upsampling.

Design (why):
- All convolutions run at LR resolution and a single convolution to k*k channels is
  rearranged by pixel shuffle (Shi et al. 2016, ESPCN) into the k-times finer grid, so
  cost per output pixel falls as 1/k^2: a laptop CPU upscales a 4096^2 LR map in minutes.
- Residual blocks without batch norm (Lim et al. 2017, EDSR): batch norm removes the
  range flexibility that SR needs and couples tiles through batch statistics.
- Global residual over a bicubic upsample of the input: the network learns only the
  detail bicubic misses; the last layer starts small so an untrained model is ~bicubic.
- Every 3x3 convolution widens the receptive field by one LR pixel, so the tiling halo
  is exact: ``2 * depth + 3`` LR pixels (bicubic needs 2).

References
----------
Shi, W. et al. (2016) Real-time single image and video super-resolution using an
efficient sub-pixel convolutional neural network. CVPR.
Lim, B. et al. (2017) Enhanced deep residual networks for single image super-resolution.
CVPRW.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dleem.errors import DleemError
from dleem.imaging import check_scale
from dleem.models.arch import dleem_receptive_field, preset_arch, receptive_field_of, split_arch

__all__ = ["DleemGenerator", "ResidualBlock", "build_dleem", "build_generator", "measure_receptive_field",
           "receptive_field_of"]


class ResidualBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3, added to the input (no batch norm)."""

    def __init__(self, width: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class DleemGenerator(nn.Module):
    """Grayscale residual SR generator for an integer scale 2..8.

    Parameters
    ----------
    scale : int
        Upscaling factor k; input (N, 1, h, w) gives output (N, 1, k*h, k*w).
    width : int
        Feature channels.
    depth : int
        Number of residual blocks.
    res_scale : float
        Multiplier on each block's residual branch (EDSR uses 0.1 for wide networks).

    Input and output are in normalised units (see `dleem.models.config`).
    """

    def __init__(self, scale: int, width: int = 48, depth: int = 8, res_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.width = int(width)
        self.depth = int(depth)
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(width, res_scale) for _ in range(depth)])
        self.body_tail = nn.Conv2d(width, width, 3, padding=1)
        self.upsample = nn.Conv2d(width, scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        with torch.no_grad():  # start close to bicubic: the residual branch begins small
            self.upsample.weight.mul_(0.1)
            self.upsample.bias.zero_()

    @property
    def receptive_field_lr_px(self) -> int:
        """Receptive-field radius in LR pixels: one per 3x3 convolution."""
        return dleem_receptive_field(self.width, self.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        feat = self.head(x)
        feat = feat + self.body_tail(self.blocks(feat))
        return base + self.shuffle(self.upsample(feat))


def build_dleem(scale: int, width: int = 48, depth: int = 8, res_scale: float = 1.0) -> nn.Module:
    """The builder `dleem.models.arch.DLEEM` names."""
    return DleemGenerator(scale, width=width, depth=depth, res_scale=res_scale)


def build_generator(arch: dict[str, Any] | None = None, scale: int = 4, *, preset: str | None = None) -> nn.Module:
    """Build a generator from an ``arch`` dict (as in `ModelConfig.arch`) or a preset name.

    >>> g = build_generator(preset="tiny", scale=4)
    """
    if preset is not None:
        arch = preset_arch(preset)
    if arch is None:
        raise DleemError("build_generator needs arch or preset")
    spec, params = split_arch(arch)
    return spec.build(scale, **params)


@torch.no_grad()
def measure_receptive_field(generator: nn.Module, scale: int, *, size: int = 0, device: str = "cpu") -> int:
    """Measure the receptive-field radius (LR px) of any generator by an impulse test.

    Perturbs the centre pixel of a random input and returns the largest LR distance
    (Chebyshev) at which the output changed. Works for generators whose architecture is
    not in `dleem.models.arch.ARCHITECTURES` (used by the trainer for user-supplied modules).
    """
    was_training = generator.training
    generator.eval()
    n = size or 65
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, n, n, generator=gen).to(device)
    y0 = generator(x)
    x2 = x.clone()
    c = n // 2
    x2[..., c, c] += 1.0
    diff = (generator(x2) - y0).abs()[0, 0].cpu()
    generator.train(was_training)
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    if rows.numel() == 0:
        return 0
    lr_rows, lr_cols = rows // scale, cols // scale
    radius = int(torch.maximum((lr_rows - c).abs().max(), (lr_cols - c).abs().max()))
    if radius >= c - 1:
        raise DleemError(f"receptive field reaches the {n}px probe's border; measure with a larger size")
    return radius
