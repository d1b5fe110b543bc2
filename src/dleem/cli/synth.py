"""`dleem synth`: write a synthetic SEM acquisition of a procedural sandstone."""

from __future__ import annotations

import argparse
import logging
import sys
import time

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="simulate an LR SEM map and HR regions of a synthetic sandstone (exact truth)",
        description=(
            "Simulate a backscattered-electron SEM acquisition of a procedural sandstone: "
            "DIR/LR.tif (whole area), DIR/HR_1.tif ... (regions at LR pixel size / ratio) and "
            "DIR/truth.json (exact HR->LR affine maps, every parameter, enough to re-render "
            "the noise-free specimen anywhere)."
        ),
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--force", action="store_true",
                   help="overwrite the LR.tif, HR_i.tif and truth.json already in DIR")
    g = p.add_argument_group("geometry")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--ratio", type=float, default=4.0,
                   help="LR pixel size / HR pixel size, > 1 (default 4)")
    g.add_argument("--regions", type=int, default=2, help="number of HR regions (default 2)")
    g.add_argument("--size", type=int, default=2048, metavar="LR_SIDE_PX",
                   help="LR image side in pixels (default 2048)")
    g.add_argument("--hr-size", type=int, default=1024, metavar="PX",
                   help="HR region side in pixels (default 1024)")
    g.add_argument("--pixel-size", type=float, default=0.5, metavar="UM",
                   help="LR pixel size in µm (default 0.5)")
    g.add_argument("--rotation", type=float, default=0.5, metavar="DEG",
                   help="HR scan rotation relative to LR, counter-clockwise on screen (default 0.5, plus jitter)")
    g.add_argument("--scale-error", type=float, default=0.004,
                   help="HR magnification error, fraction (default 0.004, plus jitter)")
    g.add_argument("--shear", type=float, default=0.002, help="HR scan shear (default 0.002)")
    g.add_argument("--drift", type=float, nargs=2, default=(0.6, 1.2), metavar=("DX", "DY"),
                   help="drift over one HR frame, HR pixels (default 0.6 1.2)")
    g.add_argument("--jitter", type=float, default=0.3,
                   help="per-region random variation of the acquisition (0: none; default 0.3)")
    a = p.add_argument_group("imaging")
    a.add_argument("--lr-blur", type=float, default=0.8, metavar="SIGMA_PX",
                   help="LR beam sigma, LR pixels (default 0.8)")
    a.add_argument("--hr-blur", type=float, default=1.0, metavar="SIGMA_PX",
                   help="HR beam sigma, HR pixels (default 1.0)")
    a.add_argument("--dose", type=float, default=150.0,
                   help="LR electrons per pixel at full signal (∝ dwell time; default 150)")
    a.add_argument("--hr-dose", type=float, default=600.0,
                   help="HR electrons per pixel at full signal (default 600)")
    a.add_argument("--lr-gain", type=float, default=0.95)
    a.add_argument("--lr-offset", type=float, default=0.03)
    a.add_argument("--hr-gain", type=float, default=1.05)
    a.add_argument("--hr-offset", type=float, default=-0.01)
    a.add_argument("--read-noise", type=float, default=0.004, help="fraction of full scale")
    a.add_argument("--line-noise", type=float, default=0.003,
                   help="per-scan-line offset std, fraction of full scale (default 0.003)")
    a.add_argument("--charging", type=float, default=0.0,
                   help="charging-streak amplitude (default 0: none)")
    a.add_argument("--no-noise", action="store_true", help="no shot, read or line noise")
    a.add_argument("--bits", type=int, choices=(8, 16), default=8, help="8 or 16 (default 8)")
    a.add_argument("--databar", type=int, default=0, metavar="ROWS",
                   help="append an SEM-style databar of ROWS rows (default 0: none)")
    s = p.add_argument_group("specimen")
    s.add_argument("--grain-size", type=float, default=60.0, metavar="UM",
                   help="median grain diameter, µm (default 60)")
    s.add_argument("--supersample", type=int, default=None,
                   help="samples per pixel per axis for area integration (default: 4 for LR, "
                        "3 for HR)")
    p.set_defaults(handler=run)


#: SynthParams field -> flag, where they differ (an error names what the user typed).
FLAGS = {"lr_size": "size", "lr_pixel_size_um": "pixel_size", "rotation_deg": "rotation",
         "drift_px": "drift", "lr_blur_sigma_px": "lr_blur", "hr_blur_sigma_px": "hr_blur",
         "lr_dose": "dose", "databar_rows": "databar", "specimen.grain_size_um": "grain_size",
         "lr_supersample": "supersample", "hr_supersample": "supersample"}


def params_from_args(args: argparse.Namespace):  # -> SynthParams
    from dleem.synth import SpecimenParams, SynthParams

    return SynthParams(
        seed=args.seed, ratio=args.ratio, lr_size=args.size, hr_size=args.hr_size,
        regions=args.regions, lr_pixel_size_um=args.pixel_size, bits=args.bits,
        noise=not args.no_noise, lr_blur_sigma_px=args.lr_blur, hr_blur_sigma_px=args.hr_blur,
        lr_dose=args.dose, hr_dose=args.hr_dose, lr_gain=args.lr_gain, lr_offset=args.lr_offset,
        hr_gain=args.hr_gain, hr_offset=args.hr_offset, read_noise=args.read_noise,
        line_noise=args.line_noise, charging=args.charging, rotation_deg=args.rotation,
        scale_error=args.scale_error, shear=args.shear, drift_px=tuple(args.drift),
        jitter=args.jitter, databar_rows=args.databar,
        specimen=SpecimenParams(grain_size_um=args.grain_size),
        **({} if args.supersample is None else
           {"lr_supersample": args.supersample, "hr_supersample": args.supersample}),
    )


def run(args: argparse.Namespace) -> int:
    from dleem.synth import generate

    t0 = time.perf_counter()
    result = generate(args.output, params_from_args(args), force=args.force)
    truth = result.truth
    sys.stdout.write(
        f"wrote {args.output}: LR.tif {truth['lr_shape'][0]}x{truth['lr_shape'][1]} px at "
        f"{truth['lr_pixel_size_um']:g} µm, {len(truth['regions'])} HR region(s) at "
        f"{truth['hr_pixel_size_um']:g} µm (ratio {truth['ratio']:g}), truth.json "
        f"({time.perf_counter() - t0:.1f} s)\n")
    return 0
