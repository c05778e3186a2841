"""train_encoder.py: the AAE learns, its codes ignore the background, runs resume exactly."""

from __future__ import annotations

import csv
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.data import tiny_mesh, write_mesh

import multipose.experiment.encoder_training as encoder_training
from multipose.config import SCHEMA, load_config
from multipose.core.geometry import random_rotations
from multipose.core.mesh import load_mesh
from multipose.data.backgrounds import ProceduralBackgrounds
from multipose.data.datasets import composite
from multipose.data.views import ViewRenderer
from multipose.experiment.datasets import training_data_from_config
from multipose.experiment.encoder_training import ensure_encoder, pretrain_encoder
from multipose.experiment.encoders import load_encoder
from multipose.experiment.factories import view_settings
from multipose.infra.checkpoint import CheckpointStore
from multipose.infra.errors import ConfigError, UserInputError
from multipose.models import Encoder, load_encoder_pt

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks run as fast on one thread; one thread also keeps the numbers (and so the background
    test's margins) independent of the core count, and the tests fast on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A tiny mesh and one view-cache folder for every test of this module (the cache of 24 views
    at 64 px is rendered by the first test that needs it, then loaded)."""
    folder = tmp_path_factory.mktemp("encoder-shared")
    write_mesh(tiny_mesh(250), folder / "part.ply")
    return folder


def _overrides(shared: Path, out: Path, iterations: int = 6, *extra: str) -> list[str]:
    """The small preset thinned out (8-8-16-16 channels, 16-d code; 64 px, its input size)."""
    return [
        f"Dataset.MODEL_PATH_DATA={shared / 'part.ply'}",
        f"Dataset.MODEL_PATH_LOSS={shared / 'part.ply'}",
        f"Dataset.CACHE_DIR={shared / 'cache'}",
        "Dataset.ENCODER_WEIGHTS=auto",
        "Dataset.NOOF_TRAINING_IMGS=24",
        "Dataset.NOOF_BG_IMGS=8",
        "Encoder.CHANNELS=[8, 8, 16, 16]",
        "Encoder.LATENT_SIZE=16",
        "Encoder.BATCH_SIZE=8",
        f"Encoder.NUM_ITER={iterations}",
        "Encoder.SAVE_INTERVAL=2",
        "Encoder.LOG_INTERVAL=1",
        "Encoder.LEARNING_RATE=1e-3",
        f"Training.OUTPUT_PATH={out}",
        "Training.DEVICE=cpu",
        "Training.SAVE_IMAGES=false",
        *extra,
    ]


def _cfg(shared: Path, out: Path, iterations: int = 6, *extra: str):
    return load_config(REPO_ROOT / "experiment_template.cfg", _overrides(shared, out, iterations, *extra))


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def _final(out: Path) -> dict:
    state, _ = CheckpointStore(out / "encoder", prefix="encoder").load_latest()
    return state


@pytest.fixture(scope="module")
def reference(shared) -> Path:
    """An uninterrupted run: 6 iterations, checkpoints every 2, with augmentation."""
    out = shared / "reference"
    assert pretrain_encoder(_cfg(shared, out), CPU, progress=False) == out / "encoder.pt"
    return out


@pytest.fixture(scope="module")
def pretrained(shared):
    """A short real pretraining (500 iterations of 16 crops at lr 2e-3, 64-d code, ~12 s): the config, whose
    ``<OUTPUT_PATH>/encoder.pt`` then exists. No augmentation, so that background invariance is
    learnt within a test's time."""
    cfg = _cfg(shared, shared / "pretrained", 500, "Encoder.BATCH_SIZE=16", "Encoder.LEARNING_RATE=2e-3",
               "Encoder.LATENT_SIZE=64",
               "Encoder.SAVE_INTERVAL=100", "Encoder.LOG_INTERVAL=10", "Training.AUGMENT_IMGS=false",
               "Training.SAVE_IMAGES=true")
    pretrain_encoder(cfg, CPU, progress=False)
    return cfg


