"""Shared fixtures: small real SEM crops (see tests/data/README.md) and images built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def _png(name: str) -> np.ndarray:
    import imagecodecs

    return imagecodecs.imread(str(DATA / name))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the small committed fixtures."""
    return DATA


@pytest.fixture(scope="session")
def real_texture() -> np.ndarray:
    """128 x 128 uint8 crop of a real shale FIB-SEM image."""
    return _png("shale_crop_128.png")


@pytest.fixture(scope="session")
def real_textures() -> dict[str, np.ndarray]:
    """All committed real crops, uint8, by file stem."""
    return {p.stem: _png(p.name) for p in sorted(DATA.glob("*.png"))}


@pytest.fixture(scope="session")
def real_texture_12bit(real_texture: np.ndarray) -> np.ndarray:
    """The shale crop as 12-bit data in a uint16 container (max value 4095)."""
    x = real_texture.astype(np.float64)
    x = (x - x.min()) / (x.max() - x.min()) * 4095
    return np.round(x).astype(np.uint16)
