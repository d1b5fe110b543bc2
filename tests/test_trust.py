"""The trust map: noise model, consistency in noise units, novelty, calibration, the model
folder's trust files and `dleem upscale --trust`, on real arrays and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from dleem.cli import main
from dleem.imaging import degrade
from dleem.trust.blocks import (
    FEATURE_NAMES,
    block_shape,
    block_stats,
    chi_threshold,
    consistency_chi,
)
from dleem.trust.calibration import Calibration, Reference, design, fit_calibration
from dleem.trust.folder import HeldOut, ModelTrust, read_model_trust, write_model_trust
from dleem.trust.noise import NoiseModel, estimate_noise_model, noise_from_residual

A, B_SHOT = -12.0, 1.6  # variance = a + b * signal (8-bit grey levels), as the synthetic SEM gives


def _specimen(shape: tuple[int, int], seed: int = 0, smooth: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random(shape), smooth)
    x = (x - x.min()) / (x.max() - x.min())
    return (30 + 190 * x).astype(np.float32)


def _noisy(clean: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    var = np.maximum(A + B_SHOT * clean, 0.5)
    return clean + rng.normal(0, 1, clean.shape).astype(np.float32) * np.sqrt(var).astype(np.float32)


# -- noise model ------------------------------------------------------------------------------
def test_noise_model_from_the_residual_and_from_the_image_alone():
    clean = _specimen((384, 384))
    noisy = _noisy(clean)
    direct = noise_from_residual(clean, noisy - clean)
    assert direct.b == pytest.approx(B_SHOT, rel=0.08) and direct.a == pytest.approx(A, abs=4.0)
    alone = estimate_noise_model(noisy)  # the fallback: Immerkær's mask cancels the smooth signal
    assert alone.b == pytest.approx(B_SHOT, rel=0.15)
    s = np.array([50.0, 200.0])
    np.testing.assert_allclose(alone.variance(s), A + B_SHOT * s, rtol=0.15)


def test_noise_model_round_trip_and_floor():
    m = NoiseModel.from_dict({"a": -5.0, "b": 0.5}, source="registration")
    assert m.to_dict() == {"a": -5.0, "b": 0.5, "source": "registration"}
    assert float(m.variance(0.0)) == pytest.approx(1 / 12)  # never below the quantisation variance
    with pytest.raises(ValueError):
        NoiseModel.from_dict({"a": float("nan"), "b": 0.0})


# -- consistency in noise units -----------------------------------------------------------------
def test_a_faithful_sr_gives_the_chi_square_null_and_its_false_alarm_rate():
    """Where SR is the truth, the block statistic is chi-square/n: mean 1, and the threshold is
    exceeded at the stated false-alarm rate."""
    k, sigma, b = 2, 0.8, 16
    fine = _specimen((2 * 512, 2 * 512), seed=3, smooth=6.0)
    clean_lr = degrade(fine, k, sigma)
    noise = NoiseModel(a=A, b=B_SHOT)
    chis = []
    for seed in range(4):
        lr = _noisy(clean_lr, seed=10 + seed)
        chis.append(consistency_chi(clean_lr - lr, lr, noise, b).ravel())
    chi = np.concatenate(chis)
    assert chi.mean() == pytest.approx(1.0, abs=0.03)
    assert np.std(chi) == pytest.approx(np.sqrt(2 / b**2), rel=0.2)
    assert np.mean(chi > chi_threshold(b * b, 0.01)) < 0.03  # 1 % false alarms, up to sampling
    # an SR that drew structure the measurement rules out
    wrong = fine.copy()
    wrong[200:264, 200:264] -= 60
    lr = _noisy(clean_lr, seed=99)
    chi_bad = consistency_chi(degrade(wrong, k, sigma) - lr, lr, noise, b)
    i, j = 232 // k // b, 232 // k // b
    assert chi_bad[i, j] > 10 * chi_threshold(b * b)


def test_block_grid_keeps_the_last_partial_block():
    assert block_shape((100, 64), 32) == (4, 2)
    lr = _noisy(_specimen((100, 70)))
    s = block_stats(lr, (0, 100, 0, 70), NoiseModel(A, B_SHOT), 32, 255.0)
    assert s.features.shape == (4, 3, len(FEATURE_NAMES)) and s.n_px[-1, -1] == 4 * 6 and np.isnan(s.chi).all()


def test_block_statistics_of_tiles_equal_the_whole_image():
    lr = _noisy(_specimen((128, 160)))
    noise = NoiseModel(A, B_SHOT)
    whole = block_stats(lr, (0, 128, 0, 160), noise, 32, 255.0)
    part = block_stats(lr, (64, 128, 96, 160), noise, 32, 255.0)
    np.testing.assert_allclose(part.features, whole.features[2:, 3:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(part.texture_gl, whole.texture_gl[2:, 3:], rtol=1e-5)


# -- novelty and calibration --------------------------------------------------------------------
def test_novelty_separates_another_texture():
    noise = NoiseModel(A, B_SHOT)
    seen = _noisy(_specimen((256, 256), seed=1, smooth=3.0))
    unseen = _noisy(_specimen((256, 256), seed=2, smooth=12.0) * 0.4 + 20)
    ref = Reference.build(block_stats(seen, (0, 256, 0, 256), noise, 32, 255.0).features)
    same = ref.novelty(block_stats(_noisy(_specimen((256, 256), seed=5)), (0, 256, 0, 256), noise, 32, 255.0).features)
    other = ref.novelty(block_stats(unseen, (0, 256, 0, 256), noise, 32, 255.0).features)
    assert np.median(same) < 1.0 and other.min() > 1.0


def test_calibration_recovers_a_known_error_model_and_ranks_held_out_blocks():
    rng = np.random.default_rng(0)
    texture = rng.uniform(2, 40, 60)
    chi = rng.uniform(0.9, 3.0, 60)
    x = design(texture, np.full(60, 5.0), chi)
    base = np.expm1(x[:, :2] @ np.array([0.3, 0.6]))
    excess = np.expm1(x[:, 2])
    measured = np.hypot(base * np.exp(rng.normal(0, 0.05, 60)), excess)
    cal = fit_calibration(x, np.full(60, 0.5), measured, "test_areas")
    np.testing.assert_allclose(cal.coef, [0.3, 0.6], atol=0.15)
    assert cal.spearman > 0.9 and cal.median_abs_error_gl < 0.1 * np.median(measured)
    assert cal.eta_source == "default"  # no held-out block beyond the training range
    # beyond the range the structural part grows with the novelty; the measured excess is a floor
    row = design(np.array([10.0, 10.0]), np.array([5.0, 5.0]), np.array([1.0, 1.0]))
    pred = cal.predict(row, np.array([0.5, 3.0]))
    assert pred[1] == pytest.approx(3.0 * pred[0])
    seen_excess = cal.predict(design(np.array([10.0]), np.array([5.0]), np.array([5.0])), np.array([0.5]))
    assert seen_excess[0] >= 5.0 * 2.0  # sigma * sqrt(chi - 1)
    assert Calibration.from_dict(cal.to_dict()).coef == cal.coef


def test_model_trust_files_round_trip(tmp_path):
    ref = Reference.build(np.random.default_rng(0).normal(size=(40, len(FEATURE_NAMES))))
    trust = ModelTrust(block_size_lr_px=32, dtype_max=255.0, noise=NoiseModel(A, B_SHOT, "registration"),
                       reference=ref, calibration=Calibration(coef=[1.0, 0.5], n_blocks=9, source="test_areas"),
                       held_out=HeldOut(x=np.ones((3, 3)), novelty=np.ones(3), rmse=np.arange(3.0)))
    write_model_trust(tmp_path, trust)
    back = read_model_trust(tmp_path)
    np.testing.assert_allclose(back.reference.features, ref.features, rtol=1e-6)
    assert back.noise.a == A and back.calibration.coef == [1.0, 0.5]
    np.testing.assert_allclose(back.held_out.rmse, [0, 1, 2])
    data = json.loads((tmp_path / "trust.json").read_text())
    assert data["schema"] == "dleem-model-trust" and data["noise_model"]["b"] == B_SHOT


# -- through the CLI: register (v2), train, upscale --trust -----------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trust")
    data, ws, model = root / "data", root / "ws", root / "ws" / "models" / "m"
    assert main(["synth", "-o", str(data), "--size", "256", "--regions", "2", "--hr-size", "448",
                 "--seed", "4"]) == 0
    assert main(["register", str(data / "LR.tif"), str(data / "HR_1.tif"), str(data / "HR_2.tif"),
                 "-o", str(ws)]) == 0
    assert main(["train", str(ws), "-o", str(model), "--steps", "12", "--preset", "tiny", "--device", "cpu",
                 "--batch", "4"]) == 0
    return {"root": root, "data": data, "ws": ws, "model": model}


def test_registration_v2_records_the_noise_model_and_v1_is_still_read(trained):
    from dleem.workspace import Workspace

    reg = json.loads((trained["ws"] / "registration.json").read_text())
    assert reg["version"] == 2
    truth = json.loads((trained["data"] / "truth.json").read_text())
    # the synthetic acquisition's shot noise: var = 255 gain (DN - 255 offset) / dose
    b_true = 255 * truth["lr_gain"] / truth["lr_dose"]
    lr = tifffile.imread(trained["data"] / "LR.tif").astype(np.float32)
    for region in reg["regions"]:
        assert set(region["noise_model"]) == {"a", "b"}
        r0, c0, r1, c1 = region["lr_box"]
        level = float(np.median(lr[r0:r1, c0:c1]))  # a and b trade off over one crop's signal range
        fitted = region["noise_model"]["a"] + region["noise_model"]["b"] * level
        assert fitted == pytest.approx(b_true * (level - 255 * truth["lr_offset"]) + 1 / 12, rel=0.15)
    old = dict(reg, version=1)
    for region in old["regions"]:
        del region["noise_model"]
    v1 = trained["root"] / "v1"
    v1.mkdir()
    (v1 / "registration.json").write_text(json.dumps(old))
    assert Workspace(v1).read_registration().regions[0].noise_model is None


def test_train_writes_the_trust_files(trained):
    trust = read_model_trust(trained["model"])
    assert trust.block_size_lr_px == 32 and trust.noise.source == "registration"
    assert len(trust.reference.features) >= 2
    assert trust.calibration.source in ("test_areas", "none")
    assert len(trust.held_out.rmse) == trust.calibration.n_blocks


def test_upscale_writes_the_trust_map(trained):
    out = trained["root"] / "up"
    lr = trained["data"] / "LR.tif"
    assert main(["upscale", str(lr), "--model", str(trained["model"]), "-o", str(out / "SR.ome.tif"),
                 "--trust", str(out / "TRUST.tif"), "--consistency", str(out / "cons.tif"), "--tile", "64",
                 "--device", "cpu"]) == 0
    with tifffile.TiffFile(out / "TRUST.tif") as tf:
        series = tf.series[0]
        assert series.axes == "CYX" and series.shape == (2, 8, 8) and series.dtype == np.float32
        page = tf.pages[0]
        assert not page.is_tiled
        px = json.loads((trained["data"] / "truth.json").read_text())["lr_pixel_size_um"]
        assert page.tags["XResolution"].value[0] / page.tags["XResolution"].value[1] == pytest.approx(1e4 / (32 * px))
        assert f'PhysicalSizeX="{32 * px:g}' in tf.ome_metadata or f'PhysicalSizeX="{32 * px}' in tf.ome_metadata
        planes = series.asarray()
    assert (planes[0] > 0).all() and set(np.unique(planes[1])) <= {0.0, 1.0}
    info = json.loads((out / "TRUST.json").read_text())
    for key in ("block_size_lr_px", "lr_sha256", "model", "noise_model", "thresholds", "supported_fraction",
                "calibration", "least_trusted", "consistency_sigma_gl"):
        assert key in info
    from dleem.io.checksum import sha256_file

    assert info["lr_sha256"] == sha256_file(lr)
    assert info["supported_fraction"] == pytest.approx(planes[1].mean())
    worst = info["least_trusted"][0]
    assert worst["predicted_rmse_gl"] == pytest.approx(float(planes[0].max()))
    assert {"spearman", "median_abs_error_gl", "n_blocks"} <= set(info["calibration"])
    assert info["thresholds"]["consistency_false_alarm_rate"] == pytest.approx(1e-3)
    # the consistency map stays in grey levels; its noise sigma goes into the summary
    cons = tifffile.imread(out / "cons.tif")
    assert cons.dtype == np.float32 and cons.shape == (256, 256)
    assert info["consistency_sigma_gl"] > 1.0


@pytest.mark.parametrize("case", ["input", "output", "tile", "no_trust_files"])
def test_upscale_trust_refusals(trained, tmp_path, capsys, case):
    lr = trained["data"] / "LR.tif"
    model = trained["model"]
    out = tmp_path / "SR.ome.tif"
    trust, tile = str(tmp_path / "T.tif"), "64"
    if case == "input":
        trust = str(lr)
    elif case == "output":
        trust = str(out)
    elif case == "tile":
        tile = "48"
    else:
        bare = tmp_path / "bare"
        bare.mkdir()
        for name in ("config.json", "generator.safetensors"):
            (bare / name).write_bytes((model / name).read_bytes())
        model = bare
    rc = main(["upscale", str(lr), "--model", str(model), "-o", str(out), "--trust", trust, "--tile", tile,
               "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert {"input": "would be the input", "output": "would be the SR output", "tile": "--tile must be a multiple",
            "no_trust_files": "dleem train"}[case] in err[0]
    assert not out.exists()
    if case == "no_trust_files":
        assert str(model) in err[0]


def test_the_report_shows_the_trust_map(trained):
    """upscale --trust into the workspace's trust path, then dleem evaluate: a trust section with
    the map, the least trusted blocks (LR | SR) and the supported fraction in the summary."""
    ws, data = trained["ws"], trained["data"]
    up = ws / "upscale"
    assert main(["upscale", str(data / "LR.tif"), "--model", str(trained["model"]), "-o", str(up / "SR.ome.tif"),
                 "--trust", str(up / "trust.tif"), "--consistency", str(up / "consistency.tif"), "--tile", "64",
                 "--device", "cpu"]) == 0
    assert main(["evaluate", str(ws), "--model", str(trained["model"]), "--sr", str(up / "SR.ome.tif"),
                 "--consistency", str(up / "consistency.tif"), "--tile-size", "64", "--thickness-tiles", "2"]) == 0
    page = (ws / "report" / "index.html").read_text()
    assert "id='trust'" in page or 'id="trust"' in page
    assert "of the upscaled area is supported" in page
    figs = ws / "report" / "figures"
    for name in ("trust_map.png", "trust_gallery.png", "consistency_sigma.png"):
        assert (figs / name).stat().st_size > 0, name


def test_crossval_refits_the_calibration_on_its_folds(trained, tmp_path):
    """dleem crossval scores each left-out region with its fold's model and refits the
    calibration of the workspace's full model on those blocks."""
    before = read_model_trust(trained["model"])
    assert main(["crossval", str(trained["ws"]), "-o", str(tmp_path / "cv"), "--steps", "4", "--preset", "tiny",
                 "--device", "cpu", "--batch", "4", "--tile-size", "64", "--no-truth"]) == 0
    after = read_model_trust(trained["model"])
    assert after.calibration.source == "crossval"
    assert after.calibration.n_blocks > before.calibration.n_blocks  # whole regions, not test areas
    fold = read_model_trust(next((tmp_path / "cv").glob("fold*")))  # a fold model: its own features
    assert len(fold.reference.features) < len(after.reference.features)
