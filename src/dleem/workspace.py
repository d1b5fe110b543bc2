"""The workspace: one folder that carries the work from step to step, and its typed records.

`Workspace(path)` owns every path of the folder and reads, validates and atomically
writes its records. The stages exchange these records, never dicts with string keys::

    WORKSPACE/registration.json        RegistrationRecord   dleem register
    WORKSPACE/manifest.json            WorkspaceManifest    every step adds itself under steps
    WORKSPACE/qc/                      QC figures
    WORKSPACE/pairs/manifest.json      PairsManifest        the training pairs
    WORKSPACE/upscale/SR.ome.tif, upscale.json (UpscaleRecord), consistency.tif, trust.tif
    WORKSPACE/crossval/crossval.json    CrossvalRecord       dleem crossval (+ one model per fold)
    WORKSPACE/plan/plan.json, report/

Every record is a versioned dataclass with ``from_dict`` / ``to_dict``. Reading rejects
unknown keys and missing ones, and every error names the file and the key, so a typo or
a file from another tool is a clear one-line error, not a silent default. Maps travel as
`AffineMap` (``to_list`` / ``from_list`` in JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dleem.errors import DleemError, InputError
from dleem.io.atomic import write_json
from dleem.registration.transform import AffineMap

Box = tuple[int, int, int, int]  # (row0, col0, row1, col1), half-open
SPLIT_NAMES = ("train", "val", "test")

R = TypeVar("R")


def jsonable(value: Any) -> Any:
    """NumPy scalars and arrays, tuples, AffineMaps and non-finite floats made JSON-safe."""
    if isinstance(value, AffineMap):
        return value.to_list()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _version() -> str:
    from dleem import __version__

    return __version__


# ----------------------------------------------------------------------------- record plumbing


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _build(cls: type[R], data: Any, where: str, convert: Mapping[str, Any] | None = None) -> R:
    """A dataclass ``cls`` from a JSON object: unknown and missing keys are errors naming
    ``where`` (the file, and the entry within it); ``convert`` maps a key to its parser."""
    if not isinstance(data, Mapping):
        raise DleemError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = _fields(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise DleemError(f"{where}: unknown key '{unknown[0]}'")
    for name, f in known.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise DleemError(f"{where}: missing key '{name}'")
    values = dict(data)
    for key, parse in (convert or {}).items():
        if key in values:
            try:
                values[key] = parse(values[key])
            except DleemError as error:
                raise DleemError(f"{where}: '{key}': {error}") from None
            except (TypeError, ValueError) as error:
                raise DleemError(f"{where}: '{key}' is not valid ({error})") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise DleemError(f"{where}: {error}") from None


def _map(value: Any) -> AffineMap | None:
    return None if value is None else AffineMap.from_list(value)


def _box(value: Any) -> Box:
    r0, c0, r1, c1 = (int(v) for v in value)
    return (r0, c0, r1, c1)


def _boxes(value: Any) -> list[Box]:
    return [_box(b) for b in value]


def _to_dict(record: Any) -> dict[str, Any]:
    """A record's fields as JSON (nested records by their own ``to_dict``)."""
    out = {}
    for name in _fields(type(record)):
        value = getattr(record, name)
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        elif isinstance(value, list) and value and hasattr(value[0], "to_dict"):
            value = [v.to_dict() for v in value]
        out[name] = jsonable(value)
    return out


def _check_version(data: Any, where: str, supported: Sequence[int], key: str = "version") -> int:
    version = data.get(key) if isinstance(data, Mapping) else None
    if version not in supported:
        raise DleemError(f"{where}: unsupported {key} {version!r} (this dleem reads "
                         f"{', '.join(str(v) for v in supported)})")
    return int(version)


# ----------------------------------------------------------------------------- registration


