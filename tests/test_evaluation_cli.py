"""`dleem evaluate` on a fabricated workspace with a real (untrained, tiny) model folder."""

from __future__ import annotations

import json

import pytest
from test_evaluation import make_workspace

from dleem.cli import main


@pytest.fixture(scope="module")
def ws_and_model(tmp_path_factory):
    from dleem.models import ModelConfig, build_generator, save_model

    root = tmp_path_factory.mktemp("evalcli")
    ws = make_workspace(root)
    cfg = ModelConfig.tiny(scale=4, input_dtype="uint8", mean=0.6, std=0.2, lr_pixel_size_um=0.4)
    model = save_model(root / "model-tiny", build_generator(cfg.arch, 4), cfg)
    return ws, model


def test_evaluate_cli_writes_report_and_metrics(ws_and_model, capsys):
    ws, model = ws_and_model
    code = main(["evaluate", str(ws), "--model", str(model), "--tiles", "5", "--tile-size", "64",
                 "--gallery", "1", "--thickness-tiles", "2", "--threshold", "li", "--seed", "7"])
    assert not (ws / "report" / "index.html").with_name("nothing").exists()
    assert code == 0
    out = capsys.readouterr().out
    assert str(ws / "report" / "index.html") in out
    doc = json.loads((ws / "report" / "metrics.json").read_text())
    assert doc["settings"]["threshold_method"] == "li" and doc["settings"]["seed"] == 7
    assert doc["models"]["model-tiny"]["generator_sha256"]
    assert len(doc["methods"]["model-tiny"]["ssim"]["per_tile"]) == 5


@pytest.mark.parametrize("args, message", [
    (["--threshold", "bogus"], "--threshold 'bogus'"),
    (["--tile-size", "66"], "multiple of the scale"),
    (["--tile-size", "1024"], "--tile-size 1024: region HR_1 is too small for one tile: its "
                              "largest test area is 64 x 64 LR px"),
    (["--tiles", "0"], "--tiles must be >= 1"),
    (["--threshold", "1"], "--threshold 1.0 (1 grey levels) leaves no pore in the HR of the 1 "
                           "tile (dark pores): porosity is 0 there and nothing else is computed"),
])
def test_evaluate_cli_errors_are_one_line(ws_and_model, capsys, args, message):
    ws, model = ws_and_model
    assert main(["evaluate", str(ws), "--model", str(model), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dleem evaluate: error:") and message in err and "\n" not in err


def test_evaluate_cli_missing_inputs(tmp_path, ws_and_model, capsys):
    ws, model = ws_and_model
    assert main(["evaluate", str(tmp_path / "nope"), "--model", str(model)]) == 2
    assert main(["evaluate", str(ws), "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "workspace folder not found" in err and "not a model folder" in err


@pytest.mark.parametrize("scale, dtype, message", [
    (2, "uint8", "the model upscales by 2, the workspace's pairs by 4"),
    (4, "uint16", "the model was trained on uint16 images"),
])
def test_a_model_of_another_scale_or_dtype_is_refused_naming_it(ws_and_model, tmp_path, capsys,
                                                                scale, dtype, message):
    from dleem.models import ModelConfig, build_generator, save_model

    ws, _ = ws_and_model
    cfg = ModelConfig.tiny(scale=scale, input_dtype=dtype, mean=0.6, std=0.2)
    other = save_model(tmp_path / "other", build_generator(cfg.arch, scale), cfg)
    assert main(["evaluate", str(ws), "--model", str(other), "--tiles", "2", "--tile-size", "64"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(other) in line and message in line
