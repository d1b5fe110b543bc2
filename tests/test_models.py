"""Generator, discriminator, config and the model folder (safetensors + config.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dleem.errors import DleemError
from dleem.models import (
    ModelConfig,
    PatchDiscriminator,
    build_generator,
    load_model,
    measure_receptive_field,
    save_model,
)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 8])
def test_generator_shapes_any_scale(scale):
    g = build_generator(preset="tiny", scale=scale).eval()
    x = torch.randn(2, 1, 7, 9)
    assert g(x).shape == (2, 1, 7 * scale, 9 * scale)


def test_untrained_generator_is_close_to_bicubic():
    torch.manual_seed(0)
    g = build_generator(preset="tiny", scale=4).eval()
    x = torch.randn(1, 1, 16, 16)
    bic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        err = (g(x) - bic).abs().mean() / bic.abs().mean()
    assert err < 0.1


@pytest.mark.parametrize("preset,scale", [("tiny", 4), ("cpu", 3)])
def test_halo_bounds_receptive_field(preset, scale):
    """Perturb one input pixel: the output changes only within halo_lr_px of it."""
    torch.manual_seed(1)
    g = build_generator(preset=preset, scale=scale).eval()
    for p in g.parameters():  # random, not the near-bicubic init, so every path carries signal
        torch.nn.init.normal_(p, std=0.2)
    halo = g.receptive_field_lr_px
    n = 2 * halo + 11
    x = torch.randn(1, 1, n, n)
    x2 = x.clone()
    c = n // 2
    x2[0, 0, c, c] += 1.0
    with torch.no_grad():
        diff = (g(x2) - g(x)).abs()[0, 0]
    lr_rows, lr_cols = torch.nonzero(diff > 0, as_tuple=True)
    reach = max(int((lr_rows // scale - c).abs().max()), int((lr_cols // scale - c).abs().max()))
    assert reach <= halo
    assert reach == halo  # and it is tight: the halo is not a loose over-estimate
    assert measure_receptive_field(g, scale) == halo


def test_tiled_equals_whole():
    torch.manual_seed(2)
    g = build_generator(preset="tiny", scale=2).eval()
    halo = g.receptive_field_lr_px
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        whole = g(x)
        # right half computed from a tile that starts `halo` pixels before it
        tile = g(x[..., :, 20 - halo:])
    assert torch.allclose(whole[..., :, 40:], tile[..., :, 2 * halo:], atol=1e-5)


def test_discriminator_patch_and_global():
    d = PatchDiscriminator(width=8, stages=2)
    out = d(torch.randn(3, 1, 32, 32))
    assert out.shape == (3, 1, 8, 8)
    assert PatchDiscriminator(width=8, stages=3)(torch.randn(1, 1, 64, 64)).shape == (1, 1, 8, 8)
    dg = PatchDiscriminator(width=8, stages=2, global_pool=True)
    assert dg(torch.randn(3, 1, 32, 32)).shape == (3, 1)
    assert any("parametrizations" in name for name, _ in d.named_parameters())


def test_config_rejects_unknown_and_invalid():
    cfg = ModelConfig.tiny(scale=4).to_dict()
    with pytest.raises(DleemError, match="unknown key 'sclae'"):
        ModelConfig.from_dict({**cfg, "sclae": 4})
    with pytest.raises(DleemError, match="normalization.foo"):
        ModelConfig.from_dict({**cfg, "normalization": {**cfg["normalization"], "foo": 1}})
    with pytest.raises(DleemError, match="scale"):
        ModelConfig.from_dict({**cfg, "scale": 9})
    with pytest.raises(DleemError, match="std"):
        ModelConfig.from_dict({**cfg, "normalization": {**cfg["normalization"], "std": 0}})
    with pytest.raises(DleemError, match="missing key 'arch'"):
        ModelConfig.from_dict({k: v for k, v in cfg.items() if k != "arch"})


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(3)
    cfg = ModelConfig.tiny(scale=3, input_dtype="uint16", mean=0.3, std=0.1,
                           lr_pixel_size_um=0.4, hr_pixel_size_um=0.1, lr_blur_sigma_px=0.9,
                           train_data={"lr_sha256": "ab" * 32})
    g = build_generator(cfg.arch, cfg.scale)
    raw = build_generator(cfg.arch, cfg.scale)
    save_model(tmp_path / "m", g, cfg, raw_generator=raw)
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "config.json", "generator.safetensors", "generator_raw.safetensors"}
    m = load_model(tmp_path / "m")
    assert m.config == cfg
    assert m.scale == 3 and m.halo_lr_px == cfg.receptive_field_lr_px == 5
    assert not m.generator.training
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(m.generator(x), g.eval()(x))
    mr = load_model(tmp_path / "m", raw=True)
    with torch.no_grad():
        assert torch.equal(mr.generator(x), raw.eval()(x))


def test_normalize_denormalize(tmp_path):
    cfg = ModelConfig.tiny(scale=2, input_dtype="uint8", mean=0.4, std=0.2)
    save_model(tmp_path, build_generator(cfg.arch, 2), cfg)
    m = load_model(tmp_path)
    raw = np.array([[0, 102, 255]], dtype=np.uint8)
    x = m.normalize(raw)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, (raw / 255.0 - 0.4) / 0.2, atol=1e-5)
    np.testing.assert_array_equal(m.denormalize(x, np.uint8), raw)
    # rounding and clipping to the dtype range
    out = m.denormalize(np.array([-10.0, 0.0, 10.0], dtype=np.float32), np.uint8)
    assert out.dtype == np.uint8 and list(out) == [0, 102, 255]
    out16 = m.denormalize(torch.tensor([0.0]), np.uint16)
    assert out16.dtype == np.uint16 and out16[0] == round(0.4 * 255)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(DleemError, match="model folder not found"):
        load_model(tmp_path / "nope")
    with pytest.raises(DleemError, match="config.json: missing"):
        load_model(tmp_path)
    cfg = ModelConfig.tiny(scale=4)
    save_model(tmp_path, build_generator(cfg.arch, 4), cfg)
    # corrupt weights
    w = tmp_path / "generator.safetensors"
    good = w.read_bytes()
    w.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DleemError, match="generator.safetensors: corrupt"):
        load_model(tmp_path)
    w.write_bytes(good)
    # weights that do not fit the config's architecture
    cfg2 = json.loads((tmp_path / "config.json").read_text())
    cfg2["arch"]["width"] = 16
    (tmp_path / "config.json").write_text(json.dumps(cfg2))
    with pytest.raises(DleemError, match="generator.safetensors: weights do not match"):
        load_model(tmp_path)
    cfg2["arch"]["width"] = 8
    cfg2["scale"] = 2
    (tmp_path / "config.json").write_text(json.dumps(cfg2))
    with pytest.raises(DleemError, match="generator.safetensors: weights do not match"):
        load_model(tmp_path)
    cfg2["scale"] = 4
    cfg2["arch"]["name"] = "srresnet9000"
    (tmp_path / "config.json").write_text(json.dumps(cfg2))
    with pytest.raises(DleemError, match="config.json: unknown generator architecture"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DleemError, match="config.json: cannot read JSON"):
        load_model(tmp_path)


def test_non_finite_weights_are_refused(tmp_path):
    cfg = ModelConfig.tiny(scale=2)
    g = build_generator(cfg.arch, 2)
    with torch.no_grad():
        g.head.weight[0, 0, 0, 0] = float("nan")
    save_model(tmp_path, g, cfg)
    with pytest.raises(DleemError, match=r"generator.safetensors: weights are not all finite \(head.weight"):
        load_model(tmp_path)


def test_config_normalization_is_the_shared_one(tmp_path):
    from dleem.imaging import Normalization

    cfg = ModelConfig.tiny(scale=2, input_dtype="uint16", mean=0.4, std=0.2)
    assert isinstance(cfg.normalization, Normalization)
    data = cfg.to_dict()
    assert data["normalization"] == {"input_dtype": "uint16", "dtype_max": 65535.0, "mean": 0.4, "std": 0.2}
    assert ModelConfig.from_dict(json.loads(json.dumps(data))) == cfg  # config.json as written before
    with pytest.raises(DleemError, match="model config: normalization.input_dtype must be one of"):
        ModelConfig.from_dict({**data, "normalization": {**data["normalization"], "input_dtype": "uint32"}})
    with pytest.raises(DleemError, match="model config: scale must be an integer from 2 to 8"):
        ModelConfig.from_dict({**data, "scale": 1})


def test_architecture_table():
    from dleem.models.arch import ARCHITECTURES, PRESETS, preset_training, receptive_field_of

    spec = ARCHITECTURES["dleem"]
    assert PRESETS == ("default", "cpu", "tiny")
    for preset in PRESETS:
        arch = spec.arch(preset)
        g = build_generator(arch, 3)
        assert receptive_field_of(arch) == g.receptive_field_lr_px == 2 * arch["depth"] + 3
        assert set(preset_training(preset)) == {"patch", "batch", "disc_width", "disc_stages"}
    with pytest.raises(DleemError, match="unknown preset"):
        spec.arch("huge")
    with pytest.raises(DleemError, match="bad parameters"):
        receptive_field_of({"name": "dleem", "widht": 8})
