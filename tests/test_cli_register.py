"""`dleem register`: registration.json, --keep-going, exit codes, pairs and QC in the workspace."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage

import dleem.registration as registration
from dleem.cli import main
from dleem.errors import RegistrationError
from dleem.io import read_image, write_image

RATIO = 4
LR_PX_UM = 0.4
ENTRY_FIELDS = {"file", "status", "hr_to_lr", "ncc_peak", "ncc_distinctness", "residual",
                "iterations", "blur_sigma_lr_px", "uncertainty", "gain", "offset", "ratio",
                "rotation_deg", "message"}


def _world(seed: int, size: int) -> np.ndarray:
    """A textured grey field at HR pixel size: blobs of several sizes, 8-bit range."""
    rng = np.random.default_rng(seed)
    img = sum(ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), s) * s for s in (2, 6, 16))
    img = (img - img.mean()) / img.std()
    return np.clip(120 + 40 * img, 0, 255)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """LR 256 px (4x4 block means of an HR world), HR_1 a 320 px cut of it, HR_2 elsewhere."""
    root = tmp_path_factory.mktemp("scene")
    world = _world(0, 256 * RATIO)
    lr = world.reshape(256, RATIO, 256, RATIO).mean(axis=(1, 3))
    lr = ndimage.gaussian_filter(lr, 0.6)
    v0, u0 = 300, 420
    hr1 = world[v0 : v0 + 320, u0 : u0 + 320]
    hr2 = _world(7, 320)  # not in the LR image
    paths = {
        "lr": write_image(root / "LR.tif", np.round(lr).astype(np.uint8), pixel_size_um=LR_PX_UM),
        "hr1": write_image(root / "HR_1.tif", np.round(hr1).astype(np.uint8),
                           pixel_size_um=LR_PX_UM / RATIO),
        "hr2": write_image(root / "HR_2.tif", np.round(hr2).astype(np.uint8),
                           pixel_size_um=LR_PX_UM / RATIO),
    }
    truth = np.array([[1 / RATIO, 0, (u0 + 0.5) / RATIO - 0.5], [0, 1 / RATIO, (v0 + 0.5) / RATIO - 0.5]])
    return paths, truth


@pytest.fixture
def known_maps(scene, monkeypatch):
    """Stand in for the registration core with the known answer (HR_2: not found)."""
    paths, truth = scene
    hr1 = read_image(paths["hr1"]).data
    key1 = hashlib.sha256(np.ascontiguousarray(hr1).tobytes()).hexdigest()

    def fake(lr, hr, ratio, **kwargs):
        assert ratio == pytest.approx(RATIO)
        if hashlib.sha256(np.ascontiguousarray(hr).tobytes()).hexdigest() != key1:
            raise RegistrationError("region not found in the LR image (NCC peak 0.21)")
        box = (74, 104, 156, 186)
        return registration.RegistrationResult(
            hr_to_lr=registration.AffineMap(truth), gain=1.0, offset=0.0, blur_sigma_lr_px=0.6,
            ncc_peak=0.97, ncc_distinctness=3.1, residual=0.8, iterations=7,
            uncertainty={"corner_rms_lr_px": 0.004, "param_std": {"tx": 0.002}},
            residual_map=np.random.default_rng(0).normal(0, 0.8, (box[2] - box[0], box[3] - box[1])),
            lr_box=box, ratio=4.0, rotation_deg=0.0,
        )

    monkeypatch.setattr(registration, "register_region", fake)
    return truth


def test_register_writes_registration_json_pairs_and_qc(scene, known_maps, tmp_path, capsys):
    paths, truth = scene
    ws = tmp_path / "ws"
    assert main(["register", str(paths["lr"]), str(paths["hr1"]), "-o", str(ws)]) == 0
    reg = json.loads((ws / "registration.json").read_text())
    assert reg["lr_file"] == str(paths["lr"].resolve())
    (entry,) = reg["regions"]
    assert ENTRY_FIELDS <= set(entry)
    assert entry["status"] == "ok" and entry["file"] == str(paths["hr1"].resolve())
    np.testing.assert_allclose(entry["hr_to_lr"], truth)
    assert entry["ratio"] == pytest.approx(4.0) and entry["ratio_source"] == "pixel_size"
    manifest = json.loads((ws / "pairs" / "manifest.json").read_text())
    assert manifest["scale"] == 4 and manifest["lr_pixel_size_um"] == pytest.approx(LR_PX_UM)
    region = manifest["regions"][0]
    assert region["hr_pixel_size_um"] == pytest.approx(LR_PX_UM / RATIO)
    assert region["hr_sha256"] == hashlib.sha256(paths["hr1"].read_bytes()).hexdigest()
    # the region covers LR pixels 105..184 x 75..154 exactly (HR edge on LR pixel edges)
    assert region["lr_box"] == [75, 105, 155, 185]
    target = read_image(ws / "pairs" / region["hr"]).data
    hr1 = read_image(paths["hr1"]).data
    np.testing.assert_allclose(target, hr1, atol=1e-3)  # k = ratio, pure translation
    assert (ws / "qc" / "overview.png").stat().st_size > 10_000
    assert (ws / "qc" / "HR_1.png").stat().st_size > 10_000
    steps = json.loads((ws / "manifest.json").read_text())["steps"]
    assert steps["register"]["inputs"]["lr"]["sha256"] == manifest["lr_sha256"]
    assert "1/1 regions registered" in capsys.readouterr().out


def test_keep_going_keeps_a_failed_region_with_null_map(scene, known_maps, tmp_path):
    paths, _ = scene
    ws = tmp_path / "ws"
    args = ["register", str(paths["lr"]), str(paths["hr2"]), str(paths["hr1"]), "-o", str(ws),
            "--keep-going", "--scale", "2", "--no-qc"]
    assert main(args) == 0
    reg = json.loads((ws / "registration.json").read_text())
    assert [r["status"] for r in reg["regions"]] == ["skipped", "ok"]
    skipped = reg["regions"][0]
    assert skipped["hr_to_lr"] is None and "not found" in skipped["message"]
    assert ENTRY_FIELDS <= set(skipped)
    manifest = json.loads((ws / "pairs" / "manifest.json").read_text())
    assert manifest["scale"] == 2
    assert [r["id"] for r in manifest["regions"]] == ["HR_2"]  # ids follow input positions


def test_failed_region_without_keep_going_exits_2_with_one_line(scene, known_maps, tmp_path, capsys):
    paths, _ = scene
    code = main(["register", str(paths["lr"]), str(paths["hr1"]), str(paths["hr2"]), "-o",
                 str(tmp_path / "ws")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("dleem register: error: ") and "HR_2.tif" in err[0]
    assert "not found" in err[0]


def test_missing_pixel_size_asks_for_ratio(scene, known_maps, tmp_path, capsys):
    paths, _ = scene
    bare = write_image(tmp_path / "HR_bare.tif", read_image(paths["hr1"]).data)
    code = main(["register", str(paths["lr"]), str(bare), "-o", str(tmp_path / "ws")])
    assert code == 2
    assert "--ratio" in capsys.readouterr().err
    assert main(["register", str(paths["lr"]), str(bare), "-o", str(tmp_path / "ws"),
                 "--ratio", "4", "--no-qc"]) == 0
    entry = json.loads((tmp_path / "ws" / "registration.json").read_text())["regions"][0]
    assert entry["ratio_source"] == "user"


def test_real_core_finds_the_translation_on_the_other_grid(scene, tmp_path):
    """The whole chain with the registration core: the map found must carry the HR offset
    to LR coordinates with the scale factor and the half-pixel convention."""
    pytest.importorskip("dleem.registration.refine")
    paths, truth = scene
    ws = tmp_path / "ws"
    assert main(["register", str(paths["lr"]), str(paths["hr1"]), "-o", str(ws), "--no-qc"]) == 0
    entry = json.loads((ws / "registration.json").read_text())["regions"][0]
    found = np.asarray(entry["hr_to_lr"])
    corners = np.array([[-0.5, -0.5, 1], [319.5, -0.5, 1], [319.5, 319.5, 1], [-0.5, 319.5, 1]])
    err = corners @ found.T - corners @ truth.T
    assert np.sqrt((err**2).sum(axis=1).mean()) < 0.05