@dataclass
class RegionRegistration:
    """One HR file's entry in ``registration.json``, in input order."""

    file: str
    status: str  # "ok" | "skipped"
    hr_to_lr: AffineMap | None = None
    ncc_peak: float | None = None
    ncc_distinctness: float | None = None
    residual: float | None = None
    iterations: int | None = None
    blur_sigma_lr_px: float | None = None
    uncertainty: dict[str, Any] | None = None
    gain: float | None = None
    offset: float | None = None
    ratio: float | None = None
    ratio_source: str | None = None
    rotation_deg: float | None = None
    lr_box: Box | None = None
    hr_shape: tuple[int, int] | None = None
    hr_pixel_size_um: float | None = None
    hr_pixel_size_source: str | None = None
    hr_databar_rows: int = 0
    message: str = ""
    noise_model: dict[str, float] | None = None  # LR noise: variance = a + b * signal (grey levels)

    def __post_init__(self) -> None:
        if self.status not in ("ok", "skipped"):
            raise DleemError(f"status must be 'ok' or 'skipped', got {self.status!r}")
        if self.status == "ok" and self.hr_to_lr is None:
            raise DleemError("a placed region needs hr_to_lr")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RegionRegistration:
        return _build(cls, data, where, {
            "hr_to_lr": _map,
            "lr_box": lambda v: None if v in (None, []) else _box(v),
            "hr_shape": lambda v: None if v is None else (int(v[0]), int(v[1])),
        })

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


REGISTRATION_VERSIONS = (1, 2)  # 2 adds each region's noise_model; 1 is still read


@dataclass
class RegistrationRecord:
    """``registration.json``: where every HR region lies in the LR image, and how well."""

    lr_file: str
    regions: list[RegionRegistration]
    lr_shape: tuple[int, int] | None = None
    lr_dtype: str | None = None
    lr_pixel_size_um: float | None = None
    lr_pixel_size_source: str | None = None
    lr_databar_rows: int = 0
    rotation_search: bool = False
    robust: str | None = None
    seconds: float | None = None
    dleem_version: str = field(default_factory=_version)
    version: int = 2

    @property
    def placed(self) -> list[tuple[int, RegionRegistration]]:
        """(input index, entry) of every region that was placed."""
        return [(i, r) for i, r in enumerate(self.regions) if r.ok]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RegistrationRecord:
        _check_version(data, where, REGISTRATION_VERSIONS)
        regions = data.get("regions") if isinstance(data, Mapping) else None
        if not isinstance(regions, list):
            raise DleemError(f"{where}: 'regions' must be a list")
        return _build(cls, data, where, {
            "regions": lambda v: [RegionRegistration.from_dict(r, f"{where} regions[{i}]")
                                  for i, r in enumerate(v)],
            "lr_shape": lambda v: None if v is None else (int(v[0]), int(v[1])),
        })

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


# ----------------------------------------------------------------------------- pairs manifest


@dataclass
class LRStats:
    """Statistics of the whole LR image (databar excluded): normalisation is never per tile."""

    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def from_dict(cls, data: Any, where: str = "lr_stats") -> LRStats:
        return _build(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass
class Splits:
    """Train, validation and test boxes of one region, in LR-crop px (half-open)."""

    train: list[Box] = field(default_factory=list)
    val: list[Box] = field(default_factory=list)
    test: list[Box] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Any, where: str = "splits") -> Splits:
        return _build(cls, data, where, {name: _boxes for name in SPLIT_NAMES})

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def of(self, name: str) -> list[Box]:
        if name not in SPLIT_NAMES:
            raise DleemError(f"unknown split {name!r} (train, val or test)")
        return getattr(self, name)


