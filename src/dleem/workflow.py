"""The whole workflow in one call: register -> crossval -> train (one model per loss) ->
upscale -> evaluate.

`run_workflow` runs it on the user's files (`dleem run CONFIG.toml`); `demo` first
synthesises the built-in sandstone (`dleem demo`). The workspace folder holds everything::

    OUT/registration.json, qc/, pairs/      dleem register
    OUT/crossval/crossval.json, fold-*/     dleem crossval (one model per fold, the budget and
                                            loss of the model that upscales the map)
    OUT/models/model-mae, models/model-mse  dleem train (one folder per pixel loss)
    OUT/upscale/SR.ome.tif, consistency.tif dleem upscale (the whole LR area, one model;
                                            upscale.json records which)
    OUT/report/index.html, metrics.json     dleem evaluate (all models)
    OUT/data/                               the demo's synthetic input (LR, HR, truth.json)

Each step logs a ``[i/n]`` header and reports through the one ``progress`` callback.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from dleem.errors import DleemError
from dleem.io.atomic import check_output_dir, make_folder
from dleem.progress import ProgressCallback
from dleem.workspace import StepRecord, UpscaleRecord, Workspace

log = logging.getLogger(__name__)

LOSSES = ("mae", "mse")


# ---------------------------------------------------------------------------- config


@dataclass
class WorkflowConfig:
    """Everything `run_workflow` needs (the keys of CONFIG.toml, see examples/run.toml).

    Attributes
    ----------
    lr, hr : the LR image of the whole area and the HR images of regions inside it.
    output : the workspace folder (report at ``output/report/index.html``).
    ratio, scale : LR/HR pixel-size ratio (default from metadata) and integer SR scale k
        (default round(ratio), at most 8).
    pixel_size_lr_um, pixel_size_hr_um : override the files' pixel sizes.
    page, scene, channel : the plane of a multi-page LR TIFF or an LR Zeiss CZI (see
        `dleem.io.read_image`); hr_page, hr_scene, hr_channel : the same for every HR file.
    losses : one model is trained per pixel loss ("mae", "mse").
    minutes, steps : training budget per model (one of them).
    preset : generator size ("default", "cpu", "tiny").
    recipe, adv_weight, consistency_weight, pore_weight : the loss terms beside the pixel
        loss, as in `dleem.training.TrainOptions` (None: the recipe's weight).
    upscale : the loss of the model that upscales the whole LR image, or "none".
    upscale_tta : that upscale, and every evaluation, averaged over the 8 flips and transposes.
    tiles, tile_size, seed, threshold, pores : evaluation settings (`dleem evaluate`); tiles
        caps the independent grid tiles (None: all).
    crossval, crossval_folds : run `dleem crossval` (with the budget of the final models)
        before training; folds of the spatial k-fold when there is one region.
    """

    lr: Path
    hr: list[Path]
    output: Path
    ratio: float | None = None
    scale: int | None = None
    pixel_size_lr_um: float | None = None
    pixel_size_hr_um: float | None = None
    page: int | None = None
    scene: int | None = None
    channel: int | None = None
    hr_page: int | None = None
    hr_scene: int | None = None
    hr_channel: int | None = None
    rotation_search: bool = False
    keep_going: bool = False
    losses: list[str] = field(default_factory=lambda: ["mae", "mse"])
    minutes: float | None = None
    steps: int | None = None
    preset: str = "default"
    recipe: str | None = None
    adv_weight: float | None = None
    consistency_weight: float | None = None
    pore_weight: float | None = None
    batch: int | None = None
    patch: int | None = None
    device: str = "auto"
    upscale: str = "mae"
    upscale_tile: int = 256
    upscale_tta: bool = False
    tiles: int | None = None
    tile_size: int = 128
    eval_seed: int = 0
    threshold: str | float = "otsu"
    pores: str = "dark"
    thickness_tiles: int = 50
    seed: int = 0
    crossval: bool = False
    crossval_folds: int = 3

    def validate(self) -> None:
        if not self.hr:
            raise DleemError("config: 'hr' needs at least one HR image")
        for loss in self.losses:
            if loss not in LOSSES:
                raise DleemError(f"config: unknown loss {loss!r} (mae or mse)")
        if len(set(self.losses)) != len(self.losses) or not self.losses:
            raise DleemError(f"config: 'losses' must list distinct losses, got {self.losses}")
        if self.upscale != "none" and self.upscale not in self.losses:
            raise DleemError(f"config: upscale = {self.upscale!r} is not one of the trained "
                             f"losses {self.losses} (or 'none')")
        if self.minutes is not None and self.steps is not None:
            raise DleemError("config: give training 'minutes' or 'steps', not both")
        if self.pores not in ("dark", "bright"):
            raise DleemError(f"config: pores must be 'dark' or 'bright', got {self.pores!r}")


#: TOML layout: table -> {key: (WorkflowConfig field, type(s))}. Top-level keys under "".
TOML_KEYS: dict[str, dict[str, tuple[str, tuple[type, ...]]]] = {
    "": {"lr": ("lr", (str,)), "hr": ("hr", (list,)), "output": ("output", (str,)),
         "ratio": ("ratio", (int, float)), "scale": ("scale", (int,)),
         "pixel_size_lr_um": ("pixel_size_lr_um", (int, float)),
         "pixel_size_hr_um": ("pixel_size_hr_um", (int, float)),
         "rotation_search": ("rotation_search", (bool,)), "keep_going": ("keep_going", (bool,)),
         "seed": ("seed", (int,)),
         **{key: (key, (int,)) for key in ("page", "scene", "channel", "hr_page", "hr_scene",
                                           "hr_channel")}},
    "train": {"losses": ("losses", (list,)), "minutes": ("minutes", (int, float)),
              "steps": ("steps", (int,)), "preset": ("preset", (str,)),
              "recipe": ("recipe", (str,)), "adv_weight": ("adv_weight", (int, float)),
              "consistency_weight": ("consistency_weight", (int, float)),
              "pore_weight": ("pore_weight", (int, float)), "batch": ("batch", (int,)),
              "patch": ("patch", (int,)), "device": ("device", (str,))},
    "upscale": {"model": ("upscale", (str,)), "tile": ("upscale_tile", (int,)),
                "tta": ("upscale_tta", (bool,))},
    "evaluate": {"tiles": ("tiles", (int,)), "tile_size": ("tile_size", (int,)),
                 "seed": ("eval_seed", (int,)), "threshold": ("threshold", (str, int, float)),
                 "pores": ("pores", (str,)), "thickness_tiles": ("thickness_tiles", (int,))},
    "crossval": {"enabled": ("crossval", (bool,)), "folds": ("crossval_folds", (int,))},
}


def load_config(path: str | PathLike[str]) -> WorkflowConfig:
    """Read CONFIG.toml; relative paths are relative to the file. Unknown keys are errors."""
    path = Path(path)
    if not path.is_file():
        raise DleemError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise DleemError(f"{path}: not valid TOML ({err})") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in TOML_KEYS or key == "":
                raise DleemError(f"{path}: unknown table [{key}] (known: train, upscale, evaluate, crossval)")
            table, prefix = TOML_KEYS[key], f"{key}."
            items = value.items()
        else:
            table, prefix, items = TOML_KEYS[""], "", [(key, value)]
        for k, v in items:
            if isinstance(v, dict) or k not in table:
                known = ", ".join(prefix + n for n in table)
                raise DleemError(f"{path}: unknown key '{prefix}{k}' (known: {known})")
            name, types = table[k]
            if isinstance(v, bool) and bool not in types:
                raise DleemError(f"{path}: '{prefix}{k}' must be {types[0].__name__}, got {v!r}")
            if not isinstance(v, types):
                raise DleemError(f"{path}: '{prefix}{k}' must be "
                                 f"{' or '.join(t.__name__ for t in types)}, got {v!r}")
            values[name] = v
    for required in ("lr", "hr", "output"):
        if required not in values:
            raise DleemError(f"{path}: missing key '{required}'")
    base = path.resolve().parent
    values["lr"] = base / values["lr"]
    if not all(isinstance(h, str) for h in values["hr"]):
        raise DleemError(f"{path}: 'hr' must be a list of file names")
    values["hr"] = [base / h for h in values["hr"]]
    values["output"] = base / values["output"]
    if "losses" in values and not all(isinstance(x, str) for x in values["losses"]):
        raise DleemError(f"{path}: 'train.losses' must be a list of strings")
    if "threshold" in values and not isinstance(values["threshold"], str):
        values["threshold"] = float(values["threshold"])
    cfg = WorkflowConfig(**values)
    try:
        cfg.validate()
    except DleemError as err:
        raise DleemError(f"{path}: {err}") from None
    for f in [cfg.lr, *cfg.hr]:
        if not f.exists():
            raise DleemError(f"{path}: input {f} not found")
    return cfg


# ---------------------------------------------------------------------------- workflow


def model_name(loss: str) -> str:
    return f"model-{loss}"


def _step(i: int, n: int, text: str) -> None:
    log.info("[%d/%d] %s", i, n, text)


def run_workflow(cfg: WorkflowConfig, *, truth: bool = True, first_step: int = 1,
                 total_steps: int | None = None, timings: dict[str, float] | None = None,
                 command: str | None = None, progress: ProgressCallback | None = None) -> Path:
    """Register, cross-validate (``cfg.crossval``), train one model per loss, upscale the
    whole LR image, evaluate; returns the report's index.html. ``progress(stage, done,
    total)`` is passed to every step.
    """
    from dleem.evaluation.evaluate import EvalOptions
    from dleem.evaluation.pipeline import crossval_workspace, evaluate_workspace
    from dleem.registration.pipeline import register_files
    from dleem.training import TrainOptions, train
    from dleem.upscale import upscale_file
    from dleem.upscale.trust import default_trust_path

    def train_options(loss: str) -> TrainOptions:
        return TrainOptions(steps=cfg.steps, minutes=cfg.minutes, preset=cfg.preset,
                            loss=loss, recipe=cfg.recipe, adv_weight=cfg.adv_weight,
                            consistency_weight=cfg.consistency_weight, pore_weight=cfg.pore_weight,
                            pores=cfg.pores, batch=cfg.batch,
                            patch=cfg.patch, device=cfg.device, seed=cfg.seed, force=True)

    cfg.validate()
    for loss in cfg.losses:  # every training option is checked before the work starts
        train_options(loss).validate()
    n = total_steps or (2 + cfg.crossval + len(cfg.losses) + (cfg.upscale != "none"))
    i = first_step
    timings = timings if timings is not None else {}
    ws = Workspace(cfg.output)
    make_folder(check_output_dir(ws.path, "workspace"))

    _step(i, n, f"register {len(cfg.hr)} HR region(s) into {cfg.lr.name}")
    t0 = time.perf_counter()
    reg = register_files(cfg.lr, cfg.hr, ws, ratio=cfg.ratio, scale=cfg.scale,
                         rotation_search=cfg.rotation_search, keep_going=cfg.keep_going,
                         pixel_size_lr_um=cfg.pixel_size_lr_um,
                         pixel_size_hr_um=cfg.pixel_size_hr_um, seed=cfg.seed, progress=progress,
                         lr_page=cfg.page, lr_scene=cfg.scene, lr_channel=cfg.channel,
                         hr_page=cfg.hr_page, hr_scene=cfg.hr_scene, hr_channel=cfg.hr_channel)
    timings["register"] = time.perf_counter() - t0
    log.info("registered %d/%d regions in %.0f s", len(reg.placed), len(reg.regions),
             timings["register"])
    i += 1

    device = "cpu" if cfg.device == "auto" else cfg.device
    options = EvalOptions(tiles=cfg.tiles, tile_size=fit_tile_size(ws, cfg.tile_size),
                          seed=cfg.eval_seed, threshold=cfg.threshold,
                          pores_dark=cfg.pores == "dark", thickness_tiles=cfg.thickness_tiles,
                          tta=cfg.upscale_tta)
    if cfg.crossval:
        loss = cfg.upscale if cfg.upscale != "none" else cfg.losses[0]
        _step(i, n, f"cross-validate {model_name(loss)}: one model per held-out region, each "
                    "with the final model's budget")
        t0 = time.perf_counter()
        crossval_workspace(ws, train_options(loss), options, folds=cfg.crossval_folds,
                           use_truth=truth, device=device, progress=progress)
        timings["crossval"] = time.perf_counter() - t0
        i += 1

    model_dirs: dict[str, Path] = {}
    for loss in cfg.losses:
        name = model_name(loss)
        budget = (f"{cfg.steps} steps" if cfg.steps is not None
                  else f"{cfg.minutes if cfg.minutes is not None else 10:g} min")
        recipe = train_options(loss)
        recipe.validate()
        _step(i, n, f"train {name} ({loss.upper()}, recipe {recipe.recipe}, preset {cfg.preset}, {budget})")
        t0 = time.perf_counter()
        result = train(ws, ws.models_dir / name, train_options(loss), progress=progress)
        model_dirs[name] = Path(result.model_dir)
        timings[f"train {name}"] = time.perf_counter() - t0
        i += 1

    sr_path = cons_path = None
    sr_model = None
    if cfg.upscale != "none":
        sr_model = model_name(cfg.upscale)
        _step(i, n, f"upscale the whole LR image with {sr_model}")
        t0 = time.perf_counter()
        sr_path = upscale_file(cfg.lr, model_dirs[sr_model], ws.sr_path, tile=cfg.upscale_tile,
                               device=cfg.device, consistency_path=ws.consistency_path,
                               trust_path=default_trust_path(model_dirs[sr_model], cfg.upscale_tile,
                                                             ws.trust_path),
                               pixel_size_um=cfg.pixel_size_lr_um, page=cfg.page, scene=cfg.scene,
                               channel=cfg.channel, tta=cfg.upscale_tta, progress=progress)
        cons_path = ws.consistency_path
        timings["upscale"] = time.perf_counter() - t0
        ws.write_upscale(UpscaleRecord(
            model=sr_model, model_dir=str(model_dirs[sr_model]), lr_file=str(cfg.lr),
            output=str(sr_path), consistency=str(cons_path), tile=cfg.upscale_tile, tta=cfg.upscale_tta,
            seconds=round(timings["upscale"], 3)))
        ws.record_step("upscale", StepRecord(
            inputs={"lr": str(cfg.lr), "model": str(model_dirs[sr_model])},
            parameters={"tile": cfg.upscale_tile, "device": cfg.device, "tta": cfg.upscale_tta},
            outputs=[str(sr_path), str(cons_path), str(ws.upscale_json)],
            seconds=round(timings["upscale"], 3)))
        i += 1

    _step(i, n, f"evaluate {', '.join(model_dirs)} on the test areas")
    t0 = time.perf_counter()
    index = evaluate_workspace(ws, list(model_dirs.values()), options, sr_path=sr_path,
                               sr_model=sr_model, consistency_path=cons_path,
                               use_truth=truth, device=device, command=command,
                               timings_s=timings, progress=progress,
                               lr_plane={"page": cfg.page, "scene": cfg.scene, "channel": cfg.channel})
    timings["evaluate"] = time.perf_counter() - t0
    log.info("evaluated in %.0f s; report %s", timings["evaluate"], index)
    return index


def fit_tile_size(ws: Workspace | str | PathLike[str], tile_size: int) -> int:
    """``tile_size``, or a smaller multiple of the scale where some region's test area could
    miss every cell of the tile grid (small HR regions on real data).

    A square box of side s LR px holds a cell of a grid of t LR px wherever the grid falls
    when s >= 2 t - 1; the side that counts is the smallest, over the regions, of each
    region's largest test box (every region must hold a tile)."""
    man = (ws if isinstance(ws, Workspace) else Workspace(ws)).read_pairs()
    k = man.scale
    per_region = [max(min(b[2] - b[0], b[3] - b[1]) for b in r.splits.test)
                  for r in man.regions if r.splits.test]
    if not per_region:
        return tile_size
    fits_lr = (min(per_region) + 1) // 2
    if tile_size // k <= fits_lr:
        return tile_size
    fitted = max(k, fits_lr * 3 // 4 * k)  # leave room for masked pixels
    log.warning("test areas are smaller than the %d px evaluation tile: using %d px tiles",
                tile_size, fitted)
    return fitted


# ---------------------------------------------------------------------------- demo


@dataclass(frozen=True)
class DemoPreset:
    """Sizes of the demo, chosen for a 2-core CPU (see benchmarks/results/evaluation.md).

    ``minutes`` (or ``steps``) is every model's budget alike: each cross-validation fold's
    and the final models'. ``crossval``: the full demo cross-validates, --quick does not.
    ``tta``: upscale the map, and score every model, with the dihedral ensemble (off: it
    cost pore-size accuracy on the small-pore benchmark, benchmarks/results/small_pores.md).
    """

    lr_size: int
    hr_size: int
    regions: int
    minutes: float | None
    steps: int | None
    preset: str
    tiles: int | None
    tile_size: int
    thickness_tiles: int
    crossval: bool
    tta: bool = False


DEMO = DemoPreset(lr_size=1024, hr_size=1024, regions=3, minutes=2.5, steps=None, preset="cpu",
                  tiles=None, tile_size=128, thickness_tiles=30, crossval=True)
QUICK = DemoPreset(lr_size=1024, hr_size=1024, regions=3, minutes=None, steps=100, preset="tiny",
                   tiles=None, tile_size=128, thickness_tiles=10, crossval=False)


def demo(out_dir: str | PathLike[str] = "dleem-demo", *, quick: bool = False, seed: int = 0,
         device: str = "auto", preset: DemoPreset | None = None, compare_losses: bool = False,
         recipe: str | None = None, generate: Callable[..., Any] | None = None,
         progress: ProgressCallback | None = None) -> Path:
    """Synthesise the sandstone, then `run_workflow` on it; returns the report's index.html.

    The MAE model (``recipe``: pixel-only by default, "gan" adds the adversarial phase)
    upscales the whole LR image and is cross-validated (leave-one-region-out over the 3 HR
    regions) unless ``quick``; ``compare_losses`` also trains and evaluates an MSE model.
    """
    p = preset or (QUICK if quick else DEMO)
    out = Path(out_dir)
    data = out / "data"
    losses = ["mae", "mse"] if compare_losses else ["mae"]
    # synthesise, register, (crossval), train each loss, upscale, evaluate
    n = 4 + p.crossval + len(losses)
    timings: dict[str, float] = {}
    _step(1, n, f"synthesise a sandstone: LR {p.lr_size} px, {p.regions} HR regions of "
                f"{p.hr_size} px (seed {seed})")
    t0 = time.perf_counter()
    if generate is None:
        from dleem.synth import generate as synth_generate

        generate = synth_generate
    generate(data, seed=seed, lr_size=p.lr_size, hr_size=p.hr_size, regions=p.regions)
    timings["synthesise"] = time.perf_counter() - t0
    hr = sorted(data.glob("HR_*.tif"), key=lambda f: int(f.stem.split("_")[1]))
    cfg = WorkflowConfig(lr=data / "LR.tif", hr=hr, output=out, losses=losses,
                         minutes=p.minutes, steps=p.steps, preset=p.preset, device=device,
                         upscale="mae", tiles=p.tiles, tile_size=p.tile_size,
                         thickness_tiles=p.thickness_tiles, seed=seed, crossval=p.crossval,
                         upscale_tta=p.tta, recipe=recipe)
    flags = ((" --quick" if quick else "") + (" --compare-losses" if compare_losses else "")
             + (f" --recipe {recipe}" if recipe else ""))
    return run_workflow(cfg, first_step=2, total_steps=n, timings=timings,
                        command=f"dleem demo{flags} -o {out}",
                        progress=progress)
