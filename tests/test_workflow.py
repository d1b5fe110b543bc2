"""The workflow: CONFIG.toml parsing (unknown keys, types -> one-line error, exit 2) and the
orchestration register -> train -> upscale -> evaluate on a fabricated workspace, with
registration and training replaced by stand-ins (a real untrained tiny model upscales)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_evaluation import make_workspace

from dleem.cli import main
from dleem.errors import DleemError
from dleem.workflow import WorkflowConfig, load_config, run_workflow


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "LR.tif").write_bytes(b"")
    (tmp_path / "HR_1.tif").write_bytes(b"")
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    return cfg


GOOD = """
lr = "LR.tif"
hr = ["HR_1.tif"]
output = "out"
ratio = 4.17
[train]
losses = ["mae"]
minutes = 2.5
preset = "cpu"
[upscale]
model = "mae"
[evaluate]
tiles = 20
tile_size = 128
threshold = 90
"""


def test_config_reads_and_resolves_paths(tmp_path):
    cfg = load_config(write_config(tmp_path, GOOD))
    assert cfg.lr == tmp_path / "LR.tif" and cfg.hr == [tmp_path / "HR_1.tif"]
    assert cfg.output == tmp_path / "out" and cfg.ratio == 4.17 and cfg.minutes == 2.5
    assert cfg.losses == ["mae"] and cfg.tiles == 20 and cfg.threshold == 90.0


def test_crossval_table(tmp_path):
    cfg = load_config(write_config(tmp_path, GOOD + "[crossval]\nenabled = true\nfolds = 4\n"))
    assert cfg.crossval and cfg.crossval_folds == 4
    assert not load_config(write_config(tmp_path, GOOD)).crossval
    with pytest.raises(DleemError, match="'crossval.enabled' must be bool"):
        load_config(write_config(tmp_path, GOOD + "[crossval]\nenabled = 1\n"))


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("ratio = 4.17", "ratoi = 4.17"), "unknown key 'ratoi'"),
    (GOOD.replace("minutes = 2.5", "minuets = 2.5"), "unknown key 'train.minuets'"),
    (GOOD + "[extra]\nx = 1\n", "unknown table [extra]"),
    (GOOD.replace("tiles = 20", "tiles = \"many\""), "'evaluate.tiles' must be int"),
    (GOOD.replace('losses = ["mae"]', 'losses = ["l1"]'), "unknown loss 'l1'"),
    (GOOD.replace('model = "mae"', 'model = "mse"'), "not one of the trained losses"),
    (GOOD.replace('lr = "LR.tif"\n', ""), "missing key 'lr'"),
    (GOOD.replace('"HR_1.tif"', '"HR_9.tif"'), "HR_9.tif not found"),
    ("lr = [", "not valid TOML"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    path = write_config(tmp_path, text)
    with pytest.raises(DleemError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(path)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dleem run: error: ") and "\n" not in err and message in err


def test_example_config_is_valid(tmp_path):
    """Every key of examples/run.toml is one `load_config` knows (it refuses unknown keys)."""
    example = Path(__file__).parents[1] / "examples" / "run.toml"
    (tmp_path / "examples").mkdir()
    config = tmp_path / "examples" / "run.toml"
    config.write_text(example.read_text())
    for name in ("LR.tif", "HR_1.tif", "HR_2.tif"):
        (tmp_path / "dleem-demo" / "data").mkdir(parents=True, exist_ok=True)
        (tmp_path / "dleem-demo" / "data" / name).write_bytes(b"")
    cfg = load_config(config)
    assert cfg.losses == ["mae", "mse"] and cfg.upscale == "mae" and cfg.crossval


def stand_in_steps(tmp_path, monkeypatch, on_register, on_train) -> None:
    """Replace registration and training by quick stand-ins that call ``on_register(lr, hrs)``
    and ``on_train(model_dir, options)``, write a real workspace and a tiny real model; also
    make ``tmp_path/pre`` for its data files (LR.tif and HR_1.tif)."""
    import dleem.registration.pipeline as rw
    import dleem.training as training
    from dleem.models import ModelConfig, build_generator, save_model
    from dleem.workspace import Workspace

    def fake_register(lr, hrs, ws, **kw):
        on_register(lr, hrs)
        make_workspace(tmp_path, ws=Path(ws))
        return Workspace(ws).read_registration()

    class Result:
        def __init__(self, d):
            self.model_dir = d

    def fake_train(ws, model_dir, options, progress=None, regions=None):
        on_train(model_dir, options)
        cfg = ModelConfig.tiny(scale=4, input_dtype="uint8", mean=0.6, std=0.2,
                               lr_pixel_size_um=0.4)
        save_model(model_dir, build_generator(cfg.arch, 4), cfg)
        return Result(Path(model_dir))

    monkeypatch.setattr(rw, "register_files", fake_register)
    monkeypatch.setattr(training, "train", fake_train)
    make_workspace(tmp_path / "pre")


def test_workflow_orchestration_with_stand_ins(tmp_path, monkeypatch):
    from dleem.workspace import Workspace

    out = tmp_path / "out"
    calls = []
    stand_in_steps(tmp_path, monkeypatch,
                   lambda lr, hrs: calls.append(("register", Path(lr).name, [Path(h).name for h in hrs])),
                   lambda model_dir, o: calls.append(("train", o.loss, o.preset)))
    data = tmp_path / "pre" / "data"
    cfg = WorkflowConfig(lr=data / "LR.tif", hr=[data / "HR_1.tif"], output=out,
                         losses=["mae", "mse"], steps=1, preset="tiny", device="cpu",
                         upscale="mae", upscale_tile=64, tiles=6, tile_size=64, thickness_tiles=2,
                         upscale_tta=True)
    index = run_workflow(cfg)
    assert calls == [("register", "LR.tif", ["HR_1.tif"]), ("train", "mae", "tiny"),
                     ("train", "mse", "tiny")]
    assert index == out / "report" / "index.html" and index.is_file()
    assert (out / "upscale" / "SR.ome.tif").is_file() and (out / "upscale" / "consistency.tif").is_file()
    doc = json.loads((out / "report" / "metrics.json").read_text())
    assert set(doc["methods"]) == {"HR", "bicubic", "model-mae", "model-mse"}
    assert doc["upscaled"]["model"] == "model-mae"
    assert set(doc["timings_s"]) >= {"register", "train model-mae", "upscale"}
    page = index.read_text()
    assert "consistency.png" in page and "upscale " in page
    record = Workspace(out).read_upscale()
    assert record.model == "model-mae" and Path(record.output) == out / "upscale" / "SR.ome.tif"
    assert record.tta and all(m["tta"] for m in doc["models"].values())  # the map and the scores alike
    steps = Workspace(out).read_manifest().steps
    assert {"upscale", "evaluate"} <= set(steps) and steps["evaluate"].seconds > 0


def test_tile_size_shrinks_to_fit_small_test_areas(tmp_path):
    from dleem.workflow import fit_tile_size

    ws = make_workspace(tmp_path)  # one 64 x 64 LR px test box at scale 4
    assert fit_tile_size(ws, 128) == 128
    assert fit_tile_size(ws, 1024) == 96  # 24 LR px: a 64 px box holds a cell wherever


def test_workflow_cross_validates_first_when_asked(tmp_path, monkeypatch):
    """[crossval] enabled: one fold per block of the single region, each trained with the
    final model's loss and budget, then the final model; the report leads with the estimate."""
    from dleem.workspace import Workspace

    out = tmp_path / "out"
    budgets = []
    stand_in_steps(tmp_path, monkeypatch, lambda lr, hrs: None,
                   lambda model_dir, o: budgets.append((Path(model_dir).name, o.loss, o.steps)))
    data = tmp_path / "pre" / "data"
    cfg = WorkflowConfig(lr=data / "LR.tif", hr=[data / "HR_1.tif"], output=out, losses=["mae"],
                         steps=3, preset="tiny", device="cpu", upscale="mae", upscale_tile=64,
                         tile_size=64, thickness_tiles=2, crossval=True, crossval_folds=2)
    index = run_workflow(cfg)
    assert [b[0] for b in budgets] == ["fold-HR_1-block-1of2", "fold-HR_1-block-2of2", "model-mae"]
    assert {(b[1], b[2]) for b in budgets} == {("mae", 3)}  # the same loss and budget
    record = Workspace(out).read_crossval()
    assert record.scheme == "spatial-k-fold" and len(record.folds) == 2
    page = index.read_text()
    assert page.index("The quality to expect where no HR was acquired") < page.index(
        "In-region test areas")
    assert "crossval" in Workspace(out).read_manifest().steps


def test_a_bad_training_weight_is_refused_before_registration(tmp_path):
    from dleem.errors import ParameterError

    make_workspace(tmp_path / "pre")
    data = tmp_path / "pre" / "data"
    cfg = WorkflowConfig(lr=data / "LR.tif", hr=[data / "HR_1.tif"], output=tmp_path / "out",
                         losses=["mae"], steps=1, preset="tiny", device="cpu", pore_weight=-1.0)
    with pytest.raises(ParameterError, match="pore_weight must be a finite number >= 0"):
        run_workflow(cfg)
    assert not (tmp_path / "out").exists()
