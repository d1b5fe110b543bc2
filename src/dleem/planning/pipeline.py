"""`plan_acquisitions`: read a trust map and a workspace, propose the next HR regions
(`dleem.planning.greedy`), write ``plan.json`` and ``plan.png``.

Everything is checked before the work: a trust map with its ``.json``, made from this
workspace's LR image (its recorded checksum), a box that fits in the LR image, n >= 1.
"""

from __future__ import annotations

import json
import logging
import math
import time
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dleem.errors import InputError, ParameterError
from dleem.progress import ProgressCallback, report
from dleem.workspace import StepRecord, Workspace

log = logging.getLogger("dleem.planning")

SCHEMA = "dleem-plan"
SCHEMA_VERSION = 1


def _read_trust(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    js = path.with_suffix(".json")
    if not path.is_file():
        raise InputError(path, "no trust map here: write one with dleem upscale LR --model M -o SR.ome.tif "
                         "--trust TRUST.tif")
    if not js.is_file():
        raise InputError(js, "the trust map's .json is missing (dleem upscale --trust writes both)")
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
        data = np.asarray(tifffile.imread(path), dtype=np.float32)
    except (OSError, ValueError) as error:
        raise InputError(path, f"cannot be read as a dleem trust map ({error})") from None
    if not isinstance(meta, dict) or meta.get("schema") != "dleem-trust":
        raise InputError(js, "not a dleem trust map description (schema 'dleem-trust')")
    if data.ndim != 3 or data.shape[0] != 2 or list(data.shape[1:]) != list(meta.get("blocks_shape", [])):
        raise InputError(path, f"expected 2 planes of {meta.get('blocks_shape')} blocks, got shape {data.shape}")
    return data, meta


def _lr_sha256(ws: Workspace, lr_file: Path) -> str:
    if ws.has_pairs():
        return ws.read_pairs().lr_sha256
    from dleem.io.checksum import sha256_file

    return sha256_file(lr_file)


def plan_acquisitions(workspace: str | PathLike[str] | Workspace, trust_path: str | PathLike[str] | None = None,
                      *, n: int = 3, hr_size: int | None = None, ratio: float | None = None,
                      output: str | PathLike[str] | None = None,
                      progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Propose ``n`` HR regions where the trust map is unsupported; returns plan.json's dict.

    Parameters
    ----------
    workspace : path or Workspace
        A registered workspace (its LR image and HR regions).
    trust_path : path, optional
        ``TRUST.tif`` from ``dleem upscale --trust`` (default ``WORKSPACE/upscale/trust.tif``).
    n : int
        Regions to propose (>= 1).
    hr_size : int, optional
        Side of the HR frame in HR px (default: the median side of the registered regions).
    ratio : float, optional
        LR / HR pixel size (default: the registered median); the box on the LR map is
        ``round(hr_size / ratio)`` LR px square.
    output : path, optional
        plan.json (default ``WORKSPACE/plan/plan.json``); plan.png goes beside it.
    progress : callable, optional
        ``progress("plan", done, n)``.
    """
    t0 = time.perf_counter()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError("n", f"must be an integer >= 1, got {n!r}")
    record = ws.read_registration()
    tpath = Path(trust_path) if trust_path is not None else ws.trust_path
    data, meta = _read_trust(tpath)
    lr_file = Path(record.lr_file)
    sha = _lr_sha256(ws, lr_file)
    if meta.get("lr_sha256") != sha:
        raise InputError(tpath, f"was made from another LR image (checksum {str(meta.get('lr_sha256'))[:12]}..., "
                         f"this workspace's {lr_file.name} has {sha[:12]}...): upscale this LR image with --trust")
    placed = [r for _, r in record.placed]
    if ratio is None:
        ratios = [r.ratio for r in placed if r.ratio]
        if not ratios:
            raise ParameterError("ratio", "no registered ratio in this workspace: give it")
        ratio = float(np.median(ratios))
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
        raise ParameterError("ratio", f"must be a finite number > 0, got {ratio!r}")
    if hr_size is None:
        sides = [s for r in placed if r.hr_shape for s in r.hr_shape]
        if not sides:
            raise ParameterError("hr_size", "no registered HR region to take the size from: give it")
        hr_size = int(round(float(np.median(sides))))
    if isinstance(hr_size, bool) or not isinstance(hr_size, (int, np.integer)) or hr_size < 1:
        raise ParameterError("hr_size", f"must be an integer >= 1 (HR px), got {hr_size!r}")
    lr_shape = tuple(int(v) for v in meta["lr_shape"])
    box = int(round(hr_size / ratio))
    if box > min(lr_shape) or box < 1:
        raise ParameterError("hr_size", f"{hr_size} HR px at ratio {ratio:.3g} is a {box} LR px box, larger "
                             f"than the LR image ({lr_shape[0]} x {lr_shape[1]} LR px)")
    out = Path(output) if output is not None else ws.plan_json
    if out.suffix.lower() != ".json":
        raise ParameterError("output", f"must be a .json file, got {out}")
    report(progress, "plan", 0, n)

    from dleem.planning.greedy import propose

    block = int(meta["block_size_lr_px"])
    existing = [tuple(int(v) for v in r.lr_box) for r in placed if r.lr_box]
    proposals, now = propose(data[1] > 0.5, data[0], block=block, lr_shape=lr_shape, box_lr_px=box, n=n,
                             existing=existing)
    if len(proposals) < n:
        log.warning("only %d of %d regions fit without overlapping the existing ones", len(proposals), n)
    px = meta.get("lr_pixel_size_um")
    regions = []
    for p in proposals:
        r0, c0, r1, c1 = p.lr_box
        centre = [(r0 + r1 - 1) / 2.0, (c0 + c1 - 1) / 2.0]
        regions.append({"lr_box": [r0, c0, r1, c1], "center_lr": centre,
                        "center_um": [c * px for c in centre] if px else None,
                        "covers_unsupported_fraction": p.covers_unsupported_fraction,
                        "predicted_supported_fraction_after": p.predicted_supported_fraction_after})
    curve = [now] + [p.predicted_supported_fraction_after for p in proposals]
    plan = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "lr_file": str(lr_file), "lr_sha256": sha,
            "trust_map": str(tpath.resolve()), "supported_fraction_now": now,
            "box_lr_px": box, "hr_size_px": int(hr_size), "ratio": float(ratio), "regions": regions,
            "curve": [{"n_added": i, "predicted_supported_fraction": c} for i, c in enumerate(curve)]}

    from dleem.io import read_image
    from dleem.io.atomic import write_json
    from dleem.planning.figure import draw_plan

    lr = read_image(lr_file, lazy=True).data
    png = draw_plan(out.with_suffix(".png"), lr, data[1] < 0.5, block, existing, [p.lr_box for p in proposals],
                    curve)
    write_json(out, plan)
    ws.record_step("plan", StepRecord(
        inputs={"trust_map": str(tpath.resolve()), "lr": {"file": str(lr_file), "sha256": sha}},
        parameters={"n": n, "hr_size": int(hr_size), "ratio": float(ratio)},
        outputs=[str(out), str(png)], seconds=round(time.perf_counter() - t0, 3)))
    report(progress, "plan", n, n)
    return plan