@dataclass
class SplitSettings:
    """How the splits were laid out (see `dleem.pairs.splits.split_boxes`)."""

    fractions: list[float]
    guard_lr_px: int
    layout: str
    seed: int | None

    @classmethod
    def from_dict(cls, data: Any, where: str = "split") -> SplitSettings:
        return _build(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass
class PairRegion:
    """One region of the pairs manifest: its files, its map and its splits."""

    id: str
    hr_to_lr: AffineMap
    lr_box: Box
    lr: str
    hr: str
    mask: str
    splits: Splits
    hr_file: str | None = None
    hr_sha256: str | None = None
    hr_pixel_size_um: float | None = None
    ratio: float | None = None
    gain: float = 1.0
    offset: float = 0.0
    valid_fraction: float | None = None
    quality: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PairRegion:
        return _build(cls, data, where, {
            "hr_to_lr": AffineMap.from_list, "lr_box": _box,
            "splits": lambda v: Splits.from_dict(v, f"{where} splits"),
        })

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def global_box(self, box: Sequence[int]) -> Box:
        """An LR-crop box of this region in LR image px."""
        r0, c0 = self.lr_box[0], self.lr_box[1]
        return (r0 + int(box[0]), c0 + int(box[1]), r0 + int(box[2]), c0 + int(box[3]))


PAIRS_VERSIONS = (1,)


@dataclass
class PairsManifest:
    """``pairs/manifest.json``: the training pairs every later step reads (docs/CONTRACTS.md)."""

    scale: int
    lr_dtype: str
    lr_shape: tuple[int, int]
    lr_stats: LRStats
    regions: list[PairRegion]
    lr_file: str | None = None
    lr_sha256: str | None = None
    lr_pixel_size_um: float | None = None
    lr_blur_sigma_px: float | None = None
    lr_databar_rows: int = 0
    lr_plane: dict[str, int] | None = None  # page / scene / channel of a multi-plane LR file
    coverage: str = "full"
    split: SplitSettings | None = None
    skipped_regions: list[dict[str, Any]] = field(default_factory=list)
    dleem_version: str = field(default_factory=_version)
    version: int = 1

    def __post_init__(self) -> None:
        from dleem.imaging import check_dtype, check_scale

        check_scale(self.scale)
        check_dtype(self.lr_dtype, "lr_dtype")

    @property
    def lr_pixel_size_fine_um(self) -> float | None:
        return None if self.lr_pixel_size_um is None else self.lr_pixel_size_um / self.scale

    def read_lr(self, **kwargs: Any) -> Any:
        """The LR map as registered (`dleem.io.read_image`), its plane included: every step
        that reads the LR file goes through here, so none can pick another page or scene."""
        from dleem.io import read_image

        if not self.lr_file:
            raise DleemError("the pairs manifest names no LR file")
        return read_image(self.lr_file, **{**(self.lr_plane or {}), **kwargs})

    def region(self, region_id: str) -> PairRegion:
        for r in self.regions:
            if r.id == region_id:
                return r
        raise DleemError(f"no region {region_id!r} in the pairs manifest")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PairsManifest:
        _check_version(data, where, PAIRS_VERSIONS)
        return _build(cls, data, where, {
            "lr_shape": lambda v: (int(v[0]), int(v[1])),
            "lr_stats": lambda v: LRStats.from_dict(v, f"{where} lr_stats"),
            "split": lambda v: None if v is None else SplitSettings.from_dict(v, f"{where} split"),
            "regions": lambda v: [PairRegion.from_dict(r, f"{where} regions[{i}]")
                                  for i, r in enumerate(v)],
        })

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


# ----------------------------------------------------------------------------- workspace manifest


@dataclass
class StepRecord:
    """What one step read, with which parameters, and what it wrote."""

    time_utc: str = field(default_factory=utc_now)
    dleem_version: str = field(default_factory=_version)
    inputs: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    seconds: float | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> StepRecord:
        return _build(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass
class WorkspaceManifest:
    """``manifest.json``: every step that ran in the workspace, under ``steps``."""

    steps: dict[str, StepRecord] = field(default_factory=dict)
    dleem_version: str = field(default_factory=_version)
    version: int = 1

    @classmethod
    def from_dict(cls, data: Any, where: str) -> WorkspaceManifest:
        _check_version(data, where, (1,))
        steps = data.get("steps", {}) if isinstance(data, Mapping) else {}
        if not isinstance(steps, Mapping):
            raise DleemError(f"{where}: 'steps' must be an object")
        return _build(cls, data, where, {
            "steps": lambda v: {name: StepRecord.from_dict(s, f"{where} steps.{name}")
                                for name, s in v.items()},
        })

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "dleem_version": self.dleem_version,
                "steps": {name: s.to_dict() for name, s in self.steps.items()}}


# ----------------------------------------------------------------------------- upscale record


@dataclass
class UpscaleRecord:
    """``upscale/upscale.json``: which model upscaled which LR image into which files."""

    model: str
    model_dir: str
    lr_file: str | None = None
    output: str | None = None
    consistency: str | None = None
    trust: str | None = None
    scale: int | None = None
    tile: int | None = None
    tta: bool = False  # averaged over the 8 flips and transposes
    seconds: float | None = None
    dleem_version: str = field(default_factory=_version)
    schema: str = "dleem-upscale"
    schema_version: int = 1

    @classmethod
    def from_dict(cls, data: Any, where: str) -> UpscaleRecord:
        if isinstance(data, Mapping) and "schema_version" not in data:
            data = {**data, "schema_version": 1}  # the first form held model and model_dir only
        _check_version(data, where, (1,), key="schema_version")
        return _build(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


# ----------------------------------------------------------------------------- cross-validation


@dataclass
class CrossvalFold:
    """One fold of ``crossval/crossval.json``: what was held out, what trained, its scores.

    ``metrics`` has the form of metrics.json ``methods``: ``{"model": ENTRY, "bicubic":
    ENTRY}`` scored on the whole held-out area; ``held_out_box`` is the held-out block (LR-crop
    px) in the spatial k-fold of a single region, None when a whole region is held out.
    """

    held_out: str
    trained_on: list[str]
    model_dir: str
    metrics: dict[str, Any]
    held_out_box: Box | None = None
    seconds: float | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> CrossvalFold:
        return _build(cls, data, where, {"held_out_box": lambda v: None if v is None else _box(v)})

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


CROSSVAL_METHODS = ("model", "bicubic")


@dataclass
class CrossvalRecord:
    """``crossval/crossval.json``: the folds and the estimate for LR area without HR.

    ``estimate[METHOD]`` (METHOD in ``model``, ``bicubic``) is ``{"vs_HR": E, "vs_truth": E
    or None}`` with ``E = {"ssim": {"median", "ci95"}, "psnr_db": {"median", "ci95"}}``.
    ``scheme`` is ``"leave-one-region-out"`` or ``"spatial-k-fold"`` (one region).
    """

    folds: list[CrossvalFold]
    estimate: dict[str, Any]
    scheme: str
    note: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    created_utc: str = field(default_factory=utc_now)
    dleem_version: str = field(default_factory=_version)
    schema: str = "dleem-crossval"
    schema_version: int = 1

    def __post_init__(self) -> None:
        if self.schema != "dleem-crossval":
            raise DleemError(f"'schema' is {self.schema!r}, not 'dleem-crossval'")
        missing = [m for m in CROSSVAL_METHODS if m not in self.estimate]
        if missing:
            raise DleemError(f"'estimate' has no '{missing[0]}'")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> CrossvalRecord:
        _check_version(data, where, (1,), key="schema_version")
        return _build(cls, data, where, {
            "folds": lambda v: [CrossvalFold.from_dict(f, f"{where} folds[{i}]")
                                for i, f in enumerate(v)],
        })

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


# ----------------------------------------------------------------------------- the workspace


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(path, "missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"cannot read JSON ({error})") from None


class Workspace:
    """One workspace folder: every path in it, and its records read and written atomically.

    Reading a record that is missing or invalid raises `InputError` naming the file; the
    message says which step writes it.
    """

    REGISTRATION = "registration.json"
    MANIFEST = "manifest.json"
    QC = "qc"
    PAIRS = "pairs"
    UPSCALE = "upscale"
    SR = "SR.ome.tif"
    UPSCALE_RECORD = "upscale.json"
    CONSISTENCY = "consistency.tif"
    TRUST = "trust.tif"
    CROSSVAL = "crossval"
    CROSSVAL_RECORD = "crossval.json"
    PLAN = "plan"
    REPORT = "report"
    MODELS = "models"

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths ---------------------------------------------------------------------------
    @property
    def registration_json(self) -> Path:
        return self.path / self.REGISTRATION

    @property
    def manifest_json(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def qc_dir(self) -> Path:
        return self.path / self.QC

    @property
    def pairs_dir(self) -> Path:
        return self.path / self.PAIRS

    @property
    def pairs_manifest_json(self) -> Path:
        return self.pairs_dir / self.MANIFEST

    @property
    def upscale_dir(self) -> Path:
        return self.path / self.UPSCALE

    @property
    def sr_path(self) -> Path:
        return self.upscale_dir / self.SR

    @property
    def upscale_json(self) -> Path:
        return self.upscale_dir / self.UPSCALE_RECORD

    @property
    def consistency_path(self) -> Path:
        return self.upscale_dir / self.CONSISTENCY

    @property
    def trust_path(self) -> Path:
        return self.upscale_dir / self.TRUST

    @property
    def crossval_dir(self) -> Path:
        return self.path / self.CROSSVAL

    @property
    def crossval_json(self) -> Path:
        return self.crossval_dir / self.CROSSVAL_RECORD

    @property
    def plan_json(self) -> Path:
        return self.path / self.PLAN / "plan.json"

    @property
    def report_dir(self) -> Path:
        return self.path / self.REPORT

    @property
    def models_dir(self) -> Path:
        return self.path / self.MODELS

    def pair_file(self, name: str) -> Path:
        """A file the pairs manifest names (relative to the pairs folder)."""
        return self.pairs_dir / name

    def outputs(self) -> set[Path]:
        """Files and folders the steps write: an input must never lie there."""
        root = self.path.resolve()
        return {root / self.REGISTRATION, root / self.MANIFEST, root / self.QC, root / self.PAIRS,
                root / self.UPSCALE, root / self.REPORT, root / self.CROSSVAL}

    def check_not_output(self, inputs: Sequence[str | PathLike[str]]) -> None:
        """Refuse inputs that lie where this workspace writes (they would be overwritten)."""
        outputs = self.outputs()
        for p in inputs:
            q = Path(p).resolve()
            if q in outputs or any(parent in outputs for parent in q.parents):
                raise InputError(p, "an input lies where the workspace writes its outputs; "
                                    "choose another workspace")

    # -- records -------------------------------------------------------------------------
    def _read(self, path: Path, parse: Any, writer: str) -> Any:
        if not path.is_file():
            raise InputError(path, f"missing (run `{writer}` first)")
        try:
            return parse(_read_json(path), str(path))
        except InputError:
            raise
        except DleemError as error:
            message = str(error)
            prefix = f"{path}: "
            raise InputError(path, message[len(prefix):] if message.startswith(prefix) else message) from None

    def read_registration(self) -> RegistrationRecord:
        return self._read(self.registration_json, RegistrationRecord.from_dict, "dleem register")

    def write_registration(self, record: RegistrationRecord) -> Path:
        return write_json(self.registration_json, record.to_dict())

    def has_pairs(self) -> bool:
        return self.pairs_manifest_json.is_file()

    def read_pairs(self) -> PairsManifest:
        return self._read(self.pairs_manifest_json, PairsManifest.from_dict, "dleem register")

    def write_pairs(self, manifest: PairsManifest) -> Path:
        return write_json(self.pairs_manifest_json, manifest.to_dict())

    def read_manifest(self) -> WorkspaceManifest:
        """The workspace manifest; an empty one where no step has run yet."""
        if not self.manifest_json.is_file():
            return WorkspaceManifest()
        return self._read(self.manifest_json, WorkspaceManifest.from_dict, "dleem register")

    def record_step(self, name: str, step: StepRecord) -> Path:
        """Add (or replace) one step under ``steps`` of ``manifest.json`` (read, update, write)."""
        manifest = self.read_manifest()
        manifest.steps[name] = step
        manifest.dleem_version = _version()
        self.path.mkdir(parents=True, exist_ok=True)
        return write_json(self.manifest_json, manifest.to_dict())

    def read_upscale(self) -> UpscaleRecord | None:
        """The whole-area upscale record, None where the workspace has none."""
        if not self.upscale_json.is_file():
            return None
        return self._read(self.upscale_json, UpscaleRecord.from_dict, "dleem run")

    def write_upscale(self, record: UpscaleRecord) -> Path:
        return write_json(self.upscale_json, record.to_dict())

    def read_crossval(self, path: str | PathLike[str] | None = None) -> CrossvalRecord:
        """``crossval/crossval.json`` (or the file ``path``)."""
        return self._read(Path(path) if path is not None else self.crossval_json,
                          CrossvalRecord.from_dict, "dleem crossval")

    def write_crossval(self, record: CrossvalRecord,
                       path: str | PathLike[str] | None = None) -> Path:
        return write_json(Path(path) if path is not None else self.crossval_json,
                          record.to_dict())

    def upscaled(self) -> tuple[Path | None, Path | None, str | None]:
        """The whole-area SR, its consistency map and the model name, where present."""
        record = self.read_upscale()
        sr = self.sr_path if self.sr_path.exists() else None
        consistency = self.consistency_path if self.consistency_path.is_file() else None
        return sr, consistency, None if record is None else record.model
