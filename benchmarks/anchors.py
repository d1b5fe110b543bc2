"""Two published super-resolution generators, re-implemented as benchmark anchors.

Both map a normalised grey LR tensor (N, 1, h, w) to (N, 1, k*h, k*w), like a dleem
generator, so the same data, loss and evaluation code runs all three.

- `SRGANGenerator`: the SRResNet generator of Ledig et al. 2017 ("Photo-Realistic
  Single Image Super-Resolution Using a Generative Adversarial Network", CVPR,
  arXiv:1609.04802), Fig. 4: 9x9 conv + PReLU, 16 residual blocks (conv-BN-PReLU-conv-BN),
  conv-BN with a skip from the head, one (conv 3x3 -> pixel shuffle x2 -> PReLU) stage
  per factor 2, 9x9 conv out. It is the generator of the original DLE-EM scripts.
  Differences from the paper: one grey channel in and out, and a linear output (the
  paper scales HR to [-1, 1] and some ports add tanh; here targets are normalised by
  the LR statistics and not bounded).
- `EDSRBaseline`: EDSR-baseline of Lim et al. 2017 ("Enhanced Deep Residual Networks
  for Single Image Super-Resolution", CVPRW, arXiv:1707.02921): 3x3 head, 16 residual
  blocks (conv-ReLU-conv, no batch norm, residual scaling 1), 3x3 conv with a global
  skip, pixel-shuffle upsampler (conv 3x3 -> shuffle x2 per factor 2, no activation, as
  in the authors' code), 3x3 conv out. Grey in and out, so no RGB mean shift (inputs are
  already normalised by the whole-image statistics).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ANCHORS", "EDSRBaseline", "SRGANGenerator", "build_anchor", "count_parameters"]


def _factor_stages(scale: int) -> list[int]:
    """Split an integer scale into pixel-shuffle stages: powers of 2, or a single 3."""
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"scale must be 2, 3, 4 or 8, got {scale}")


def _stage_radius(stages: list[int]) -> float:
    """LR px added by one 3x3 conv before each pixel shuffle (the i-th runs on a finer grid)."""
    radius, grid = 0.0, 1
    for f in stages:
        radius += 1.0 / grid
        grid *= f
    return radius


class _SRGANBlock(nn.Module):
    """conv3x3 - BN - PReLU - conv3x3 - BN, plus the identity (Ledig 2017, Fig. 4)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.PReLU(width),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRGANGenerator(nn.Module):
    """SRGAN / SRResNet generator (Ledig et al. 2017), grayscale.

    Parameters
    ----------
    scale : int
        Integer magnification (2, 3, 4 or 8); 4 is two x2 pixel-shuffle stages.
    width : int
        Feature channels (64 in the paper).
    blocks : int
        Residual blocks (16 in the paper).
    """

    def __init__(self, scale: int = 4, width: int = 64, blocks: int = 16) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(1, width, 9, padding=4), nn.PReLU(width))
        self.body = nn.Sequential(*[_SRGANBlock(width) for _ in range(blocks)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        )
        up: list[nn.Module] = []
        for f in _factor_stages(scale):
            up += [nn.Conv2d(width, width * f * f, 3, padding=1), nn.PixelShuffle(f),
                   nn.PReLU(width)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(width, 1, 9, padding=4)
        # Radius in LR px: 9x9 head (4) + 2 per block + body tail (1) + one 3x3 per
        # upsampling stage at its own grid + the 9x9 tail on the fine grid.
        stages = _factor_stages(scale)
        self.receptive_field_lr_px = math.ceil(
            4 + 2 * blocks + 1 + _stage_radius(stages) + 4 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.body_tail(self.body(h))
        return self.tail(self.upsample(h))


class _EDSRBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3, scaled, plus the identity (no batch norm; Lim 2017)."""

    def __init__(self, width: int, res_scale: float) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class EDSRBaseline(nn.Module):
    """EDSR-baseline (Lim et al. 2017), grayscale: 16 blocks, 64 channels, scaling 1.

    Parameters
    ----------
    scale : int
        Integer magnification (2, 3, 4 or 8).
    width : int
        Feature channels (64 for the baseline).
    blocks : int
        Residual blocks (16 for the baseline).
    res_scale : float
        Residual scaling (1 for the baseline; 0.1 only for the large EDSR).
    """

    def __init__(self, scale: int = 4, width: int = 64, blocks: int = 16,
                 res_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.body = nn.Sequential(*[_EDSRBlock(width, res_scale) for _ in range(blocks)])
        self.body_tail = nn.Conv2d(width, width, 3, padding=1)
        up: list[nn.Module] = []
        for f in _factor_stages(scale):
            up += [nn.Conv2d(width, width * f * f, 3, padding=1), nn.PixelShuffle(f)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(width, 1, 3, padding=1)
        stages = _factor_stages(scale)
        self.receptive_field_lr_px = math.ceil(
            1 + 2 * blocks + 1 + _stage_radius(stages) + 1 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.body_tail(self.body(h))
        return self.tail(self.upsample(h))


ANCHORS: dict[str, type[nn.Module]] = {"srgan": SRGANGenerator, "edsr": EDSRBaseline}


def build_anchor(name: str, scale: int = 4) -> nn.Module:
    """Build an anchor generator by name ('srgan' or 'edsr') with the papers' sizes."""
    try:
        return ANCHORS[name](scale=scale)
    except KeyError:
        raise ValueError(f"unknown anchor {name!r}; choose from {sorted(ANCHORS)}") from None


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
