"""A model is a folder: ``config.json`` beside safetensors weights.

Loading never unpickles (safetensors only) and every problem (missing file, corrupt
weights, weights that do not fit the architecture in config.json) is a `DleemError`
naming the file. Writes are atomic (temporary file + rename), so a killed process never
leaves a half-written model that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dleem.errors import DleemError, InputError
from dleem.io.atomic import atomic_write, write_json
from dleem.models.config import ModelConfig
from dleem.models.generator import build_generator

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "generator.safetensors"
RAW_WEIGHTS_FILE = "generator_raw.safetensors"


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(module, "module") and isinstance(module.module, nn.Module):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def state_dict_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU float copies of a module's tensors, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(module).state_dict().items()}


def _save_weights(path: Path, module: nn.Module) -> None:
    from safetensors.torch import save_file

    tensors = state_dict_cpu(module)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def save_model(
    model_dir: str | PathLike[str],
    generator: nn.Module,
    config: ModelConfig,
    *,
    raw_generator: nn.Module | None = None,
) -> Path:
    """Write ``generator.safetensors`` (the weights used for inference, usually the EMA),
    optionally ``generator_raw.safetensors``, and ``config.json``, each atomically.

    The config is written last, so a folder with a config has complete weights.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    config.validate()
    _save_weights(model_dir / WEIGHTS_FILE, generator)
    if raw_generator is not None:
        _save_weights(model_dir / RAW_WEIGHTS_FILE, raw_generator)
    write_json(model_dir / CONFIG_FILE, config.to_dict())
    return model_dir


def read_config(model_dir: str | PathLike[str]) -> ModelConfig:
    """Read and validate ``MODEL_DIR/config.json``."""
    path = Path(model_dir) / CONFIG_FILE
    if not Path(model_dir).is_dir():
        raise InputError(model_dir, "model folder not found")
    if not path.is_file():
        raise InputError(path, "missing (not a dleem model folder?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"cannot read JSON: {error}") from None
    try:
        return ModelConfig.from_dict(data)
    except DleemError as error:
        raise InputError(path, str(error)) from None
    except TypeError as error:
        raise InputError(path, f"invalid model config: {error}") from None


def load_weights(module: nn.Module, path: str | PathLike[str]) -> nn.Module:
    """Load safetensors weights into ``module`` (strict); errors name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "missing")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise InputError(path, f"corrupt or unreadable safetensors file ({error})") from None
    target = unwrap(module)
    expected = target.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise InputError(path, f"weights do not match the architecture in config.json ({what})")
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise InputError(
                path,
                f"weights do not match the architecture in config.json ({key}: shape "
                f"{tuple(tensor.shape)} in file, {tuple(expected[key].shape)} expected)",
            )
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(path, f"weights are not all finite ({key} holds NaN or inf)")
    target.load_state_dict(tensors, strict=True)
    return module


@dataclass
class LoadedModel:
    """A generator ready for inference plus the descriptor code that uses it needs.

    Attributes
    ----------
    generator : torch.nn.Module
        Eval-mode module: (N, 1, h, w) normalised -> (N, 1, k*h, k*w) normalised.
    config : ModelConfig
    scale : int
        k.
    halo_lr_px : int
        Receptive-field radius in LR pixels: tiles must overlap by this for the tiled
        result to equal the whole-image result.
    device : torch.device
    """

    generator: nn.Module
    config: ModelConfig
    scale: int
    halo_lr_px: int
    device: torch.device

    def normalize(self, raw: Any) -> np.ndarray:
        """Raw LR grey values (any dtype) -> float32 normalised network input."""
        return self.config.normalization.apply(raw)

    def denormalize(self, x: Any, dtype: Any = None) -> np.ndarray:
        """Normalised network output -> raw grey values in ``dtype`` (default: the
        training LR dtype); integer dtypes are rounded and clipped to their range."""
        return self.config.normalization.invert(x, dtype)


def with_ensemble(model: LoadedModel) -> LoadedModel:
    """The same model averaged over the 8 flips and transposes at inference
    (`dleem.models.ensemble.DihedralEnsemble`); a model that already is one is returned."""
    from dleem.models.ensemble import DihedralEnsemble

    if isinstance(model.generator, DihedralEnsemble):
        return model
    return dataclasses.replace(model, generator=DihedralEnsemble(model.generator))


def load_model(model_dir: str | PathLike[str], device: str | torch.device = "cpu", *, raw: bool = False,
               tta: bool = False) -> LoadedModel:
    """Load a model folder for inference.

    Parameters
    ----------
    model_dir : path
        Folder with ``config.json`` and ``generator.safetensors``.
    device : str or torch.device
        Where the generator lives.
    raw : bool
        Load ``generator_raw.safetensors`` (the non-EMA weights) instead.
    tta : bool
        Test-time ensemble: average the generator over the 8 flips and transposes
        (`with_ensemble`; 8 times the compute).
    """
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    try:
        generator = build_generator(config.arch, config.scale)
    except DleemError as error:
        raise InputError(model_dir / CONFIG_FILE, str(error)) from None
    load_weights(generator, model_dir / (RAW_WEIGHTS_FILE if raw else WEIGHTS_FILE))
    dev = torch.device(device)
    generator = generator.to(dev).eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    halo = max(int(config.receptive_field_lr_px), int(getattr(generator, "receptive_field_lr_px", 0)))
    loaded = LoadedModel(generator=generator, config=config, scale=config.scale, halo_lr_px=halo, device=dev)
    return with_ensemble(loaded) if tta else loaded
