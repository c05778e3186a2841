"""Backgrounds: image folders (VOC layout too), clear errors, procedural backgrounds."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from support.data import small_config

from multipose.data.backgrounds import (
    ImageBackgrounds,
    ProceduralBackgrounds,
    find_background_files,
    load_background_images,
)
from multipose.experiment.factories import backgrounds_from_config
from multipose.infra.errors import DataError, UserInputError


def _image(path, colour, size=(40, 30)):
    Image.new("RGB", size, colour).save(path)
    return path


def test_folder_of_jpeg_and_png_images_is_cropped_to_the_crop_size(tmp_path):
    _image(tmp_path / "a.jpg", (255, 0, 0))
    _image(tmp_path / "b.PNG", (0, 255, 0), size=(25, 60))
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_background_images(tmp_path, 16, max_images=10, progress=False)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    means = images.float().mean((2, 3))
    colours = {tuple(int(round(v / 255)) for v in m.tolist()) for m in means}  # JPEG is lossy
    assert colours == {(1, 0, 0), (0, 1, 0)}


def test_voc_root_and_the_cap_on_the_number_loaded(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    for i in range(5):
        _image(tmp_path / "JPEGImages" / f"{i:06d}.jpg", (10 * i, 0, 0))
    assert len(find_background_files(tmp_path)) == 5
    train = load_background_images(tmp_path, 8, max_images=2, progress=False)
    held_out = load_background_images(tmp_path, 8, max_images=2, part="held-out", progress=False)
    assert train.shape[0] == 2 and held_out.shape[0] == 2
    reds = lambda x: set(x[:, 0].float().mean((1, 2)).round().tolist())  # noqa: E731
    assert not reds(train) & reds(held_out)  # disjoint when the folder is big enough


def test_empty_or_missing_folder_is_a_one_line_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, match in ((tmp_path / "empty", "holds no .jpg/.jpeg/.png images"),
                          (tmp_path / "missing", "does not exist")):
        with pytest.raises(DataError, match=match) as info:
            load_background_images(folder, 16, 10, progress=False)
        msg = str(info.value)
        assert isinstance(info.value, UserInputError) and "\n" not in msg
        assert str(folder) in msg and "BACKGROUND_IMAGES" in msg and "procedural" in msg


def test_corrupt_files_are_skipped_with_a_count_and_all_corrupt_is_an_error(tmp_path, caplog):
    _image(tmp_path / "good.jpg", (0, 0, 255))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="multipose.data.backgrounds"):
        images = load_background_images(tmp_path, 8, 10, progress=False)
    assert images.shape[0] == 1
    assert any("skipped 2 of 3 background files" in m for m in caplog.messages)
    (tmp_path / "good.jpg").unlink()
    with pytest.raises(DataError, match="none of its 2 image files could be read"):
        load_background_images(tmp_path, 8, 10, progress=False)


def test_image_backgrounds_sample_seeded_with_flips(tmp_path):
    left_white = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    left_white[..., :4] = 255
    bg = ImageBackgrounds(left_white)
    out = bg.sample(64, torch.Generator().manual_seed(0), "cpu")
    assert out.shape == (64, 3, 8, 8) and out.dtype == torch.float32
    flipped = out[:, 0, 0, 0] == 0
    assert 10 < int(flipped.sum()) < 54
    assert torch.equal(out, bg.sample(64, torch.Generator().manual_seed(0), "cpu"))


def test_procedural_backgrounds_are_seeded_varied_and_in_range(device):
    bg = ProceduralBackgrounds(32)
    a = bg.sample(8, torch.Generator().manual_seed(1), device)
    b = bg.sample(8, torch.Generator().manual_seed(1), device)
    c = bg.sample(8, torch.Generator().manual_seed(2), device)
    assert a.shape == (8, 3, 32, 32) and a.device.type == device.type
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert a.std(dim=(1, 2, 3)).min() > 0.02  # not flat
    assert (a[0] - a[1]).abs().mean() > 0.05  # not all alike
    if device.type == "cuda":
        assert torch.allclose(a.cpu(), bg.sample(8, torch.Generator().manual_seed(1), "cpu"), atol=1e-5)


def test_backgrounds_from_config(tmp_path):
    cfg = small_config(tmp_path, tmp_path / "unused.ply")
    assert isinstance(backgrounds_from_config(cfg), ProceduralBackgrounds)
    folder = tmp_path / "bg"
    folder.mkdir()
    _image(folder / "x.png", (1, 2, 3))
    cfg = small_config(tmp_path, tmp_path / "unused.ply", f"Dataset.BACKGROUND_IMAGES={folder}")
    bg = backgrounds_from_config(cfg, progress=False)
    assert isinstance(bg, ImageBackgrounds) and bg.size == 32 and len(bg) == 1
    assert np.allclose(bg.images[0, :, 0, 0].numpy(), [1, 2, 3])
