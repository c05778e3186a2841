"""Shared fixtures: devices to test on, the repository root, the optional real T-LESS CAD model."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# The development CAD model lives beside the repository (../shared/cad); a user's clone lacks it.
SHARED_CAD = REPO_ROOT.parent / "shared" / "cad"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse", action="store_true", help="run the collected tests in reverse order "
                     "(a test that passes only after some other test has run fails this way)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture(autouse=True)
def _global_rng_seeded() -> None:
    """Every test starts from the same global RNG state (torch, numpy, random), whatever ran before it:
    what a test draws without its own generator (a head's initialisation, say) is the same in any order."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A folder with ``encoder.pt``, a tiny random encoder (32 px, 8-8-16-16 channels, 16-d code, seed 0),
    whose ``cache/`` the tests of one module share (modules that need another ``shared`` define their own)."""
    from multipose.models import Encoder, EncoderConfig, save_encoder

    folder = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    save_encoder(Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)), folder / "encoder.pt")
    return folder


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every test that takes ``device`` runs on the CPU, and on CUDA too when a GPU is present."""
    return torch.device(request.param)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for subprocess tests of the entry scripts."""
    return sys.executable


@pytest.fixture
def tless_obj10() -> Path:
    """T-LESS object 10 (OBJ, 11,918 faces) from ../shared/cad; skips when absent."""
    path = SHARED_CAD / "obj_10.obj"
    if not path.is_file():
        pytest.skip(f"T-LESS CAD model not available at {path}")
    return path
