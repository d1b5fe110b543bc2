"""A convolutional patch discriminator with spectral normalisation.

Spectral normalisation (Miyato et al. 2018) bounds the discriminator's Lipschitz
constant, which keeps adversarial training of a small SR generator stable without
gradient penalties. The output is a map of logits, one per overlapping HR patch
(Isola et al. 2017, PatchGAN), so the adversarial loss judges local texture (pores,
grain edges) rather than global layout; its mean gives a global score.

References
----------
Miyato, T. et al. (2018) Spectral normalization for generative adversarial networks. ICLR.
Isola, P. et al. (2017) Image-to-image translation with conditional adversarial networks. CVPR.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _sn_conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2))


class PatchDiscriminator(nn.Module):
    """(N, 1, H, W) normalised HR patch -> (N, 1, H/2^s, W/2^s) logits (``global_pool`` -> (N, 1)).

    The first convolution already has stride 2 (its 3x3 kernel still sees every pixel),
    which keeps the discriminator cheaper than the generator on a CPU.

    Parameters
    ----------
    width : int
        Channels of the first layer, doubled at each further stride-2 stage (capped at 8x).
    stages : int
        Number of stride-2 convolutions (>= 1); one logit sees ~2^(stages+2) HR px.
    global_pool : bool
        Average the logit map into one score per image.
    """

    def __init__(self, width: int = 32, stages: int = 3, global_pool: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [_sn_conv(1, width, 3, 2), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, stages):
            c_out = width * min(2**i, 8)
            layers += [_sn_conv(c, c_out, 3, 2), nn.LeakyReLU(0.2),
                       _sn_conv(c_out, c_out, 3, 1), nn.LeakyReLU(0.2)]
            c = c_out
        layers.append(_sn_conv(c, 1, 3, 1))
        self.body = nn.Sequential(*layers)
        self.global_pool = global_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.body(x)
        if self.global_pool:
            return logits.mean(dim=(2, 3))
        return logits
