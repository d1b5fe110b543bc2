"""`dleem evaluate WORKSPACE --model A [--model B ...]`: test-area metrics, pores, the report
(led by the cross-validated estimate where `dleem crossval` ran)."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from dleem.cli.options import add_plane_options, plane, progress_display
from dleem.errors import DleemError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score models against HR on independent test tiles; write WORKSPACE/report/",
        description=(
            "Score each model and bicubic on independent tiles (a grid) over the test areas of "
            "WORKSPACE/pairs/manifest.json against the registered HR (and, on synthetic data, "
            "the noise-free truth): SSIM, PSNR with 95 % intervals (region as the unit), pores "
            "matched one by one, recall by pore size, porosity, pore-size distributions. The "
            "report opens with the cross-validated estimate of WORKSPACE/crossval/crossval.json "
            "(or --crossval PATH) where present. Writes WORKSPACE/report/index.html (static, "
            "offline) and metrics.json."
        ),
    )
    p.add_argument("workspace", metavar="WORKSPACE", help="workspace with pairs/manifest.json")
    p.add_argument("--model", action="append", required=True, metavar="MODEL_DIR",
                   help="model folder (repeat to compare models, e.g. an MSE and an MAE model)")
    p.add_argument("--tiles", type=int, default=None,
                   help="at most this many grid tiles, a seeded random subset (default: all)")
    p.add_argument("--tile-size", type=int, default=128, metavar="PX",
                   help="tile side in fine-grid (SR/HR) px, a multiple of the scale (default 128)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the tile subset and of the bootstrap intervals (default 0)")
    p.add_argument("--threshold", default="otsu", metavar="METHOD|VALUE",
                   help="pore threshold: otsu (default), li, yen, isodata, triangle, mean, minimum "
                        "(chosen on the HR tiles), or a grey level")
    p.add_argument("--pores", choices=("dark", "bright"), default="dark",
                   help="which phase is pore (default dark: epoxy-filled pores in BSE images)")
    p.add_argument("--connectivity", type=int, choices=(4, 8), default=8,
                   help="pixel connectivity of a pore (default 8)")
    p.add_argument("--min-pore-px", type=int, default=4, metavar="PX",
                   help="smallest pore counted, in fine-grid px (default 4)")
    p.add_argument("--border", type=int, default=None, metavar="PX",
                   help="px cut from each tile side before SSIM/PSNR (default: the scale)")
    p.add_argument("--gallery", type=int, default=6, help="tiles shown in the gallery (default 6)")
    p.add_argument("--tta", action="store_true",
                   help="score each model averaged over the 8 flips and transposes (as dleem upscale --tta)")
    p.add_argument("--thickness-tiles", type=int, default=50, metavar="N",
                   help="tiles on which local thickness is computed (default 50)")
    p.add_argument("--sr", default=None, metavar="SR.tif",
                   help="the whole upscaled image, named in the report (default: "
                        "WORKSPACE/upscale/SR.ome.tif if present)")
    p.add_argument("--consistency", default=None, metavar="MAP.tif",
                   help="consistency map from `dleem upscale --consistency` (default: "
                        "WORKSPACE/upscale/consistency.tif if present)")
    p.add_argument("--sr-model", default=None, help="name of the model that made --sr")
    p.add_argument("--crossval", default=None, metavar="PATH",
                   help="crossval.json to lead the report with (default: "
                        "WORKSPACE/crossval/crossval.json if present)")
    p.add_argument("--no-truth", action="store_true",
                   help="do not score against a synthetic truth.json found beside the LR file")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="report folder (default WORKSPACE/report)")
    add_plane_options(p, of="the LR image (as registered)")
    p.set_defaults(handler=run)


def parse_threshold(text: str) -> str | float:
    """A method name or a grey level."""
    from dleem.evaluation.pores import THRESHOLD_METHODS

    if text in THRESHOLD_METHODS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DleemError(f"--threshold {text!r}: not a finite grey level nor one of "
                         f"{', '.join(THRESHOLD_METHODS)}")
    return value


def check_upscaled(path: Path, lr_shape: tuple[int, ...], scale: int) -> None:
    """The upscaled image named in the report must be one: readable, decodable, and
    exactly ``scale`` times the LR shape (a truncated or unrelated file is refused)."""
    import numpy as np

    from dleem.io import read_image

    image = read_image(path, lazy=True, databar="keep")
    expected = tuple(scale * n for n in lr_shape)
    if image.shape != expected:
        raise DleemError(f"{path}: {image.shape[0]} x {image.shape[1]} px is not the upscaled LR "
                         f"map ({scale} x {lr_shape[0]} x {lr_shape[1]} = {expected[0]} x {expected[1]})")
    rows, cols = image.shape
    try:
        for y, x in ((0, 0), (rows // 2, cols // 2), (max(rows - 64, 0), max(cols - 64, 0))):
            np.asarray(image.data[y:y + 64, x:x + 64])
    except Exception as error:  # noqa: BLE001 - any decoder failure is a corrupt file
        raise DleemError(f"{path}: cannot be decoded ({str(error).strip()[:120] or type(error).__name__})") from None


def run(args: argparse.Namespace) -> int:
    from dleem.evaluation.evaluate import EvalOptions
    from dleem.evaluation.pipeline import evaluate_workspace
    from dleem.io.atomic import check_output_dir
    from dleem.workspace import Workspace

    if args.tiles is not None and args.tiles < 1:
        raise DleemError(f"--tiles must be >= 1, got {args.tiles}")
    options = EvalOptions(
        tiles=args.tiles, tile_size=args.tile_size, seed=args.seed,
        threshold=parse_threshold(args.threshold), pores_dark=args.pores == "dark",
        connectivity=args.connectivity, min_pore_px=args.min_pore_px, border_px=args.border,
        gallery=args.gallery, thickness_tiles=args.thickness_tiles, tta=args.tta,
    )
    ws = Workspace(args.workspace)
    sr, consistency, sr_model = ws.upscaled()
    sr = Path(args.sr) if args.sr else sr
    consistency = Path(args.consistency) if args.consistency else consistency
    for path in (sr, consistency, args.crossval):
        if path is not None and not path.exists():
            raise DleemError(f"{path}: not found")
    if sr is not None:
        manifest = ws.read_pairs()
        check_upscaled(sr, tuple(manifest.lr_shape), manifest.scale)
    check_output_dir(args.output if args.output is not None else ws.report_dir, "report folder")
    command = "dleem " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    with progress_display(args) as progress:
        index = evaluate_workspace(
            args.workspace, args.model, options, sr_path=sr, consistency_path=consistency,
            sr_model=args.sr_model or sr_model, use_truth=not args.no_truth, device=args.device,
            command=command, progress=progress, out_dir=args.output,
            crossval_path=args.crossval, lr_plane=plane(args),
        )
    sys.stdout.write(f"report: {index}\nmetrics: {index.parent / 'metrics.json'}\n")
    return 0
