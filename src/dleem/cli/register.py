"""`dleem register`: place HR regions in the LR image, write QC figures and training pairs."""

from __future__ import annotations

import argparse
import sys

from dleem.cli.options import add_plane_options, plane, progress_display


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "register",
        help="place HR regions in the LR image; write registration.json, QC figures, training pairs",
        description=(
            "Register each HR image into the LR image (affine map, gain/offset, blur), then write "
            "WORKSPACE/registration.json, QC figures in WORKSPACE/qc/ and the training pairs in "
            "WORKSPACE/pairs/ (with the train / validation / test areas fixed once)."
        ),
    )
    p.add_argument("lr", metavar="LR.tif", help="the LR image of the whole area")
    p.add_argument("hr", metavar="HR.tif", nargs="+", help="one or more HR images of regions")
    p.add_argument("-o", "--output", "--workspace", dest="workspace", required=True,
                   metavar="WORKSPACE", help="workspace folder (created)")
    p.add_argument("--ratio", type=float, default=None,
                   help="LR pixel size / HR pixel size (> 1), refined by the fit; "
                        "default from the files' pixel sizes")
    p.add_argument("--scale", type=int, default=None,
                   help="integer scale k of the training pairs, 2..8 (default round(ratio), within 2..8)")
    p.add_argument("--rotation-search", action="store_true",
                   help="search rotations to ±45° (default ±10°)")
    p.add_argument("--keep-going", action="store_true",
                   help="skip a region that cannot be placed (warning) instead of failing")
    p.add_argument("--robust", choices=("huber", "tukey"), default=None,
                   help="robust weights in the refinement (charging, dust)")
    p.add_argument("--pixel-size-lr", type=float, default=None, metavar="UM",
                   help="LR pixel size in µm (overrides metadata)")
    p.add_argument("--pixel-size-hr", type=float, default=None, metavar="UM",
                   help="HR pixel size in µm, all HR files (overrides metadata)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the placement of the train / validation / test areas")
    p.add_argument("--keep-databar", action="store_true",
                   help="do not mask detected databar strips")
    p.add_argument("--guard", type=int, default=8, metavar="LR_PX",
                   help="guard band between train, validation and test areas (LR px, default 8)")
    p.add_argument("--split", type=float, nargs=3, default=(0.7, 0.1, 0.2),
                   metavar=("TRAIN", "VAL", "TEST"),
                   help="area fractions of train, validation, test (default 0.7 0.1 0.2)")
    p.add_argument("--split-layout", choices=("band", "stripes"), default="band",
                   help="band: test and validation side by side along one edge, test roughly "
                        "square (default); stripes: three parallel stripes")
    p.add_argument("--max-iterations", type=int, default=50, help="cap on refinement iterations")
    p.add_argument("--no-qc", action="store_true", help="skip the QC figures")
    add_plane_options(p.add_argument_group("multi-page and multi-scene LR"), of="the LR image")
    add_plane_options(p.add_argument_group("multi-page and multi-scene HR"), "hr-", of="every HR image")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.registration.pipeline import register_files

    lr_plane, hr_plane = plane(args), plane(args, "hr-")
    with progress_display(args) as progress:
        record = register_files(
            args.lr, args.hr, args.workspace,
            ratio=args.ratio, scale=args.scale, rotation_search=args.rotation_search,
            keep_going=args.keep_going, robust=args.robust,
            pixel_size_lr_um=args.pixel_size_lr, pixel_size_hr_um=args.pixel_size_hr,
            mask_databar=not args.keep_databar, seed=args.seed,
            split_fractions=tuple(args.split), guard_lr_px=args.guard, split_layout=args.split_layout,
            max_iterations=args.max_iterations, qc=not args.no_qc, progress=progress,
            **{f"lr_{k}": v for k, v in lr_plane.items()}, **{f"hr_{k}": v for k, v in hr_plane.items()},
        )
    lines = []
    for r in record.regions:
        if r.ok:
            lines.append(
                f"{r.file}: ok  ratio {_num(r.ratio, '.4f')}  rotation {_num(r.rotation_deg, '+.3f')} deg  "
                f"NCC {_num(r.ncc_peak, '.3f')}  residual {_num(r.residual, '.4g')}"
            )
        else:
            lines.append(f"{r.file}: {r.status}: {r.message}")
    lines.append(f"{len(record.placed)}/{len(record.regions)} regions registered; workspace "
                 f"{args.workspace} (registration.json, qc/, pairs/)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _num(value: object, spec: str) -> str:
    return "n/a" if value is None else format(float(value), spec)  # type: ignore[arg-type]
