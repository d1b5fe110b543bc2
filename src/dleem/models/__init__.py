"""Networks and the model folder: a generator, a discriminator, and `config.json` + safetensors."""

from dleem.models.config import PRESETS, ModelConfig, dtype_max_of
from dleem.models.discriminator import PatchDiscriminator
from dleem.models.folder import LoadedModel, load_model, read_config, save_model
from dleem.models.generator import (
    ARCHITECTURES,
    DleemGenerator,
    build_generator,
    measure_receptive_field,
    receptive_field_of,
)

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "DleemGenerator",
    "LoadedModel",
    "ModelConfig",
    "PatchDiscriminator",
    "build_generator",
    "dtype_max_of",
    "load_model",
    "measure_receptive_field",
    "read_config",
    "receptive_field_of",
    "save_model",
]
