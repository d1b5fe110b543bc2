"""The loss terms beside the pixel loss: the forward model, the pore term, their weights and recipes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_training import make_workspace, run_cli, tiny_options

from dleem import imaging
from dleem.errors import ParameterError
from dleem.imaging import Normalization
from dleem.models.ensemble import DihedralEnsemble
from dleem.training import train
from dleem.training.losses import (
    LRNoise,
    PorePhase,
    consistency_loss,
    degrade,
    gaussian_blur,
    pore_loss,
)
from dleem.training.options import DEFAULT_RECIPE, RECIPES, TrainOptions
from dleem.trust.noise import NoiseModel


@pytest.mark.parametrize("sigma", [0.0, 0.45, 1.3])
def test_torch_forward_model_equals_the_imaging_one(sigma):
    """One rule, two array libraries: the training term degrades as the consistency map does."""
    x = np.random.default_rng(1).random((44, 36)).astype(np.float32)
    ours = degrade(torch.from_numpy(x)[None, None], 4, sigma)[0, 0].numpy()
    np.testing.assert_allclose(ours, imaging.degrade(x, 4, sigma), atol=1e-6)


def test_gaussian_blur_matches_scipy_at_the_border_too():
    from scipy import ndimage

    x = np.random.default_rng(2).random((20, 9)).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(x)[None, None], 1.7)[0, 0].numpy()
    np.testing.assert_allclose(ours, ndimage.gaussian_filter(x, 1.7, mode="reflect", truncate=4.0), atol=1e-6)


def test_consistency_ignores_the_noise_and_not_a_contradiction():
    yy, xx = np.mgrid[:96, :96]
    fine = torch.from_numpy(np.sin(xx / 5.0).astype(np.float32) * np.cos(yy / 7.0).astype(np.float32))[None, None]
    noise = LRNoise(NoiseModel(a=1e-4 * 255 ** 2, b=0.0),  # sigma 0.01 in network units
                    Normalization(input_dtype="uint8", dtype_max=255.0, mean=0.0, std=1.0))
    lr = degrade(fine, 4, 0.5)
    noisy = lr + 0.01 * torch.randn(lr.shape, generator=torch.Generator().manual_seed(0))
    assert float(consistency_loss(fine, lr, 4, 0.5, noise)) == 0.0
    assert float(consistency_loss(fine, noisy, 4, 0.5, noise)) < 0.02  # only the > 2 sigma tail
    assert float(consistency_loss(torch.roll(fine, 4, dims=-1), noisy, 4, 0.5, noise)) > 5.0
    torch.testing.assert_close(noise.sigma(torch.zeros(3)), torch.full((3,), 0.01))


def _two_phase(rng: np.random.Generator) -> np.ndarray:
    """Solid at 1, discs of pore at 0, plus noise."""
    yy, xx = np.mgrid[:64, :64]
    img = np.ones((64, 64), np.float32)
    for cy, cx, r in ((16, 16, 4), (40, 44, 12), (50, 12, 3), (12, 48, 8)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.0
    return img + rng.normal(0, 0.2, img.shape).astype(np.float32)


def test_pore_phase_and_pore_loss_reward_the_pores_and_nothing_else():
    rng = np.random.default_rng(4)
    hr = _two_phase(rng)
    phase = PorePhase.from_values(hr)
    assert 0.3 < phase.threshold < 0.7 and 0.05 < phase.softness < 0.2
    t = torch.from_numpy(hr)[None, None]
    clean = torch.from_numpy(np.where(hr < 0.5, 0.0, 1.0).astype(np.float32))[None, None]
    solid = torch.ones_like(t)
    invented = clean.clone()
    invented[..., 2:8, 50:56] = 0.0  # a pore HR does not have
    good, bad, none = (float(pore_loss(x, t, None, phase)) for x in (clean, invented, solid))
    assert good < 0.12 and good < bad < none and none > 0.9
    # the bright side: the same image inverted is the same loss
    flipped = PorePhase.from_values(1 - hr, dark=False)
    assert float(pore_loss(1 - clean, 1 - t, None, flipped)) == pytest.approx(good, abs=0.01)
    # gradients flow to the SR only
    sr = solid.clone().requires_grad_(True)
    pore_loss(sr, t, None, phase).backward()
    assert sr.grad is not None and float(sr.grad.abs().sum()) > 0


def test_pore_phase_refuses_a_single_phase():
    with pytest.raises(Exception, match="single grey phase"):
        PorePhase.from_values(np.full(100, 0.5))


@pytest.mark.parametrize("name", ["consistency_weight", "pore_weight", "adv_weight"])
@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_bad_weights_are_refused(name, value):
    with pytest.raises(ParameterError) as info:
        TrainOptions(steps=1, **{name: value}).validate()
    assert info.value.parameter == name


def test_recipes_fill_the_weights_and_pixel_zeroes_them():
    o = TrainOptions(steps=1)
    o.validate()
    assert o.recipe == DEFAULT_RECIPE == "pixel" and o.adv_weight == 0.0
    alone = TrainOptions(steps=1, adv_weight=0.01)  # a weight alone: the default under it
    alone.validate()
    assert alone.adv_weight == 0.01 and alone.recipe == "custom"
    alone.validate()  # validating again changes nothing
    assert alone.adv_weight == 0.01 and alone.recipe == "custom"
    same = TrainOptions(steps=1, adv_weight=RECIPES["gan"]["adv_weight"])
    same.validate()
    assert same.recipe == "gan"
    g = TrainOptions(steps=1, recipe="gan")
    g.validate()
    assert {k: getattr(g, k) for k in RECIPES["gan"]} == RECIPES["gan"] and g.adv_weight > 0
    p = TrainOptions(steps=1, recipe="pixel")
    p.validate()
    assert p.adv_weight == p.consistency_weight == p.pore_weight == 0.0
    q = TrainOptions(steps=1, recipe="gan", pore_weight=0.25)
    q.validate()
    assert q.pore_weight == 0.25 and q.adv_weight == RECIPES["gan"]["adv_weight"]
    with pytest.raises(ParameterError, match="must be 0 with recipe pixel") as info:
        TrainOptions(steps=1, recipe="pixel", pore_weight=0.1).validate()
    assert info.value.parameter == "pore_weight"
    with pytest.raises(ParameterError):
        TrainOptions(steps=1, recipe="srgan").validate()


@pytest.mark.parametrize("flag,value", [("--consistency-weight", "-1"), ("--pore-weight", "nan"),
                                        ("--pore-weight", "inf")])
def test_cli_refuses_a_bad_weight_in_one_line(tmp_path, capsys, flag, value):
    ws = make_workspace(tmp_path / "ws")
    code, err = run_cli(str(ws), "-o", str(tmp_path / "m"), flag, value, capsys=capsys)
    assert code == 2 and f"{flag} must be a finite number >= 0" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_cli_recipe_pixel_refuses_a_non_pixel_weight(tmp_path, capsys):
    ws = make_workspace(tmp_path / "ws")
    code, err = run_cli(str(ws), "-o", str(tmp_path / "m"), "--recipe", "pixel", "--adv-weight", "0.01",
                        capsys=capsys)
    assert code == 2 and "--adv-weight must be 0 with recipe pixel" in err


def test_training_with_every_term_logs_them_and_records_the_weights(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "m"
    res = train(ws, out, tiny_options(steps=6, warmup=0.5, consistency_weight=0.5, pore_weight=0.2))
    gan = [r for r in res.history if r["phase"] == "gan" and r["loss_pixel"] is not None]
    assert gan and all(r["loss_consistency"] > 0 and 0 < r["loss_pore"] <= 1 for r in gan)
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["consistency_weight"] == 0.5 and training["pore_weight"] == 0.2
    assert training["recipe"] == "gan" and training["pore_threshold"] > 0
    assert training["lr_noise_model"]["b"] >= 0
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert "loss_consistency" in header and "loss_pore" in header


def test_recipe_pixel_trains_a_pixel_only_model(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    res = train(ws, tmp_path / "p", tiny_options(steps=4, recipe="pixel"))
    assert all(r["phase"] == "pixel" for r in res.history)
    training = json.loads((tmp_path / "p" / "config.json").read_text())["training"]
    assert training["adv_weight"] == training["consistency_weight"] == training["pore_weight"] == 0
    assert training["pore_threshold"] is None


def test_resume_refuses_other_weights(tmp_path):
    from dleem.errors import DleemError

    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "m"
    train(ws, out, tiny_options(steps=4, checkpoint_every=2, keep_checkpoints=0, pore_weight=0.1))
    with pytest.raises(DleemError, match="trained with pore_weight 0.1, not 0.3$"):
        train(ws, out, tiny_options(steps=8, resume=True, pore_weight=0.3))


def test_dihedral_ensemble_is_exact_for_an_equivariant_map_and_averages_otherwise():
    x = torch.from_numpy(np.random.default_rng(5).random((2, 1, 12, 10)).astype(np.float32))
    up = torch.nn.Upsample(scale_factor=2, mode="nearest")
    torch.testing.assert_close(DihedralEnsemble(up)(x), up(x))
    shift = torch.nn.Sequential(torch.nn.ZeroPad2d((1, 0, 0, 0)), torch.nn.Upsample(scale_factor=2))
    y = DihedralEnsemble(lambda v: shift(v)[..., :, :-2])(x)  # not equivariant under flips
    assert y.shape == (2, 1, 24, 20)
    assert not torch.allclose(y, shift(x)[..., :, :-2])


def test_divergence_names_the_new_terms():
    from dleem.errors import DleemError
    from dleem.training.pipeline import _mean_losses

    window = [torch.tensor([0.1, 0.0, 0.0, 0.2, 0.3]), torch.tensor([0.1, 0.0, 0.0, 0.2, math.nan])]
    with pytest.raises(DleemError, match="diverged at step 12: the pore loss is NaN"):
        _mean_losses(window, 12)
    window[1] = torch.tensor([0.1, 0.0, 0.0, math.inf, 0.3])
    with pytest.raises(DleemError, match="diverged at step 12: the consistency loss is infinite"):
        _mean_losses(window, 12)
