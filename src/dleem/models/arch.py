"""The table of generator architectures: what each is called, how it is built, what it needs.

Torch-free, so the CLI, the model config and the report read it without loading PyTorch.
Each `ArchSpec` is a small descriptor in the spirit of spandrel's architecture
descriptors: its builder is named as ``"module:function"`` and imported only when a
network is built; its receptive field follows from its parameters; its presets name
sizes that fit known budgets, each with the training defaults that suit it.

`ARCHITECTURES` is an explicit table (no registry filled by import side effects); add
another generator by adding an entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from dleem.errors import DleemError
from dleem.imaging import BICUBIC_HALO_LR_PX


@dataclass(frozen=True)
class ArchSpec:
    """One generator architecture.

    Attributes
    ----------
    name : str
        The ``arch.name`` of ``config.json``.
    builder : str
        ``"module:function"``; ``function(scale, **params)`` returns the ``torch.nn.Module``.
    receptive_field : callable
        ``receptive_field(**params)``: the receptive-field radius in LR pixels, the
        overlap tiles need for the tiled result to equal the whole-image result.
    presets : mapping
        Preset name -> architecture parameters.
    training : mapping
        Preset name -> training defaults: LR ``patch`` side (px), ``batch`` per process,
        discriminator ``disc_width`` and ``disc_stages``.
    """

    name: str
    builder: str
    receptive_field: Callable[..., int]
    presets: Mapping[str, Mapping[str, Any]]
    training: Mapping[str, Mapping[str, int]]

    def arch(self, preset: str) -> dict[str, Any]:
        """The ``arch`` object of ``config.json`` for a preset."""
        if preset not in self.presets:
            raise DleemError(f"unknown preset {preset!r} (choose from {', '.join(self.presets)})")
        return {"name": self.name, **self.presets[preset]}

    def build(self, scale: int, **params: Any) -> Any:
        """Import the builder and build the network (a ``torch.nn.Module``)."""
        module, function = self.builder.split(":")
        build = getattr(importlib.import_module(module), function)
        try:
            return build(scale, **params)
        except TypeError as error:
            raise DleemError(f"generator architecture {self.name!r}: bad parameters {params}: {error}") from None

    def receptive_field_of(self, **params: Any) -> int:
        try:
            return int(self.receptive_field(**params))
        except TypeError as error:
            raise DleemError(f"generator architecture {self.name!r}: bad parameters {params}: {error}") from None


def dleem_receptive_field(width: int = 48, depth: int = 8, res_scale: float = 1.0) -> int:
    """The dleem generator's radius: one LR px per 3x3 convolution (head, two per residual
    block, body tail, upsampling conv), and never less than the bicubic skip reads."""
    return max(2 * int(depth) + 3, BICUBIC_HALO_LR_PX)


def _frozen(table: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in table.items()})


#: "default" trains a good model on one GPU in minutes and upscales a 4096^2 LR map on a
#: laptop CPU in minutes; "cpu" trains within the demo's CPU budget; "tiny" is for tests.
DLEEM = ArchSpec(
    name="dleem",
    builder="dleem.models.generator:build_dleem",
    receptive_field=dleem_receptive_field,
    presets=_frozen({
        "default": {"width": 48, "depth": 8},
        "cpu": {"width": 32, "depth": 4},
        "tiny": {"width": 8, "depth": 1},
    }),
    training=_frozen({
        "default": {"patch": 48, "batch": 16, "disc_width": 32, "disc_stages": 3},
        "cpu": {"patch": 24, "batch": 4, "disc_width": 16, "disc_stages": 3},
        "tiny": {"patch": 16, "batch": 4, "disc_width": 8, "disc_stages": 2},
    }),
)

#: Architecture name -> descriptor.
ARCHITECTURES: Mapping[str, ArchSpec] = MappingProxyType({DLEEM.name: DLEEM})

#: The architecture ``dleem train --preset`` sizes.
DEFAULT_ARCH = DLEEM.name

#: Preset names of the default architecture (the choices of ``dleem train --preset``).
PRESETS: tuple[str, ...] = tuple(DLEEM.presets)


def get_arch(name: Any) -> ArchSpec:
    """The descriptor of an architecture name; a `DleemError` lists the known ones."""
    if name not in ARCHITECTURES:
        raise DleemError(f"unknown generator architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def split_arch(arch: Mapping[str, Any]) -> tuple[ArchSpec, dict[str, Any]]:
    """An ``arch`` object (``{"name": ..., **params}``) as (descriptor, parameters)."""
    return get_arch(arch.get("name")), {k: v for k, v in arch.items() if k != "name"}


def preset_arch(preset: str) -> dict[str, Any]:
    """The ``arch`` object of a preset of the default architecture."""
    return ARCHITECTURES[DEFAULT_ARCH].arch(preset)


def preset_training(preset: str) -> dict[str, int]:
    """The training defaults (patch, batch, disc_width, disc_stages) of a preset."""
    spec = ARCHITECTURES[DEFAULT_ARCH]
    spec.arch(preset)  # names the presets when unknown
    return dict(spec.training[preset])


def receptive_field_of(arch: Mapping[str, Any]) -> int:
    """Receptive-field radius in LR pixels of the architecture described by ``arch``."""
    spec, params = split_arch(arch)
    return spec.receptive_field_of(**params)
