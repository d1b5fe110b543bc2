"""`dleem plan WORKSPACE --trust TRUST.tif`: propose the next HR regions where the map is unsupported."""

from __future__ import annotations

import argparse
import logging

#: API parameter -> flag, where they differ.
FLAGS = {"trust_path": "trust"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="propose where to acquire the next HR regions",
        description="Propose HR regions over the unsupported blocks of a trust map (dleem upscale "
                    "--trust), greedily: each covers the most unsupported area not yet covered, "
                    "ties broken by the predicted error, overlapping no existing region. Writes "
                    "plan.json and plan.png (the proposals over the LR overview, and the predicted "
                    "supported fraction after each).",
    )
    p.add_argument("workspace", help="registered workspace (registration.json)")
    p.add_argument("--trust", metavar="TRUST.tif",
                   help="trust map from dleem upscale --trust (default WORKSPACE/upscale/trust.tif)")
    p.add_argument("-n", "--n", type=int, default=3, help="HR regions to propose (default 3)")
    p.add_argument("--hr-size", type=int, metavar="HR_PX",
                   help="side of the HR frame in HR pixels (default: the median of the registered regions)")
    p.add_argument("--ratio", type=float, metavar="R",
                   help="LR / HR pixel size (default: the registered one)")
    p.add_argument("-o", "--output", metavar="plan.json", help="default WORKSPACE/plan/plan.json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dleem.planning import plan_acquisitions

    plan = plan_acquisitions(args.workspace, args.trust, n=args.n, hr_size=args.hr_size, ratio=args.ratio,
                             output=args.output)
    log = logging.getLogger("dleem.planning")
    log.info("supported now: %.1f%% of the area", 100 * plan["supported_fraction_now"])
    for i, r in enumerate(plan["regions"], 1):
        log.info("region %d: LR box %s, centre (row, col) %s LR px: covers %.0f%% unsupported; supported "
                 "after: %.1f%%", i, r["lr_box"], r["center_lr"], 100 * r["covers_unsupported_fraction"],
                 100 * r["predicted_supported_fraction_after"])
    return 0