def _box_centre(mask: torch.Tensor) -> torch.Tensor:
    """Centre ``(B, 2)`` (x, y) of each silhouette's pixel bounding box."""
    out = []
    for m in mask:
        ys, xs = torch.nonzero(m, as_tuple=True)
        out.append(torch.stack([(xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0]))
    return torch.stack(out)


def test_training_data_can_return_the_aae_target(shared, tmp_path):
    """The AAE's target: the same rotation, centred in its window and headlit (the codebook's image),
    while the input's window is moved by the random offset; cached beside the view cache."""
    cfg = _cfg(shared, tmp_path / "run", 1, f"Dataset.CACHE_DIR={tmp_path / 'cache'}", "Training.AUGMENT_IMGS=false")
    assert cfg.Training.MAX_REL_OFFSET == 0.2
    plain = training_data_from_config(cfg, progress=False)
    assert plain.batch(2).target is None
    assert not list(Path(cfg.Dataset.CACHE_DIR).glob("views/*-targets.npz"))  # only made when asked for
    data = training_data_from_config(cfg, progress=False, with_target=True)
    assert len(list(Path(cfg.Dataset.CACHE_DIR).glob("views/*-targets.npz"))) == 1
    batch = data.batch(6)
    views = data.cache.take(batch.index)
    assert batch.target.shape == batch.image.shape == (6, 3, 64, 64)
    renderer = ViewRenderer(load_mesh(cfg.Dataset.MODEL_PATH_DATA), view_settings(cfg))
    assert torch.equal(batch.target, renderer.render_centred(views.R).float() / 255.0)
    target_mask = batch.target.amax(1) > 0
    centre = (64 - 1) / 2.0
    assert (_box_centre(target_mask) - centre).abs().max() <= 1.0  # centred
    assert (_box_centre(batch.mask) - centre).abs().max() > 3.0  # the input's window is offset
    assert not torch.equal(batch.target, views.rgb.float() / 255.0)  # not the randomly lit view
    again = training_data_from_config(cfg, progress=False, with_target=True)  # loaded from the file
    assert torch.equal(again.cache.targets, data.cache.targets)
    uncached = training_data_from_config(
        _cfg(shared, tmp_path / "run2", 1, "Dataset.NOOF_TRAINING_IMGS=0", f"Dataset.CACHE_DIR={tmp_path / 'cache'}"),
        progress=False, with_target=True
    ).batch(3)
    assert torch.equal(uncached.target, renderer.render_centred(uncached.R).float() / 255.0)


@pytest.mark.slow
@pytest.mark.outcome
def test_pretraining_lowers_the_reconstruction_loss_and_writes_its_files(pretrained, record_property):
    out = Path(pretrained.Training.OUTPUT_PATH)
    rows = _rows(out / "encoder" / "train-loss.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(10, 501, 10))
    assert float(rows[0]["lr"]) == pytest.approx(2e-3) and float(rows[-1]["seconds"]) > 0
    losses = [float(r["loss"]) for r in rows]
    record_property("last/first reconstruction loss (< 0.6)", round(losses[-1] / losses[0], 3))
    assert losses[-1] < 0.6 * losses[0], losses
    for name in ("config.cfg", "encoder.pt", "encoder/loss.png", "encoder/preview-iter100.png",
                 "encoder/preview-iter500.png", "encoder/encoder-epoch500.pt"):
        assert (out / name).is_file(), name
    assert CheckpointStore(out / "encoder", prefix="encoder").epochs() == [400, 500]  # the newest two
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(out / "tensorboard" / "encoder"), size_guidance={"scalars": 0})
    board.Reload()
    assert [e.value for e in board.Scalars("encoder/loss")] == pytest.approx(losses)  # the CSV's, on TensorBoard
    encoder = load_encoder(pretrained)
    assert encoder.config.channels == (8, 8, 16, 16) and encoder.config.latent_size == 64
    state = _final(out)
    assert {"model", "optimizer", "iteration", "rng", "data", "encoder_args", "config"} <= set(state)
    assert state["iteration"] == 500 and state["encoder_args"] == encoder.config.to_dict()
    assert "NUM_ITER: 500" in state["config"]
    _assert_same_state({k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")},
                       encoder.state_dict())


def _codes_test(encoder: Encoder, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity of 12 novel views on background 1 to (a) the same views on background 2,
    (b) the best of the views turned by 90 degrees about the model's x or y axis, on background 1.
    Returns ``(same view (12,), view 90 degrees away (12,))``."""
    n = 12
    R = random_rotations(n, generator=torch.Generator().manual_seed(123))
    turn_x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    turn_y = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    renderer = ViewRenderer(load_mesh(cfg.Dataset.MODEL_PATH_DATA), view_settings(cfg))
    # the same offsets and lights for the three sets of rotations
    views = [renderer.render(R @ turn, torch.Generator().manual_seed(5)) for turn in (torch.eye(3), turn_x, turn_y)]
    backgrounds = ProceduralBackgrounds(64)
    bg1, bg2 = (backgrounds.sample(n, torch.Generator().manual_seed(s), "cpu") for s in (7, 8))
    with torch.no_grad():
        anchor, same = encoder.encode(composite(views[0], bg1)), encoder.encode(composite(views[0], bg2))
        turned = [encoder.encode(composite(v, bg1)) for v in views[1:]]
    away = torch.maximum(*[(anchor * t).sum(dim=1) for t in turned])
    return (anchor * same).sum(dim=1), away


@pytest.mark.slow
@pytest.mark.outcome
def test_codes_of_a_view_ignore_the_background_after_pretraining(pretrained, record_property):
    """A real AAE property: after a short pretraining, a view's code is closer to the code of the same
    view on another background than to those of views 90 degrees away on the *same* background. An
    untrained encoder of the same architecture fails this: its codes follow the background."""
    same, away = _codes_test(load_encoder(pretrained), pretrained)
    record_property("share same > away (>= 0.67), mean same - away (> 0.1)",
                    [round((same > away).float().mean().item(), 3), round((same.mean() - away.mean()).item(), 3)])
    assert (same > away).float().mean() >= 2 / 3, (same, away)
    assert same.mean() > away.mean() + 0.1, (same, away)

    torch.manual_seed(0)
    untrained = Encoder(load_encoder(pretrained).config).eval()
    same, away = _codes_test(untrained, pretrained)
    # (its codes all point nearly the same way, cosine ~0.999, and lean towards the shared background)
    assert (same > away).float().mean() < 2 / 3 and same.mean() < away.mean(), (same, away)


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_weights(shared, reference, tmp_path):
    out = tmp_path / "interrupted"
    assert pretrain_encoder(_cfg(shared, out), CPU, progress=False, stop_after=3) == out / "encoder.pt"
    assert not (out / "encoder.pt").exists()  # as if killed during iteration 4: iteration 3 is lost
    assert CheckpointStore(out / "encoder", prefix="encoder").epochs() == [2]
    assert [r["iteration"] for r in _rows(out / "encoder" / "train-loss.csv")] == ["1", "2", "3"]

    pretrain_encoder(_cfg(shared, out), CPU, progress=False)  # the same command again
    _assert_same_state(load_encoder_pt(reference / "encoder.pt").state_dict(),
                       load_encoder_pt(out / "encoder.pt").state_dict())
    a, b = _final(reference), _final(out)
    _assert_same_state(a["model"], b["model"])
    assert torch.equal(a["data"]["generator"], b["data"]["generator"])
    for p, q in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        _assert_same_state(p, q)
    ref_rows, rows = _rows(reference / "encoder" / "train-loss.csv"), _rows(out / "encoder" / "train-loss.csv")
    assert [(r["iteration"], r["loss"]) for r in rows] == [(r["iteration"], r["loss"]) for r in ref_rows]

    # a finished run re-run: nothing to train, the same encoder written again
    pretrain_encoder(_cfg(shared, out), CPU, progress=False)
    _assert_same_state(load_encoder_pt(reference / "encoder.pt").state_dict(),
                       load_encoder_pt(out / "encoder.pt").state_dict())


@pytest.mark.slow
def test_a_truncated_latest_checkpoint_is_reported_and_the_previous_one_used(shared, reference, tmp_path, caplog):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    (out / "encoder.pt").unlink()
    (out / "config.cfg").unlink()  # it names the reference's OUTPUT_PATH
    store = CheckpointStore(out / "encoder", prefix="encoder")
    assert store.epochs() == [4, 6]
    store.path(6).write_bytes(store.path(6).read_bytes()[:1000])
    with caplog.at_level(logging.INFO):
        pretrain_encoder(_cfg(shared, out), CPU, progress=False)
    assert "encoder-epoch6.pt is unreadable" in caplog.text
    assert "from encoder-epoch4.pt (iteration 4 of 6)" in caplog.text
    _assert_same_state(load_encoder_pt(reference / "encoder.pt").state_dict(),
                       load_encoder_pt(out / "encoder.pt").state_dict())


def test_another_architecture_in_the_folder_is_an_error(shared, reference, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    with pytest.raises(UserInputError, match=r"encoder-epoch6.pt: holds an autoencoder .*delete .*encoder"):
        pretrain_encoder(_cfg(shared, out, 6, "Encoder.LATENT_SIZE=8"), CPU, progress=False, force=True)


def test_a_crop_size_other_than_the_encoder_input_is_refused_before_any_work(shared, tmp_path):
    with pytest.raises(
        ConfigError, match=r"CROP_SIZE = 32 \(set\): expected the input size 64 .*set \[Dataset\] CROP_SIZE: 64"
    ):
        pretrain_encoder(_cfg(shared, tmp_path / "run", 6, "Dataset.CROP_SIZE=32"), CPU, progress=False)
    assert not (tmp_path / "run").exists()


def _seeded_draws(call) -> tuple:
    """Python's, NumPy's and torch's next random numbers after ``call()`` from seed 1."""
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    result = call()
    return result, (random.random(), np.random.rand(), torch.rand(1).item())


def test_ensure_encoder_pretrains_when_missing_and_loads_when_present(shared, tmp_path, device, caplog, monkeypatch):
    cfg = _cfg(shared, tmp_path / "run", 2, f"Training.DEVICE={device.type}")
    with caplog.at_level(logging.INFO):
        encoder, after_pretraining = _seeded_draws(lambda: ensure_encoder(cfg, device, progress=False))
    assert "does not exist: pretraining an encoder first" in caplog.text
    assert (tmp_path / "run" / "encoder.pt").is_file() and not encoder.training

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretrained although encoder.pt exists")

    monkeypatch.setattr(encoder_training, "pretrain_encoder", no_pretraining)
    again, after_loading = _seeded_draws(lambda: ensure_encoder(cfg, device, progress=False))
    _assert_same_state(encoder.state_dict(), again.state_dict())
    # the caller (the pose-head loop seeds, then calls this) draws the same numbers afterwards either way
    assert after_pretraining == after_loading
    # an explicit weights file is loaded as it is, never pretrained
    other = _cfg(shared, tmp_path / "other", 2, f"Dataset.ENCODER_WEIGHTS={tmp_path / 'run' / 'encoder.pt'}")
    _assert_same_state(encoder.state_dict(), ensure_encoder(other, device, progress=False).state_dict())


@pytest.mark.slow
def test_train_encoder_script(shared, tmp_path, python):
    out = tmp_path / "run"

    def script(*extra: str, iterations: int = 4) -> subprocess.CompletedProcess:
        sets = sum((["--set", o] for o in _overrides(shared, out, iterations, "Training.SAVE_IMAGES=true")), [])
        return subprocess.run([python, "train_encoder.py", "experiment_template.cfg", *sets, *extra], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})

    done = script()
    assert done.returncode == 0, done.stderr
    assert f"encoder written to {out / 'encoder.pt'}" in done.stdout
    for name in ("encoder.pt", "config.cfg", "encoder/loss.png", "encoder/preview-iter2.png",
                 "encoder/preview-iter4.png", "encoder/train-loss.csv"):
        assert (out / name).is_file(), name
    assert "Traceback" not in done.stderr

    refused = script("--set", "Encoder.LEARNING_RATE=0.002")  # another experiment into the same folder
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "[Encoder] LEARNING_RATE: 0.001 -> 0.002" in lines[0]

    longer = script(iterations=6)  # training longer is the same experiment: it continues from iteration 4
    assert longer.returncode == 0, longer.stderr
    assert "from encoder-epoch4.pt (iteration 4 of 6)" in longer.stderr
    assert (out / "encoder" / "preview-iter6.png").is_file()
    assert [r["iteration"] for r in _rows(out / "encoder" / "train-loss.csv")] == [str(i) for i in range(1, 7)]


@pytest.mark.slow
def test_the_aae_training_config_pretrains_an_encoder(tmp_path, python):
    """The original's aae_encoder_test.cfg with overrides for its paths and a tiny budget (its own
    architecture shrunk to 8-16 filters so that two iterations take seconds)."""
    sets = ["Dataset.MODEL_PATH_DATA=data/cad-files/tless_like_2fold.ply", "Dataset.BACKGROUND_IMAGES=procedural",
            f"Dataset.CACHE_DIR={tmp_path / 'cache'}", f"Training.OUTPUT_PATH={tmp_path / 'run'}",
            "Dataset.NOOF_TRAINING_IMGS=8", "Dataset.NOOF_BG_IMGS=8", "Encoder.CHANNELS=[8, 8, 16, 16]",
            "Encoder.LATENT_SIZE=16", "Encoder.NUM_ITER=2", "Encoder.BATCH_SIZE=4", "Encoder.SAVE_INTERVAL=2"]
    done = subprocess.run([python, "train_encoder.py", "tests/data/original_aae_encoder_test.cfg",
                           *sum((["--set", s] for s in sets), [])], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    encoder = load_encoder_pt(tmp_path / "run" / "encoder.pt")
    assert encoder.config.image_size == 128 and not encoder.config.batch_norm


TEMPLATE_ENCODER = REPO_ROOT / "data/encoders/tless_like_2fold-small.pt"
# every key pretraining reads (the rest of [Dataset]/[Training] names files or only concerns the head)
PRETRAINING_KEYS = [("Encoder", key) for key in ("ARCH", "CHANNELS", "LATENT_SIZE", "BATCH_NORMALIZATION",
                                                 "BOOTSTRAP_RATIO", "NUM_ITER", "BATCH_SIZE", "LEARNING_RATE")] + [
    ("Dataset", key) for key in ("MODEL_PATH_DATA", "BACKGROUND_IMAGES", "CROP_SIZE", "K", "RADIUS", "PAD_FACTOR",
                                 "NOOF_TRAINING_IMGS")] + [
    ("Training", key) for key in ("RANDOM_SEED", "MAX_REL_OFFSET", "AUGMENT_IMGS", "VIEW_SAMPLING")] + [
    ("Rendering", "NORMALIZE_VERTICES")]


@pytest.mark.slow
def test_committed_template_encoder_is_what_its_command_makes(tmp_path):
    """The template's ENCODER_WEIGHTS was written by `python train_encoder.py experiment_template.cfg`
    (data/README.md): the file's stored config has the template's value for every key pretraining reads,
    the augmentation included, and the digest of the template's data model; and that command runs
    (here 2 iterations on a 32-view cache)."""
    template = load_config(REPO_ROOT / "experiment_template.cfg")
    assert template.Dataset.ENCODER_WEIGHTS == str(TEMPLATE_ENCODER.relative_to(REPO_ROOT)) or \
        Path(template.Dataset.ENCODER_WEIGHTS).resolve() == TEMPLATE_ENCODER
    metadata = torch.load(TEMPLATE_ENCODER, weights_only=True)["metadata"]
    (tmp_path / "stored.cfg").write_text(metadata["config"])
    stored = load_config(tmp_path / "stored.cfg")
    for section, key in PRETRAINING_KEYS + [(k.section, k.name) for k in SCHEMA if k.section == "Augmentation"]:
        assert getattr(getattr(stored, section), key) == getattr(getattr(template, section), key), (section, key)
    assert metadata["iterations"] == template.Encoder.NUM_ITER
    from multipose.infra.content_key import file_sha256

    assert metadata["data_mesh_sha256"] == file_sha256(REPO_ROOT / template.Dataset.MODEL_PATH_DATA)
    run = subprocess.run(
        [
            sys.executable,
            "train_encoder.py",
            "experiment_template.cfg",
            "--set",
            f"Training.OUTPUT_PATH={tmp_path / 'run'}",
            "--set",
            f"Dataset.CACHE_DIR={tmp_path / 'cache'}",
            "--set",
            "Encoder.NUM_ITER=2",
            "--set",
            "Dataset.NOOF_TRAINING_IMGS=32",
            "--set",
            "Dataset.NOOF_BG_IMGS=8",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    written = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)["metadata"]
    assert written["data_mesh_sha256"] == metadata["data_mesh_sha256"] and written["iterations"] == 2


def test_encoder_of_another_model_is_refused(tmp_path, shared):
    """An encoder knows only the object it was pretrained on: pointing ENCODER_WEIGHTS at the template's
    encoder with another data model is one error naming both models."""
    cfg = load_config(REPO_ROOT / "experiment_template.cfg", [
        f"Dataset.MODEL_PATH_DATA={shared / 'part.ply'}", f"Dataset.ENCODER_WEIGHTS={TEMPLATE_ENCODER}"])
    with pytest.raises(UserInputError, match="pretrained on the CAD model tless_like_2fold.ply.*part.ply"):
        load_encoder(cfg)
