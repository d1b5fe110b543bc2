"""`train` as a step: bad values first, progress and cancel, divergence, resume refusals, the record."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_training import make_workspace, run_cli, tiny_options

from dleem.errors import Cancelled, DleemError, InputError, ParameterError
from dleem.training import load_pairs, train
from dleem.workspace import Workspace

MODEL_FILES = ("config.json", "generator.safetensors", "generator_raw.safetensors")


@pytest.mark.parametrize("name,value", [
    ("steps", 0), ("minutes", math.inf), ("minutes", 0.0), ("lr", math.nan), ("lr", -1.0), ("lr_d", math.inf),
    ("adv_weight", -1.0), ("adv_weight", math.nan), ("adv_weight", math.inf), ("warmup", 1.5),
    ("warmup", math.nan), ("batch", 0), ("patch", 2), ("ema_decay", 1.0), ("scale", 12), ("loss", "l3"),
    ("val_tiles", 0), ("weight_decay", -1e-3),
])
def test_bad_values_are_refused_before_any_work(tmp_path, name, value):
    kw = {"steps": None} if name == "minutes" else {}
    with pytest.raises(ParameterError) as info:
        train(tmp_path / "no-such-workspace", tmp_path / "m", tiny_options(**kw, **{name: value}))
    assert info.value.parameter == name
    assert not (tmp_path / "m").exists()


def test_cli_names_the_flag(tmp_path, capsys):
    ws = make_workspace(tmp_path / "ws")
    code, err = run_cli(str(ws), "-o", str(tmp_path / "m"), "--lr", "nan", capsys=capsys)
    assert code == 2 and "--lr must be a finite number > 0, got nan" in err
    code, err = run_cli(str(ws), "-o", str(tmp_path / "m"), "--adv-weight", "-1", capsys=capsys)
    assert code == 2 and "--adv-weight must be" in err and len(err.strip().splitlines()) == 1


def test_progress_cancel_and_resume(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    calls = []
    train(ws, tmp_path / "full", tiny_options(steps=8, warmup=0.25), progress=lambda *a: calls.append(a))
    assert calls[0] == ("train", 0, 8) and calls[-1] == ("train", 8, 8)

    def cancel_at_5(stage, done, total):
        if done == 5:
            raise Cancelled

    out = tmp_path / "cut"
    with pytest.raises(Cancelled):
        train(ws, out, tiny_options(steps=8, warmup=0.25), progress=cancel_at_5)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000000005.pt"]
    assert not [name for name in MODEL_FILES if (out / name).exists()]
    train(ws, out, tiny_options(steps=8, warmup=0.25, resume=True))
    for name in MODEL_FILES[1:]:
        a, b = load_file(tmp_path / "full" / name), load_file(out / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name


class NaNAfter(torch.nn.Module):
    """A generator whose output turns NaN from its sixth training call on."""

    scale = 4
    receptive_field_lr_px = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(4)
        self.calls = 0

    def forward(self, x):
        y = self.shuffle(self.conv(x))
        if self.training:
            self.calls += 1
            if self.calls >= 6:
                y = y * math.nan
        return y


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "m"
    with pytest.raises(DleemError, match=r"training diverged at step 6: the pixel loss is NaN"):
        train(ws, out, tiny_options(steps=10, checkpoint_every=2, keep_checkpoints=0, adv_weight=0),
              generator=NaNAfter(), arch={"name": "nan"})
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000000002.pt", "step_000000004.pt"]
    assert not [name for name in MODEL_FILES if (out / name).exists()]


def test_resume_refuses_another_run(tmp_path, capsys):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "m"
    train(ws, out, tiny_options(steps=4, checkpoint_every=2, keep_checkpoints=0))
    with pytest.raises(DleemError, match=r"step_000000004\.pt: resume: the checkpoint was trained with loss mae, not mse$"):
        train(ws, out, tiny_options(steps=8, resume=True, loss="mse"))
    with pytest.raises(DleemError, match="resume: the checkpoint was trained with seed 0, not 3$"):
        train(ws, out, tiny_options(steps=8, resume=True, seed=3))
    with pytest.raises(DleemError, match="resume: the checkpoint was trained with preset tiny, not cpu$"):
        train(ws, out, tiny_options(steps=8, resume=True, preset="cpu"))
    with pytest.raises(DleemError, match=r"trained with regions None, not \['HR_1'\]$"):
        train(ws, out, tiny_options(steps=8, resume=True), regions=["HR_1"])
    # a corrupt checkpoint is one line, without torch's advice
    (out / "checkpoints" / "step_000000009.pt").write_bytes(b"\x80\x02garbage")
    code, err = run_cli(str(ws), "-o", str(out), "--steps", "12", "--preset", "tiny", "--device", "cpu",
                        "--resume", capsys=capsys)
    assert code == 2 and "cannot read checkpoint" in err and "weights_only" not in err
    assert len(err.strip().splitlines()) == 1


def test_train_records_the_step_in_the_workspace(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "models" / "mae"
    train(Workspace(ws), out, tiny_options(steps=2))
    step = Workspace(ws).read_manifest().steps["train:mae"]
    sha = hashlib.sha256((ws / "pairs" / "manifest.json").read_bytes()).hexdigest()
    assert step.inputs == {"pairs_manifest_sha256": sha}
    assert step.parameters["steps"] == 2 and step.parameters["loss"] == "mae"
    assert step.outputs == [str(out)]


def test_load_pairs_takes_the_workspace_and_a_region_subset(tmp_path):
    ws = make_workspace(tmp_path / "ws", regions=2)
    assert {b.region for b in load_pairs(ws).train} == {"HR_1", "HR_2"}
    d = load_pairs(Workspace(ws), regions=["HR_2"])
    assert {b.region for b in d.train + d.val} == {"HR_2"}
    assert [r["id"] for r in d.checksums["regions"]] == ["HR_2"]
    with pytest.raises(InputError, match="no region 'HR_9'"):
        load_pairs(ws, regions=["HR_9"])
    with pytest.raises(InputError, match="no training pairs"):
        load_pairs(ws / "pairs")


def test_packages_import_without_torch():
    code = ("import sys, dleem.models, dleem.training, dleem.training.options;"
            "from dleem.models import ARCHITECTURES, PRESETS, ModelConfig;"
            "ModelConfig.tiny(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
