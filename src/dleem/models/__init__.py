"""Networks and the model folder: the architecture table, a generator, a discriminator,
and ``config.json`` + safetensors.

Names are attached lazily (scikit-image's pattern): ``import dleem.models`` loads no torch;
`ARCHITECTURES`, `PRESETS` and `ModelConfig` stay torch-free.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "arch": ["ARCHITECTURES", "PRESETS", "ArchSpec", "receptive_field_of"],
        "config": ["ModelConfig"],
        "discriminator": ["PatchDiscriminator"],
        "ensemble": ["DihedralEnsemble"],
        "folder": ["LoadedModel", "load_model", "read_config", "save_model", "with_ensemble"],
        "generator": ["DleemGenerator", "build_generator", "measure_receptive_field"],
    },
)
