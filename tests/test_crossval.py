"""`dleem crossval` through the CLI on fabricated workspaces with real (tiny, few-step)
training: leave-one-region-out with two regions, the spatial k-fold of one region, the
record, the report's first line, and the bad inputs (one line, exit 2)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_evaluation import K, cached_fine, make_workspace

from dleem.cli import main
from dleem.evaluation import crossval as cv
from dleem.workspace import Workspace

TRAIN = ["--steps", "2", "--preset", "tiny", "--device", "cpu", "--batch", "2", "--patch", "16",
         "--checkpoint-every", "0"]
SECOND_BOX = [24, 8, 152, 136]  # LR px, overlapping the first region


def add_second_region(ws: Path) -> None:
    """A second HR region of the same specimen: its pairs files and manifest entry."""
    from dleem.io import read_image, write_image

    man = json.loads((ws / "pairs" / "manifest.json").read_text())
    r0, c0, r1, c1 = SECOND_BOX
    hr = cached_fine(0)[K * r0:K * r1, K * c0:K * c1].astype(np.float32)
    lr_img = np.asarray(read_image(man["lr_file"]).data)
    write_image(ws / "pairs" / "HR_2_lr.tif", lr_img[r0:r1, c0:c1], pixel_size_um=0.4)
    write_image(ws / "pairs" / "HR_2_hr.tif", hr, pixel_size_um=0.1)
    write_image(ws / "pairs" / "HR_2_mask.tif", np.ones(hr.shape, np.uint8), pixel_size_um=0.1)
    region = dict(man["regions"][0], id="HR_2", lr_box=SECOND_BOX, lr="HR_2_lr.tif",
                  hr="HR_2_hr.tif", mask="HR_2_mask.tif",
                  hr_to_lr=[[1 / K, 0, c0 + 0.5 / K - 0.5], [0, 1 / K, r0 + 0.5 / K - 0.5]])
    man["regions"].append(region)
    (ws / "pairs" / "manifest.json").write_text(json.dumps(man))


@pytest.fixture(scope="module")
def two_regions(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("cv2"))
    add_second_region(ws)
    return ws


def test_leave_one_region_out_writes_the_record_and_leads_the_report(two_regions, capsys):
    ws = two_regions
    assert main(["crossval", str(ws), *TRAIN, "--tile-size", "64", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-region-out, 2 folds" in out
    doc = json.loads((ws / "crossval" / "crossval.json").read_text())
    assert doc["schema"] == "dleem-crossval" and doc["schema_version"] == 1
    assert [f["held_out"] for f in doc["folds"]] == ["HR_1", "HR_2"]
    assert [f["trained_on"] for f in doc["folds"]] == [["HR_2"], ["HR_1"]]
    for fold in doc["folds"]:
        # trained on the other region only, with the budget given
        cfg = json.loads((Path(fold["model_dir"]) / "config.json").read_text())
        assert cfg["training"]["regions"] == fold["trained_on"]
        assert cfg["training"]["steps"] == 2
        # scored on the whole held-out region: every valid cell of the LR image's 16-px grid
        # inside its crop (HR_2 at LR rows 24-152, columns 8-136: 7 x 7 cells)
        m = fold["metrics"]
        assert set(m) == {"model", "bicubic"}
        n = len(m["model"]["ssim"]["per_tile"])
        assert n == len(m["bicubic"]["ssim"]["per_tile"]) == (59 if fold["held_out"] == "HR_1"
                                                             else 49)
        assert list(m["model"]["per_region"]) == [fold["held_out"]]
        assert "pore_recall_by_size" in m["model"]["vs_HR"]
    for method in ("model", "bicubic"):
        e = doc["estimate"][method]
        assert e["vs_truth"] is None  # no truth.json beside this LR
        for key in ("ssim", "psnr_db"):
            lo, hi = e["vs_HR"][key]["ci95"]
            assert lo <= e["vs_HR"][key]["median"] <= hi
    assert Workspace(ws).read_manifest().steps["crossval"].parameters["scheme"] == cv.LORO
    record = Workspace(ws).read_crossval()
    assert record.folds[0].held_out == "HR_1" and record.scheme == cv.LORO

    # dleem evaluate leads its report with the estimate; the test-area numbers follow.
    model = doc["folds"][0]["model_dir"]
    assert main(["evaluate", str(ws), "--model", model, "--tile-size", "64"]) == 0
    page = (ws / "report" / "index.html").read_text()
    lead = page.index("The quality to expect where no HR was acquired")
    assert lead < page.index("In-region test areas")
    metrics = json.loads((ws / "report" / "metrics.json").read_text())
    assert metrics["crossval"]["estimate"] == doc["estimate"]


def test_one_region_falls_back_to_spatial_k_fold(tmp_path, capsys):
    ws = make_workspace(tmp_path)
    out = tmp_path / "cv"
    assert main(["crossval", str(ws), "-o", str(out), *TRAIN, "--folds", "2",
                 "--tile-size", "64"]) == 0
    assert "spatial-k-fold, 2 folds" in capsys.readouterr().out
    doc = json.loads((out / "crossval.json").read_text())
    assert doc["scheme"] == cv.KFOLD and "not leave-one-region-out" in doc["note"]
    blocks = [f["held_out_box"] for f in doc["folds"]]
    assert blocks == [[0, 0, 128, 64], [0, 64, 128, 128]]
    for fold in doc["folds"]:
        # the fold's training boxes keep the guard band away from the held-out block
        man = json.loads((out / (Path(fold["model_dir"]).name + "-pairs") / "pairs"
                          / "manifest.json").read_text())
        _, c0, _, c1 = fold["held_out_box"]
        for box in man["regions"][0]["splits"]["train"] + man["regions"][0]["splits"]["val"]:
            assert box[3] <= c0 - 8 or box[1] >= c1 + 8
        assert len(fold["metrics"]["model"]["ssim"]["per_tile"]) > 20


def test_fold_plan_rules(tmp_path):
    from dleem.errors import DleemError

    man = Workspace(make_workspace(tmp_path)).read_pairs()
    scheme, plan, _ = cv.plan_folds(man, 3)
    assert scheme == cv.KFOLD and [f.block[1:4:2] for f in plan] == [(0, 43), (43, 85), (85, 128)]
    with pytest.raises(DleemError, match="folds must be >= 2"):
        cv.plan_folds(man, 1)
    with pytest.raises(DleemError, match="no HR region to cross-validate"):
        cv.plan_folds(dataclasses.replace(man, regions=[]))


def _cli_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dleem crossval: error:") and "\n" not in err
    return err


def test_bad_inputs_are_one_line_and_exit_2_before_training(tmp_path, capsys, monkeypatch):
    import dleem.training as training

    def no_training(*a, **kw):
        raise AssertionError("trained before the checks")

    monkeypatch.setattr(training, "train", no_training)
    ws = make_workspace(tmp_path)
    # a workspace with no regions
    man = json.loads((ws / "pairs" / "manifest.json").read_text())
    empty = tmp_path / "empty"
    (empty / "pairs").mkdir(parents=True)
    (empty / "pairs" / "manifest.json").write_text(json.dumps(dict(man, regions=[])))
    err = _cli_error(capsys, ["crossval", str(empty), *TRAIN])
    assert "no HR region to cross-validate" in err and "manifest.json" in err
    # a region too small for one tile: named, with its size
    err = _cli_error(capsys, ["crossval", str(ws), *TRAIN, "--tile-size", "1024"])
    assert "region HR_1 is too small for one tile" in err and "128 x 43 LR px" in err  # a block
    # --tiles 0
    assert "--tiles must be >= 1" in _cli_error(capsys, ["crossval", str(ws), *TRAIN,
                                                         "--tiles", "0"])
    # a threshold that leaves no pore in the HR
    err = _cli_error(capsys, ["crossval", str(ws), *TRAIN, "--tile-size", "64",
                              "--threshold", "1"])
    assert "leaves no pore in the HR" in err and "nothing else is computed" in err


def test_cancel_stops_crossval_and_writes_no_record(tmp_path):
    from dleem.errors import Cancelled
    from dleem.evaluation.evaluate import EvalOptions
    from dleem.evaluation.pipeline import crossval_workspace
    from dleem.training import TrainOptions

    ws = make_workspace(tmp_path)

    def progress(stage, done, total):
        if stage == "train" and done >= 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        crossval_workspace(ws, TrainOptions(steps=3, preset="tiny", device="cpu", batch=2,
                                            patch=16, checkpoint_every=0, force=True),
                           EvalOptions(tile_size=64), folds=2, progress=progress)
    assert not (ws / "crossval" / "crossval.json").exists()
