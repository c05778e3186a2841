"""Training batches, validation sets and the generate_dataset.py entry script."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from support.data import REPO_ROOT, iou, rasterize_reference, small_config, tiny_mesh, write_mesh

import generate_dataset
from multipose.app.cli import run
from multipose.config import load_config_text
from multipose.core.mesh import load_mesh
from multipose.data.datasets import composite
from multipose.data.io import load_samples, save_samples
from multipose.data.views import ViewRenderer
from multipose.experiment.datasets import training_data_from_config, validation_data_from_config


@pytest.fixture(scope="module")
def mesh_path(tmp_path_factory):
    return write_mesh(tiny_mesh(250), tmp_path_factory.mktemp("mesh") / "part.ply")


def test_training_batches(tmp_path, mesh_path, device):
    data = training_data_from_config(small_config(tmp_path, mesh_path), device, progress=False)
    batches = list(data)
    assert len(data) == 3 and [len(b.R) for b in batches] == [4, 4, 2]
    b = batches[0]
    assert b.target is None and all(v is not None for v in (b.t, b.K, b.mask, b.index))
    assert b.image.shape == (4, 3, 32, 32) and b.image.dtype == torch.float32
    assert b.image.device.type == device.type and b.mask.dtype == torch.bool
    assert b.image.min() >= 0 and b.image.max() <= 1
    views = data.cache.take(b.index)  # every sample carries its cache entry: pose, K, mask, depth
    for name in ("R", "t", "K", "mask"):
        assert torch.equal(getattr(b, name), getattr(views, name)), name
    assert torch.allclose(b.t.cpu(), torch.tensor([[0.0, 0.0, 700.0]]).expand(4, 3))


def test_same_seed_same_batch_other_seed_other_batch(tmp_path, mesh_path):
    def first(*overrides):
        return next(iter(training_data_from_config(small_config(tmp_path, mesh_path, *overrides), progress=False)))

    a, b, c = first(), first(), first("Training.RANDOM_SEED=11")
    for name in ("image", "R", "t", "K", "mask", "index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.image, c.image) and not torch.equal(a.index, c.index)


def test_without_augmentation_the_object_pixels_are_the_render(tmp_path, mesh_path):
    data = training_data_from_config(small_config(tmp_path, mesh_path, "Training.AUGMENT_IMGS=false"), progress=False)
    b = data.batch()
    views = data.cache.take(b.index)
    on = b.mask[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(b.image[on], (views.rgb.float() / 255.0)[on])
    bg = torch.rand(len(views), 3, 32, 32)
    assert torch.equal(composite(views, bg)[~on], bg[~on])


def test_training_crops_show_the_background_where_the_object_is_cut(tmp_path, mesh_path):
    cfg = small_config(tmp_path, mesh_path, "Training.AUGMENT_IMGS=false", "Augmentation.SQUARE_OCCLUSION_PROB=1.0",
                       "Dataset.NOOF_TRAINING_IMGS=12")
    data = training_data_from_config(cfg, progress=False)
    b = data.batch(4)
    render = data.cache.take(b.index).rgb.float() / 255.0
    same = (b.image == render).all(dim=1) & b.mask  # object pixels that still show the object
    kept = same.sum(dim=(1, 2)) / b.mask.sum(dim=(1, 2))
    assert (kept > 0.75).all() and (kept < 1.0).any()


def test_views_rendered_per_batch_without_a_cache(tmp_path, mesh_path):
    cfg = small_config(tmp_path, mesh_path, "Dataset.NOOF_TRAINING_IMGS=0", "Training.VIEW_SAMPLING=sphere")
    data = training_data_from_config(cfg, progress=False)
    assert data.cache is None
    b = data.batch()
    assert (b.index == -1).all() and b.image.shape == (4, 3, 32, 32) and b.mask.any()
    mesh = load_mesh(mesh_path)
    ref = rasterize_reference(mesh.vertices.numpy(), mesh.faces.numpy(), b.R[0].numpy(), b.t[0].numpy(),
                              b.K[0].numpy(), 32)
    assert iou(b.mask[0].numpy(), ref) > 0.95
    assert not (tmp_path / "cache" / "views").exists()


def test_hard_samples_come_back_through_update(tmp_path, mesh_path):
    cfg = small_config(tmp_path, mesh_path, "Training.VIEW_SAMPLING=sundermeyer-random-hard",
                       "Training.HARD_MINING_RATIO=0.5", "Training.HARD_SAMPLE_RATIO=1.0")
    data = training_data_from_config(cfg, progress=False)
    b = data.batch()
    data.update(b, torch.tensor([0.0, 5.0, 1.0, 9.0]))
    again = data.batch()
    assert sorted(again.index[:2].tolist()) == sorted(b.index[[1, 3]].tolist())


def test_every_epoch_starts_with_an_empty_hard_pool_as_the_original(tmp_path, mesh_path):
    cfg = small_config(tmp_path, mesh_path, "Training.VIEW_SAMPLING=sundermeyer-random-hard",
                       "Training.HARD_MINING_RATIO=0.5", "Training.HARD_SAMPLE_RATIO=0.0")
    data = training_data_from_config(cfg, progress=False)
    b = data.batch()
    data.update(b, torch.tensor([0.0, 5.0, 1.0, 9.0]))
    assert data.sampler.num_hard == 2
    next(iter(data))  # a new epoch: the pool is emptied before its first batch (nothing was drawn from it)
    assert data.sampler.num_hard == 0
    keep = training_data_from_config(small_config(tmp_path, mesh_path, "Training.VIEW_SAMPLING=sundermeyer-random-hard",
                                                  "Training.HARD_SAMPLE_RATIO=0.0", "Training.HARD_POOL=accumulate"),
                                     progress=False)
    keep.update(b, torch.tensor([0.0, 5.0, 1.0, 9.0]))
    next(iter(keep))
    assert keep.sampler.num_hard == 1  # int(0.3 * 4) = 1, kept across the epoch boundary


def test_state_dict_resumes_the_stream(tmp_path, mesh_path):
    data = training_data_from_config(small_config(tmp_path, mesh_path), progress=False)
    data.batch()
    state = data.state_dict()
    expected = data.batch()
    other = training_data_from_config(small_config(tmp_path, mesh_path, "Training.RANDOM_SEED=3"), progress=False)
    other.load_state_dict(state)
    assert torch.equal(other.batch().image, expected.image)


def test_generated_validation_set_is_cached_in_the_run_folder(tmp_path, mesh_path, monkeypatch):
    cfg = small_config(tmp_path, mesh_path)
    valid = validation_data_from_config(cfg, progress=False)
    path = tmp_path / "run" / "validation.npz"
    assert path.is_file() and len(valid) == 6 and valid.images.shape == (6, 3, 32, 32)
    assert valid.K is not None and valid.mask is not None and valid.meta["seed"] == 0
    # poses and images of their own, not the training pool's
    train = training_data_from_config(cfg, progress=False)
    dist = (valid.R[:, None] - train.cache.R[None]).flatten(2).norm(dim=-1)
    assert dist.min() > 1e-3
    monkeypatch.setattr(ViewRenderer, "render", lambda *a: pytest.fail("rendered again"))
    again = validation_data_from_config(cfg, progress=False)  # loaded, not generated
    assert torch.equal(again.images, valid.images) and torch.equal(again.R, valid.R)
    monkeypatch.undo()
    changed = validation_data_from_config(small_config(tmp_path, mesh_path, "Augmentation.BLUR_PROB=0.0"),
                                          progress=False)
    assert not torch.equal(changed.images, valid.images)


def test_validation_set_from_files(tmp_path, mesh_path):
    cfg = small_config(tmp_path, mesh_path)
    generated = validation_data_from_config(cfg, progress=False)
    save_samples(tmp_path / "v.p", generated, fmt="pickle")
    cfg2 = small_config(tmp_path, mesh_path, f"Dataset.VALID_DATA_PATH=[\"{tmp_path / 'v.p'}\", "
                                             f"\"{tmp_path / 'run' / 'validation.npz'}\"]")
    both = validation_data_from_config(cfg2, progress=False)
    assert len(both) == 12 and torch.allclose(both.images[:6], generated.images, atol=1e-6)


# --------------------------------------------------------------------------- generate_dataset.py


@pytest.mark.slow
def test_generate_dataset_masks_match_an_independent_rasterisation(tmp_path, python):
    """Pins the crop geometry end to end: the stored R, t, K reproduce the stored masks."""
    out = tmp_path / "set.npz"
    result = subprocess.run(
        [python, "generate_dataset.py", "experiment_template.cfg", "--num", "3", "--out", str(out),
         "--set", "Dataset.CROP_SIZE=64", "--set", f"Dataset.CACHE_DIR={tmp_path / 'cache'}",
         "--set", "Training.DEVICE=cpu"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with np.load(out, allow_pickle=False) as z:
        images, Rs, ts, Ks, masks = (z[k] for k in ("images", "Rs", "ts", "Ks", "masks"))
        meta = json.loads(str(z["meta"]))
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8 and masks.dtype == bool
    assert meta["seed"] == 10 and load_config_text(meta["config"]).Dataset.CROP_SIZE == 64
    mesh = load_mesh(REPO_ROOT / meta["mesh"])
    ious = [iou(masks[i], rasterize_reference(mesh.vertices.numpy(), mesh.faces.numpy(), Rs[i], ts[i], Ks[i], 64))
            for i in range(3)]
    assert min(ious) >= 0.95, ious
    assert not (tmp_path / "cache").exists()  # a dataset file renders fresh views, no cache


def _generate(tmp_path, mesh_path, *args):
    argv = ["experiment_template.cfg", "--set", f"Dataset.MODEL_PATH_DATA={mesh_path}",
            "--set", "Dataset.CROP_SIZE=24", "--set", "Training.DEVICE=cpu",
            "--set", f"Dataset.CACHE_DIR={tmp_path / 'cache'}", *args]  # later --set wins
    return run(generate_dataset.main, generate_dataset.build_parser(), argv)


def test_generate_dataset_seeds_and_pickle_format(tmp_path, mesh_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert _generate(tmp_path, mesh_path, "--num", "3", "--out", str(tmp_path / "a.npz"), "--seed", "4") == 0
    assert _generate(tmp_path, mesh_path, "--num", "3", "--out", str(tmp_path / "b.npz"), "--seed", "4") == 0
    assert _generate(tmp_path, mesh_path, "--num", "3", "--out", str(tmp_path / "c.npz"), "--seed", "5") == 0
    a, b, c = (load_samples(tmp_path / f"{n}.npz") for n in "abc")
    assert torch.equal(a.images, b.images) and torch.equal(a.R, b.R)
    assert not torch.equal(a.images, c.images) and a.meta["seed"] == 4
    assert _generate(tmp_path, mesh_path, "--num", "3", "--out", str(tmp_path / "d.pkl"), "--seed", "4") == 0
    d = load_samples(tmp_path / "d.pkl")
    assert torch.allclose(d.images, a.images) and torch.allclose(d.R, a.R) and d.K is None


@pytest.mark.parametrize("args, match", [
    (["--num", "0", "--out", "{tmp}/x.npz"], "--num 0"),
    (["--num", "2", "--out", "{tmp}/x.txt"], "must end in .npz"),
    (["--num", "2", "--out", "{tmp}/x.npz", "--format", "pickle"], "must end in .p"),
    (["--num", "2", "--out", "{tmp}/x.npz", "--set", "Dataset.BACKGROUND_IMAGES={tmp}/empty"], "holds no .jpg"),
    (["--num", "2", "--out", "{tmp}/x.npz", "--set", "Dataset.MODEL_PATH_DATA={tmp}/none.ply"], "none.ply"),
    (["--num", "2", "--out", "{tmp}/x.npz", "--set", "Dataset.K=[1, 2, 3]"], "[Dataset] K"),
])
def test_generate_dataset_bad_input_is_one_error_line_and_no_file(tmp_path, mesh_path, monkeypatch, capsys, args,
                                                                  match):
    monkeypatch.chdir(REPO_ROOT)
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = _generate(tmp_path, mesh_path, *argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error:") and match in err[0], err
    assert not list(tmp_path.glob("x.*"))
