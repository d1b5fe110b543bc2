"""Training: pairs reading, crops, losses, the trainer (loss falls, exact resume), CLI errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from dleem.cli import main as cli_main
from dleem.errors import DleemError
from dleem.models import load_model
from dleem.training import TrainOptions, load_pairs, sample_batch, train, validation_tiles
from dleem.training.data import batch_generator
from dleem.training.losses import EMA, discriminator_loss, generator_adv_loss, pixel_loss
from dleem.training.schedule import cosine_lr

SENTINEL = 250.0  # grey value written only into the test areas


def texture(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A grain/pore-like texture in [0, 1]: smoothed noise, softly thresholded, plus shading."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
    field = 1 / (1 + np.exp(-field / field.std() * 3))
    return 0.15 + 0.7 * field


def make_workspace(
    root: Path, *, scale: int = 4, lr_side: int = 64, regions: int = 1, seed: int = 0,
    nearest: bool = False, holes: bool = False,
) -> Path:
    """A workspace whose pairs/ follows docs/CONTRACTS.md exactly, from a known map.

    The fine truth is a texture; LR = area average of the blurred truth + noise (uint8); the
    HR target is the truth in LR grey values. ``nearest``: HR = LR repeated k x k (for
    alignment tests). Test areas hold `SENTINEL` so any read of them is detectable.
    """
    pairs = root / "pairs"
    pairs.mkdir(parents=True)
    k = scale
    rng = np.random.default_rng(seed)
    entries, lr_all = [], []
    for i in range(regions):
        truth = texture((lr_side * k, lr_side * k), seed + i)
        blurred = ndimage.gaussian_filter(truth, 0.8 * k)
        lr = blurred.reshape(lr_side, k, lr_side, k).mean(axis=(1, 3))
        lr = np.clip(np.rint((lr + rng.normal(0, 0.01, lr.shape)) * 255), 0, 255).astype(np.uint8)
        hr = np.kron(lr, np.ones((k, k))).astype(np.float32) if nearest else (truth * 255).astype(np.float32)
        mask = np.ones(hr.shape, np.uint8)
        if holes:
            mask[: k * 6, : k * 6] = 0
            hr[: k * 6, : k * 6] = np.nan
        test = [lr_side - 12, 0, lr_side, lr_side]
        lr[test[0]:, :] = int(SENTINEL)
        hr[k * test[0]:, :] = SENTINEL
        lr_all.append(lr)
        rid = f"HR_{i + 1}"
        tifffile.imwrite(pairs / f"{rid}_lr.tif", lr)
        tifffile.imwrite(pairs / f"{rid}_hr.tif", hr)
        tifffile.imwrite(pairs / f"{rid}_mask.tif", mask)
        entries.append({
            "id": rid, "hr_file": f"/abs/{rid}.tif", "hr_sha256": "0" * 64, "hr_pixel_size_um": 0.1,
            "ratio": float(k), "hr_to_lr": [[1 / k, 0, 0], [0, 1 / k, 0]], "gain": 1.0, "offset": 0.0,
            "lr_box": [0, 0, lr_side, lr_side], "lr": f"{rid}_lr.tif", "hr": f"{rid}_hr.tif",
            "mask": f"{rid}_mask.tif",
            "splits": {"train": [[0, 0, lr_side - 24, lr_side]],
                       "val": [[lr_side - 20, 0, lr_side - 16, lr_side]] if lr_side < 40 else
                              [[lr_side - 20 - 8, 0, lr_side - 16, lr_side]],
                       "test": [test]},
        })
    whole = np.concatenate(lr_all)
    manifest = {
        "version": 1, "scale": k, "lr_file": "/abs/LR.tif", "lr_sha256": hashlib.sha256(whole).hexdigest(),
        "lr_dtype": "uint8", "lr_shape": list(whole.shape), "lr_pixel_size_um": 0.4,
        "lr_stats": {"mean": float(whole.mean()), "std": float(whole.std()),
                     "min": float(whole.min()), "max": float(whole.max())},
        "lr_blur_sigma_px": 0.8, "regions": entries,
    }
    (pairs / "manifest.json").write_text(json.dumps(manifest))
    return root


def tiny_options(**kw) -> TrainOptions:
    # the GAN recipe, the path with the most in it (the default recipe is pixel-only)
    base = dict(steps=20, preset="tiny", batch=4, patch=8, device="cpu", seed=0, checkpoint_every=0, val_tile=16,
                val_tiles=4, recipe="gan")
    base.update(kw)
    return TrainOptions(**base)


# ----------------------------------------------------------------------------- data


def test_load_pairs_normalisation_and_no_test_area(tmp_path):
    ws = make_workspace(tmp_path)
    d = load_pairs(ws)
    man = json.loads((ws / "pairs" / "manifest.json").read_text())
    assert d.scale == 4
    assert d.normalization.input_dtype == "uint8" and d.normalization.dtype_max == 255.0
    assert d.normalization.mean == pytest.approx(man["lr_stats"]["mean"] / 255)
    assert d.normalization.std == pytest.approx(man["lr_stats"]["std"] / 255)
    assert [b.split for b in d.train + d.val] == ["train", "val"]
    n = d.normalization
    sentinel = float(n.apply(SENTINEL))
    for b in d.train + d.val:  # nothing of the test area is in memory
        assert not torch.isclose(b.hr, torch.tensor(sentinel)).any()
        assert not torch.isclose(b.lr, torch.tensor(sentinel)).any()
    assert d.lr_blur_sigma_px == 0.8 and d.lr_pixel_size_um == 0.4 and d.hr_pixel_size_um == 0.1
    assert len(d.checksums["regions"][0]["hr_sha256"]) == 64


def test_crops_are_aligned_and_flipped_together(tmp_path):
    ws = make_workspace(tmp_path, scale=3, nearest=True)
    d = load_pairs(ws)
    lr, hr, mask = sample_batch(d, 16, 10, batch_generator(0, 0, 0), rot90=True)
    assert lr.shape == (16, 1, 10, 10) and hr.shape == (16, 1, 30, 30) and mask.all()
    up = torch.repeat_interleave(torch.repeat_interleave(lr, 3, dim=-1), 3, dim=-2)
    assert torch.allclose(up, hr, atol=1e-5)
    # a pure function of (seed, rank, step)
    lr2, _, _ = sample_batch(d, 16, 10, batch_generator(0, 0, 0), rot90=True)
    lr3, _, _ = sample_batch(d, 16, 10, batch_generator(0, 1, 0), rot90=True)
    assert torch.equal(lr, lr2) and not torch.equal(lr, lr3)


def test_masked_targets_are_avoided(tmp_path):
    ws = make_workspace(tmp_path, holes=True)
    d = load_pairs(ws)
    assert torch.isfinite(d.train[0].hr).all()
    _, hr, mask = sample_batch(d, 32, 8, batch_generator(1, 0, 0))
    assert mask.float().mean() > 0.97
    assert validation_tiles(d, 16) is not None


# ----------------------------------------------------------------------------- losses


def test_losses_and_metrics():
    a = torch.zeros(2, 1, 16, 16)
    b = torch.ones(2, 1, 16, 16) * 0.5
    m = torch.zeros_like(a, dtype=torch.bool)
    m[..., :8] = True
    b2 = b.clone()
    b2[..., 8:] = 100.0  # masked pixels do not count
    assert pixel_loss(a, b2, m, "mae") == pytest.approx(0.5)
    assert pixel_loss(a, b2, m, "mse") == pytest.approx(0.25)
    real, fake = torch.tensor([3.0]), torch.tensor([-3.0])
    assert discriminator_loss(real, fake) < 0.01 and generator_adv_loss(real, fake) > 3
    assert cosine_lr(0.0) < 0.01 and cosine_lr(0.02) == pytest.approx(1.0) and cosine_lr(1.0) == pytest.approx(0.01)
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, 0.9)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert not torch.equal(ema.module.weight, net.weight)


# ----------------------------------------------------------------------------- trainer


def test_few_steps_lower_loss_and_write_model(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "model"
    res = train(ws, out, tiny_options(steps=40, warmup=0.5, lr=2e-3))
    rows = [r for r in res.history if r.get("loss_pixel") is not None]
    first, last = rows[0]["loss_pixel"], np.mean([r["loss_pixel"] for r in rows[-2:]])
    assert last < 0.8 * first
    assert {p.name for p in out.iterdir()} >= {"generator.safetensors", "generator_raw.safetensors",
                                               "config.json", "log.csv", "curves.png", "checkpoints"}
    assert any(r["phase"] == "gan" and r["loss_d"] is not None for r in res.history)
    m = load_model(out)
    assert m.scale == 4 and m.config.lr_blur_sigma_px == 0.8
    assert m.config.training["loss"] == "mae" and m.config.training["steps_done"] == 40
    assert m.config.train_data["manifest_sha256"]
    assert res.val_psnr_db is not None and np.isfinite(res.val_psnr_db)
    header = (out / "log.csv").read_text().splitlines()[0]
    assert header.startswith("step,elapsed_s,phase,lr,loss_pixel")


def test_resume_after_kill_gives_identical_weights(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    a = tmp_path / "a"
    opts = tiny_options(steps=8, checkpoint_every=4, keep_checkpoints=0, warmup=0.25)
    train(ws, a, opts)
    # simulate a kill just after the step-4 checkpoint: only that checkpoint survives
    b = tmp_path / "b"
    (b / "checkpoints").mkdir(parents=True)
    shutil.copy(a / "checkpoints" / "step_000000004.pt", b / "checkpoints")
    train(ws, b, tiny_options(steps=8, checkpoint_every=4, warmup=0.25, resume=True))
    from safetensors.torch import load_file

    for name in ("generator.safetensors", "generator_raw.safetensors"):
        ta, tb = load_file(a / name), load_file(b / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert torch.equal(ta[key], tb[key]), (name, key)
    # the same seed and steps give the same model on the same device
    train(ws, tmp_path / "c", opts)
    tc, ta = load_file(tmp_path / "c" / "generator.safetensors"), load_file(a / "generator.safetensors")
    assert all(torch.equal(tc[key], ta[key]) for key in ta)
    ca = torch.load(a / "checkpoints" / "step_000000008.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "step_000000008.pt", weights_only=True)
    for key in ca["discriminator"]:
        assert torch.equal(ca["discriminator"][key], cb["discriminator"][key]), key


def test_minutes_budget_and_custom_generator(tmp_path):
    ws = make_workspace(tmp_path / "ws", scale=2)

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = 2
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.shuffle = torch.nn.PixelShuffle(2)

        def forward(self, x):
            return self.shuffle(self.conv(x))

    res = train(ws, tmp_path / "m", tiny_options(steps=None, minutes=0.03, adv_weight=0),
                generator=Plain(), arch={"name": "plain"})
    assert res.steps > 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["receptive_field_lr_px"] == 1 and cfg["arch"] == {"name": "plain"}


# ----------------------------------------------------------------------------- errors (CLI)


def run_cli(*argv: str, capsys) -> tuple[int, str]:
    code = cli_main(["train", *argv])
    return code, capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(str(empty), "-o", str(tmp_path / "m"), "--steps", "2", capsys=capsys)
    assert code == 2 and "no training pairs" in err and len(err.strip().splitlines()) == 1
    code, err = run_cli(str(tmp_path / "nope"), "-o", str(tmp_path / "m"), capsys=capsys)
    assert code == 2 and "workspace not found" in err

    ws = make_workspace(tmp_path / "ws")
    code, err = run_cli(str(ws), "-o", str(tmp_path / "m"), "--steps", "2", "--scale", "3", capsys=capsys)
    assert code == 2 and "scale mismatch" in err and len(err.strip().splitlines()) == 1

    bad = make_workspace(tmp_path / "bad")
    tifffile.imwrite(bad / "pairs" / "HR_1_hr.tif", np.zeros((100, 100), np.float32))
    code, err = run_cli(str(bad), "-o", str(tmp_path / "m"), "--steps", "2", capsys=capsys)
    assert code == 2 and "HR_1_hr.tif: scale mismatch" in err

    # corrupt checkpoint on --resume
    m = tmp_path / "m2"
    (m / "checkpoints").mkdir(parents=True)
    (m / "checkpoints" / "step_000000004.pt").write_bytes(b"not a checkpoint")
    code, err = run_cli(str(ws), "-o", str(m), "--steps", "8", "--preset", "tiny", "--device", "cpu",
                        "--resume", capsys=capsys)
    assert code == 2 and "step_000000004.pt: cannot read checkpoint" in err
    code, err = run_cli(str(ws), "-o", str(m), "--steps", "8", "--preset", "tiny", capsys=capsys)
    assert code == 2 and "resume" in err and "force" in err and len(err.strip().splitlines()) == 1
    torch.save({"weights": torch.zeros(2)}, m / "checkpoints" / "step_000000004.pt")
    code, err = run_cli(str(ws), "-o", str(m), "--steps", "8", "--preset", "tiny", "--device", "cpu",
                        "--resume", capsys=capsys)
    assert code == 2 and "not a dleem training checkpoint" in err

    code, err = run_cli(str(ws), "-o", str(tmp_path / "m3"), "--steps", "2", "--patch", "60",
                        "--preset", "tiny", "--device", "cpu", capsys=capsys)
    assert code == 2 and "patch" in err


def test_cli_trains_tiny_model(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "m"
    code = cli_main(["train", str(ws), "-o", str(out), "--steps", "3", "--preset", "tiny", "--patch", "8",
                     "--batch", "2", "--device", "cpu", "--loss", "mse", "--adv-weight", "0"])
    assert code == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["loss"] == "mse" and cfg["training"]["adv_weight"] == 0
    with pytest.raises(DleemError):
        load_model(tmp_path / "ws")
