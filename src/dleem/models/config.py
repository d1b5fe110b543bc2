"""`ModelConfig`: everything inference needs, stored as `MODEL_DIR/config.json`.

The config is the contract between training and upscaling: architecture, scale,
receptive field (tiling halo), intensity normalisation, pixel sizes and the LR blur
measured at registration. Unknown keys are rejected (a typo is an error, not a silent
default, as in CSBDeep's `Config`) and every value is validated on construction.

Normalisation (never per tile)
------------------------------
`dleem.imaging.Normalization`: ``x = (raw / dtype_max - mean) / std`` where ``dtype_max`` is the maximum of the LR
integer dtype (1.0 for float images) and ``mean``/``std`` are the mean and standard
deviation of the **whole** LR image in those dtype-range units (``raw / dtype_max``).
Inference applies exactly the same affine map to any image, so training and
prediction cannot drift and an upscaled mosaic keeps one grey scale.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any

from dleem.errors import DleemError, reject_unknown_keys
from dleem.imaging import Normalization, check_dtype, check_scale, dtype_max
from dleem.models.arch import preset_arch, receptive_field_of

__all__ = ["ModelConfig"]

def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _version() -> str:
    from dleem import __version__

    return __version__


def json_copy(value: Any) -> Any:
    """A deep copy of plain JSON data (dicts and lists copied, scalars shared)."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_copy(v) for v in value]
    return value


def _finite_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DleemError(f"model config: {name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise DleemError(f"model config: {name} must be a finite number > 0, got {value!r}")


@dataclass
class ModelConfig:
    """Hyper-parameters and metadata of a trained generator (``MODEL_DIR/config.json``).

    Parameters
    ----------
    scale : int
        Integer upscaling factor k (2..8): the SR image is exactly k times the LR shape.
    arch : dict
        Generator architecture: ``name`` (see `dleem.models.arch.ARCHITECTURES`)
        plus that architecture's parameters (``width``, ``depth`` for ``"dleem"``).
    receptive_field_lr_px : int
        Receptive-field radius of the generator in LR pixels; tiles overlap by this.
    normalization : Normalization
        The map between LR grey levels and network units (a dict with ``input_dtype``,
        ``dtype_max``, ``mean``, ``std`` is accepted and converted).
    lr_pixel_size_um, hr_pixel_size_um : float or None
        Pixel sizes (micrometres) of the LR training image and of the HR acquisitions.
        The SR output pixel size is ``lr_pixel_size_um / scale``.
    lr_blur_sigma_px : float or None
        Gaussian blur sigma of the LR acquisition in LR pixels, estimated at
        registration; the consistency map degrades SR output with it.
    train_data : dict
        Checksums of the training data (LR and HR SHA-256, manifest).
    training : dict
        Plain-JSON record of how the model was trained (loss, steps, seed, ...).
    dleem_version, created : str
        Provenance.
    """

    scale: int
    arch: dict[str, Any]
    receptive_field_lr_px: int
    normalization: Normalization
    lr_pixel_size_um: float | None = None
    hr_pixel_size_um: float | None = None
    lr_blur_sigma_px: float | None = None
    train_data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = 1
    dleem_version: str = field(default_factory=_version)
    created: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.normalization, Normalization):
            try:
                self.normalization = Normalization.from_dict(self.normalization, "model config")
            except DleemError as error:
                message = str(error)
                raise DleemError(message if message.startswith("model config") else f"model config: {message}") \
                    from None
        self.validate()

    # -- validation --------------------------------------------------------------
    def validate(self) -> None:
        """Raise `DleemError` naming the first invalid value."""
        try:
            check_scale(self.scale)
        except DleemError as error:
            raise DleemError(f"model config: {error}") from None
        if not isinstance(self.arch, dict) or not isinstance(self.arch.get("name"), str):
            raise DleemError("model config: arch must be an object with a string 'name'")
        for key in ("width", "depth"):
            if key in self.arch:
                v = self.arch[key]
                if not isinstance(v, int) or isinstance(v, bool) or v < (1 if key == "width" else 0):
                    raise DleemError(f"model config: arch.{key} must be a positive integer, got {v!r}")
        rf = self.receptive_field_lr_px
        if not isinstance(rf, int) or isinstance(rf, bool) or rf < 0:
            raise DleemError(f"model config: receptive_field_lr_px must be an integer >= 0, got {rf!r}")
        if not isinstance(self.normalization, Normalization):
            raise DleemError("model config: normalization must be a Normalization")
        for name in ("lr_pixel_size_um", "hr_pixel_size_um"):
            _finite_positive(name, getattr(self, name), allow_none=True)
        if self.lr_blur_sigma_px is not None:
            v = self.lr_blur_sigma_px
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise DleemError(f"model config: lr_blur_sigma_px must be a number >= 0, got {v!r}")
        for name in ("train_data", "training"):
            if not isinstance(getattr(self, name), dict):
                raise DleemError(f"model config: {name} must be an object")
        if self.format_version != 1:
            raise DleemError(f"model config: unsupported format_version {self.format_version!r} (this dleem reads 1)")

    # -- (de)serialisation -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (round-trips through `from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["normalization"] = self.normalization.to_dict()
        return json_copy(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys with an error naming the key."""
        if not isinstance(data, dict):
            raise DleemError("model config: expected a JSON object")
        reject_unknown_keys(data, (f.name for f in dataclasses.fields(cls)), "model config")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        for key in required:
            if key not in data:
                raise DleemError(f"model config: missing key '{key}'")
        return cls(**data)

    # -- convenience -------------------------------------------------------------
    @classmethod
    def for_preset(
        cls,
        preset: str = "default",
        *,
        scale: int = 4,
        input_dtype: str = "uint8",
        mean: float = 0.5,
        std: float = 0.25,
        **kwargs: Any,
    ) -> ModelConfig:
        """A config for a named architecture preset; the receptive field follows from it.

        ``mean`` and ``std`` are in dtype-range units (``raw / dtype_max``).
        """
        arch = preset_arch(preset)
        dt = check_dtype(input_dtype, "input_dtype")
        norm = Normalization(dt.name, dtype_max(dt), float(mean), float(std))
        return cls(scale=scale, arch=arch, receptive_field_lr_px=receptive_field_of(arch),
                   normalization=norm, **kwargs)

    @classmethod
    def tiny(cls, scale: int = 4, **kwargs: Any) -> ModelConfig:
        """A very small model for tests (width 8, one residual block)."""
        return cls.for_preset("tiny", scale=scale, **kwargs)
