"""Training: aligned crops from the pairs, losses, the schedule, the trainer and `train`.

Names are attached lazily (scikit-image's pattern): ``import dleem.training`` loads no torch.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "data": ["PairData", "load_pairs", "sample_batch"],
        "options": ["TrainOptions"],
        "pipeline": ["TrainResult", "train"],
        "validation": ["ValidationSet", "validation_tiles"],
    },
)
