"""The acquisition planner: greedy proposals on real trust maps, `dleem plan` and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dleem.cli import main
from dleem.planning.greedy import propose


def test_the_first_proposal_covers_the_unsupported_area_and_the_curve_rises():
    supported = np.ones((16, 16), bool)
    supported[10:14, 2:6] = False  # 128 x 128 LR px unsupported, bottom left
    supported[1:3, 12:14] = False  # a smaller patch, top right
    rmse = np.ones((16, 16))
    props, now = propose(supported, rmse, block=32, lr_shape=(512, 512), box_lr_px=128, n=3)
    assert now == pytest.approx(1 - (16 + 4) / 256)
    assert props[0].lr_box == (320, 64, 448, 192) and props[0].covers_unsupported_fraction == pytest.approx(1.0)
    r0, c0, r1, c1 = props[1].lr_box
    assert r0 <= 32 and r1 >= 96 and c0 <= 384 and c1 >= 448  # then the small patch
    curve = [now] + [p.predicted_supported_fraction_after for p in props]
    assert curve == sorted(curve) and curve[2] == pytest.approx(1.0)


def test_proposals_overlap_neither_existing_regions_nor_each_other_and_ties_go_to_the_larger_error():
    supported = np.zeros((8, 8), bool)  # everything unsupported: every box ties on area
    rmse = np.ones((8, 8))
    rmse[6:8, 6:8] = 5.0
    existing = [(0, 0, 64, 64)]
    props, _ = propose(supported, rmse, block=32, lr_shape=(256, 256), box_lr_px=64, n=4, existing=existing)
    assert props[0].lr_box == (192, 192, 256, 256)
    boxes = existing + [p.lr_box for p in props]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


@pytest.fixture(scope="module")
def workspace_with_trust(tmp_path_factory):
    """A registered workspace and a trust map of its LR image (written as upscale writes it)."""
    import tifffile

    from dleem.io.checksum import sha256_file
    from dleem.upscale.trust import PLANES

    root = tmp_path_factory.mktemp("plan")
    data, ws = root / "data", root / "ws"
    assert main(["synth", "-o", str(data), "--size", "256", "--regions", "1", "--hr-size", "256", "--seed", "2"]) == 0
    assert main(["register", str(data / "LR.tif"), str(data / "HR_1.tif"), "-o", str(ws)]) == 0
    planes = np.ones((2, 8, 8), np.float32)
    planes[1, 5:8, 0:3] = 0.0  # unsupported bottom-left corner
    planes[0, 5:8, 0:3] = 9.0
    tifffile.imwrite(root / "TRUST.tif", planes, ome=True, metadata={"axes": "CYX"})
    meta = {"schema": "dleem-trust", "schema_version": 1, "block_size_lr_px": 32, "blocks_shape": [8, 8],
            "lr_shape": [256, 256], "lr_sha256": sha256_file(data / "LR.tif"), "lr_pixel_size_um": 0.5,
            "planes": list(PLANES)}
    (root / "TRUST.json").write_text(json.dumps(meta))
    return {"root": root, "ws": ws, "trust": root / "TRUST.tif", "meta": meta}


def test_dleem_plan_writes_plan_json_and_png(workspace_with_trust):
    w = workspace_with_trust
    assert main(["plan", str(w["ws"]), "--trust", str(w["trust"]), "-n", "2", "--hr-size", "256"]) == 0
    plan = json.loads((w["ws"] / "plan" / "plan.json").read_text())
    assert (w["ws"] / "plan" / "plan.png").stat().st_size > 0
    assert plan["schema"] == "dleem-plan" and plan["schema_version"] == 1
    assert plan["lr_sha256"] == w["meta"]["lr_sha256"] and plan["lr_file"].endswith("LR.tif")
    assert plan["supported_fraction_now"] == pytest.approx(1 - 9 / 64)
    first = plan["regions"][0]
    r0, c0, r1, c1 = first["lr_box"]
    side = round(256 / plan["ratio"])
    assert r1 - r0 == side and c1 - c0 == side
    assert first["center_lr"] == [(r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2]
    assert first["center_um"] == pytest.approx([0.5 * v for v in first["center_lr"]])
    assert r0 >= 160 - side and c1 <= 96 + side  # on the unsupported corner
    assert first["covers_unsupported_fraction"] > 0.9
    assert [c["n_added"] for c in plan["curve"]] == [0, 1, 2]
    assert plan["curve"][1]["predicted_supported_fraction"] == first["predicted_supported_fraction_after"]
    steps = json.loads((w["ws"] / "manifest.json").read_text())["steps"]
    assert "plan" in steps


@pytest.mark.parametrize("case", ["no_trust", "n0", "too_big", "other_lr"])
def test_dleem_plan_refusals(workspace_with_trust, tmp_path, capsys, case):
    w = workspace_with_trust
    args = ["plan", str(w["ws"]), "--trust", str(w["trust"]), "-o", str(tmp_path / "p.json")]
    if case == "no_trust":
        args = ["plan", str(w["ws"]), "-o", str(tmp_path / "p.json")]
    elif case == "n0":
        args += ["-n", "0"]
    elif case == "too_big":
        args += ["--hr-size", "5000"]
    else:
        other = tmp_path / "T.tif"
        other.write_bytes(w["trust"].read_bytes())
        (tmp_path / "T.json").write_text(json.dumps({**w["meta"], "lr_sha256": "0" * 64}))
        args[3] = str(other)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert {"no_trust": "no trust map", "n0": "--n must be", "too_big": "larger than the LR image",
            "other_lr": "another LR image"}[case] in err[0]
    assert not (tmp_path / "p.json").exists()
