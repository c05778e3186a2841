"""Augmentation: seeded, replayable, in [0, 1], each op does what its settings say."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from multipose.config import load_config_text
from multipose.data.augment import Augmenter, AugmentSettings, apply_params, sample_params
from multipose.experiment.factories import augment_settings

NONE = AugmentSettings(affine_prob=0.0, dropout_prob=0.0, cutout_prob=0.0, blur_prob=0.0, add_prob=0.0,
                       invert_prob=0.0, multiply_prob=0.0, contrast_prob=0.0)


def _images(n=8, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def only(**changes) -> AugmentSettings:
    return dataclasses.replace(NONE, **changes)


def test_same_seed_same_result_other_seed_other_result_values_in_range(device):
    x = _images().to(device)
    aug = Augmenter()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.device == x.device
    assert a.min() >= 0.0 and a.max() <= 1.0
    extreme = Augmenter(AugmentSettings(add_range=(-1.0, 1.0), multiply_range=(0.0, 5.0), contrast_range=(0.0, 9.0),
                                        affine_prob=1.0, blur_prob=1.0, add_prob=1.0, multiply_prob=1.0,
                                        contrast_prob=1.0, invert_prob=1.0))
    y = extreme(x, torch.Generator().manual_seed(3))
    assert y.min() >= 0.0 and y.max() <= 1.0
    if device.type == "cuda":  # parameters come from the CPU generator: same result as on the CPU
        assert torch.allclose(a.cpu(), aug(x.cpu(), torch.Generator().manual_seed(1)), atol=1e-4)


def test_params_are_drawn_first_and_replay(device):
    params = sample_params(AugmentSettings(), 8, 32, torch.Generator().manual_seed(4))
    x = _images().to(device)
    assert torch.equal(apply_params(x, params), apply_params(x, params))
    # the global RNG plays no part
    torch.manual_seed(0)
    a = Augmenter()(x, torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    assert torch.equal(a, Augmenter()(x, torch.Generator().manual_seed(5)))


def test_all_probabilities_zero_is_the_identity():
    x = _images()
    assert torch.equal(Augmenter(NONE)(x, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("settings, check", [
    (only(affine_prob=1.0, affine_scale=(1.5, 1.5)),
     lambda x, y: torch.allclose(y[..., 16, 16], x[..., 16, 16], atol=0.3) and not torch.allclose(y, x)),
    (only(dropout_prob=1.0, dropout_rate=(0.5, 0.5)),
     lambda x, y: 0.2 < (y == 0).all(1).float().mean() < 0.8),
    (only(cutout_prob=1.0, cutout_size=(0.5, 0.5)),
     lambda x, y: ((y != x).any(1).float().mean((1, 2)) - 0.25).abs().max() < 0.2),
    (only(blur_prob=1.0, blur_sigma=(1.0, 1.0)),
     lambda x, y: y.std() < 0.6 * x.std()),
    (only(add_prob=1.0, add_range=(0.1, 0.1)),
     lambda x, y: torch.allclose(y, (x + 0.1).clamp(0, 1))),
    (only(multiply_prob=1.0, multiply_range=(0.5, 0.5)),
     lambda x, y: torch.allclose(y, x * 0.25, atol=1e-6)),  # two multiplications of 0.5
    (only(contrast_prob=1.0, contrast_range=(2.0, 2.0)),
     lambda x, y: torch.allclose(y, (0.5 + 2 * (x - 0.5)).clamp(0, 1))),
    (only(invert_prob=1.0),
     lambda x, y: torch.all((y - x).abs().lt(1e-6) | (y - (1 - x)).abs().lt(1e-6)) and not torch.equal(x, y)),
], ids=["affine", "dropout", "cutout", "blur", "add", "multiply", "contrast", "invert"])
def test_each_op(settings, check):
    x = _images(16)
    y = Augmenter(settings)(x, torch.Generator().manual_seed(6))
    assert check(x, y)


def test_zoom_keeps_the_centre_and_enlarges():
    x = torch.zeros(1, 3, 33, 33)
    x[..., 12:21, 12:21] = 1.0  # a 9x9 square around the centre pixel 16
    y = Augmenter(only(affine_prob=1.0, affine_scale=(2.0, 2.0)))(x, torch.Generator())
    cols = torch.nonzero(y[0, 0, 16] > 0.5).flatten()
    assert cols.min() <= 8 and cols.max() >= 24 and y[0, 0, 16, 16] == 1.0


def test_settings_from_config():
    cfg = load_config_text("[Augmentation]\nBLUR_PROB: 0.1\nADD_RANGE: [-0.2, 0.3]\n")
    s = augment_settings(cfg)
    assert s.blur_prob == 0.1 and s.add_range == (-0.2, 0.3)
    assert dataclasses.replace(s, blur_prob=0.5, add_range=(-0.098, 0.098)) == AugmentSettings()
