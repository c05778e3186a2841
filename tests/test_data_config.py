"""The synthetic-data keys of the config: AAE defaults, value types, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from multipose.config import default_config, load_config, load_config_text
from multipose.data.augment import AugmentSettings
from multipose.data.views import ViewSettings
from multipose.experiment.factories import augment_settings, view_settings
from multipose.infra.errors import ConfigError

FINAL = Path(__file__).parent / "data" / "original_experiment_template_final.cfg"


def test_defaults_are_the_aae_settings_and_old_files_get_them():
    cfg = default_config()
    # CROP_SIZE empty: the encoder's input size; ARCH auto without .npy weights is the small preset
    assert view_settings(cfg) == ViewSettings(size=64, K=(1075.65, 0, 360, 0, 1073.9, 270, 0, 0, 1),
                                              distance=700.0, pad_factor=1.2, max_rel_offset=0.2)
    assert augment_settings(cfg) == AugmentSettings()
    d = cfg.Dataset
    assert (d.NOOF_TRAINING_IMGS, d.NOOF_BG_IMGS, d.VIEW_SEED) == (10000, 15000, 0)
    assert (cfg.Training.HARD_MINING_RATIO, cfg.Training.HARD_SAMPLE_RATIO) == (0.3, 0.2)  # the original's
    final = load_config(FINAL)  # the original's final template: MAX_REL_OFFSET 0.0, T [[0, 0, 1000]]
    # .npy encoder: aae, 128 px; no RADIUS: the training renders at T's z, as the original
    assert view_settings(final) == ViewSettings(max_rel_offset=0.0, distance=1000.0)
    assert view_settings(load_config_text("[Dataset]\nCROP_SIZE: 96\n")).size == 96


def test_empty_crop_size_follows_a_stored_encoder_with_arch_auto(tmp_path):
    """A multipose .pt copied from another run: with ARCH auto its stored input size sets the crops, read
    once from the file when the entry scripts load the config (with_encoder_crop_size)."""
    from multipose.config import check_crop_size, crop_size
    from multipose.experiment.encoders import with_encoder_crop_size
    from multipose.models import Encoder, EncoderConfig, save_encoder

    weights = save_encoder(Encoder(EncoderConfig(image_size=128, channels=(8, 8), latent_size=8)), tmp_path / "e.pt")
    read = load_config_text("", "t.cfg", [f"Dataset.ENCODER_WEIGHTS={weights}"])
    assert crop_size(read) == 64  # the config alone: the small preset (nothing reads the file)
    cfg = with_encoder_crop_size(read)
    assert crop_size(cfg) == 128 and view_settings(cfg).size == 128 and cfg.Dataset.CROP_SIZE == 128
    assert str(weights) in cfg.origin("Dataset", "CROP_SIZE")
    check_crop_size(cfg, 128)  # what train.py and evaluate.py check: no error
    explicit = with_encoder_crop_size(
        load_config_text("", "t.cfg", [f"Dataset.ENCODER_WEIGHTS={weights}", "Encoder.ARCH=small"]))
    assert crop_size(explicit) == 64  # an explicit ARCH wins (and the loader then names the mismatch)
    with pytest.raises(ConfigError, match=r"CROP_SIZE = 64 .*set \[Dataset\] CROP_SIZE: 128"):
        check_crop_size(explicit, 128)
    auto = load_config_text("", "t.cfg", [f"Training.OUTPUT_PATH={tmp_path}"])  # auto: <OUTPUT_PATH>/encoder.pt
    assert with_encoder_crop_size(auto) is auto
    weights.rename(tmp_path / "encoder.pt")
    assert crop_size(with_encoder_crop_size(auto)) == 128
    (tmp_path / "encoder.pt").write_bytes(b"broken")  # unreadable: the preset; the loader reports the file
    assert crop_size(with_encoder_crop_size(auto)) == 64


def test_intrinsics_and_ranges_parse_both_forms_and_round_trip():
    cfg = load_config_text("[Dataset]\nK: [[500, 0, 63.5], [0, 500, 63.5], [0, 0, 1]]\n"
                           "[Augmentation]\nAFFINE_SCALE: [1.1, 1.3]\n")
    assert cfg.Dataset.K == (500.0, 0.0, 63.5, 0.0, 500.0, 63.5, 0.0, 0.0, 1.0)
    assert cfg.Augmentation.AFFINE_SCALE == (1.1, 1.3)
    assert load_config_text(cfg.to_ini()) == cfg


@pytest.mark.parametrize(
    "override, expected",
    [
        ("Dataset.K=[1075.65, 0, 720/2, 0, 1073.9, 270, 0, 0, 1]", "expected a JSON list of 9 numbers"),
        ("Dataset.K=[0, 0, 360, 0, 1073.9, 270, 0, 0, 1]", "focal lengths fx, fy must be > 0"),
        ("Dataset.CROP_SIZE=4", "expected an int >= 8"),
        (
            "Augmentation.CONTRAST_RANGE=[2.2, 0.5]",
            "expected a JSON list [low, high] with 0 <= low <= high (low is above high)",
        ),
        ("Augmentation.DROPOUT_RATE=[0.1, 1.5]", "0 <= low <= high <= 1"),
        ("Augmentation.BLUR_PROB=1.5", "expected a float in [0, 1]"),
        ("Dataset.NOOF_BG_IMGS=0", "expected an int >= 1"),
    ],
)
def test_bad_values_are_one_line_config_errors(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config_text("", "t.cfg", [override])
    msg = str(info.value)
    assert "\n" not in msg and expected in msg and override.split("=")[0].split(".")[1] in msg
