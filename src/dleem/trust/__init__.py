"""Where the upscaled map can be trusted: array code shared by training and upscaling.

- `noise`: the LR noise model, variance = a + b * signal in LR grey levels (from the
  registration residuals, or robustly from an image alone).
- `blocks`: the block grid (block (i, j) covers LR rows i*B .. (i+1)*B - 1) and the
  per-block statistics: the consistency in noise units and the texture features.
- `calibration`: novelty against the training blocks, the predicted RMSE and its fit
  on held-out blocks.
- `folder`: the model folder's ``trust.json`` and ``trust_features.safetensors``.

Training writes the files (`dleem.training.trust`), upscaling reads them
(`dleem.upscale.trust`), the planner reads the trust map (`dleem.planning`). Names are
attached lazily.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "noise": ["NoiseModel", "estimate_noise_model", "noise_from_residual"],
        "blocks": ["block_shape", "block_stats", "BlockStats"],
        "calibration": ["Calibration", "fit_calibration", "novelty"],
        "folder": ["ModelTrust", "read_model_trust", "write_model_trust"],
    },
)
