"""The evaluation run: a head beats the random baseline on the views it learnt, test sets from files,
the codebook baseline, and the entry points (train.py evaluates at the end, evaluate.py)."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.original import original_state_dict, ortho6d_columns
from torch.testing import assert_close

from multipose.config import load_config
from multipose.core.geometry import geodesic_angle_deg
from multipose.data.io import save_samples
from multipose.evaluation.report import read_per_sample
from multipose.evaluation.testsets import TestSet
from multipose.experiment.codebook import codebook_from_config
from multipose.experiment.datasets import generate_samples
from multipose.experiment.evaluation import evaluate_models
from multipose.experiment.pose_checkpoints import load_pose_checkpoint
from multipose.experiment.testsets import check_evaluation_inputs, load_test_set
from multipose.infra.errors import ConfigError
from multipose.models import Encoder, EncoderConfig, PoseHead, PoseHeadConfig, codebook_rotations
from multipose.models.weights import ModelFileError

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_ENCODER = EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)


def _overrides(shared: Path, out: Path) -> list[str]:
    return [
        f"Dataset.ENCODER_WEIGHTS={shared / 'encoder.pt'}",
        f"Dataset.CACHE_DIR={shared / 'cache'}",
        "Dataset.CROP_SIZE=32",
        "Dataset.NOOF_TRAINING_IMGS=16",
        "Dataset.NOOF_VALID_IMGS=4",
        "Dataset.NOOF_BG_IMGS=8",
        "Rendering.IMAGE_SIZE=24",
        "Rendering.LOSS_MESH_FACES=300",
        "Rendering.VIEWS=2",
        f"Training.OUTPUT_PATH={out}",
        "Training.HEAD=regression",  # the paper's head on the frozen encoder (the template's population head and
        "Training.FINETUNE_ENCODER=false",  # fine-tuned layer are tested elsewhere)
        "Training.NUM_ITER=1",
        "Training.NUM_SAMPLES=16",
        "Training.BATCH_SIZE=8",
        "Training.DEVICE=cpu",
        "Training.SAVE_IMAGES=false",
        "Evaluation.NUM_SAMPLES=6",
        "Evaluation.VSD_MESH_FACES=300",
        "Evaluation.NUM_EXAMPLES=2",
        "Evaluation.CODEBOOK_VIEWS=10",
        "Evaluation.CODEBOOK_INPLANE=2",
    ]


def _cfg(shared: Path, out: Path, *extra: str):
    return load_config(REPO_ROOT / "experiment_template.cfg", [*_overrides(shared, out), *extra])


@pytest.mark.slow
@pytest.mark.outcome
def test_a_head_evaluated_on_its_own_training_views_beats_the_random_baseline(shared, tmp_path, record_property):
    cfg = _cfg(shared, tmp_path / "run", "Training.AUGMENT_IMGS=false")
    samples = generate_samples(cfg, 16, seed=5, progress=False)
    torch.manual_seed(0)
    encoder = Encoder(TINY_ENCODER).eval()
    with torch.no_grad():
        codes = encoder.encode(samples.images)
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16))
    optimizer = torch.optim.Adam(head.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs cost more than the maths (100x on a busy CPU)
    try:
        for _ in range(100):  # overfit the 16 views: every hypothesis regresses the true rotation
            loss = geodesic_angle_deg(head(codes).R, samples.R[:, None]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    for module in head.modules():  # batch-norm statistics of exactly this batch, for eval mode
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        head(codes)
    test_set = TestSet(images=samples.images, R=samples.R, t=samples.t, K_vsd=samples.K, vsd_size=32)
    result = evaluate_models(cfg, encoder, head.eval(), test_set, tmp_path / "eval", progress=False)
    recall = result.recall
    record_property("recall head (>= 0.75), random, best-of-K", [recall["head"], recall["random"], recall["best-of-K"]])
    assert recall["head"] >= 0.75, (recall, loss.item())
    assert recall["head"] > recall["random"] + 0.3, recall
    assert recall["best-of-K"] >= recall["head"]
    assert torch.all(result.errors["best-of-K"] <= result.errors["head"] + 1e-6)
    rows = (tmp_path / "eval" / "per-sample.csv").read_text().splitlines()
    assert len(rows) == 17 and rows[0].startswith("index,scene_id,im_id,top_confidence,vsd_head")


def test_file_test_sets_npz_and_the_originals_pickle(shared, tmp_path):
    cfg = _cfg(shared, tmp_path / "run")
    samples = generate_samples(cfg, 5, seed=3, progress=False)
    save_samples(tmp_path / "test.npz", samples)
    images = (samples.images.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    with open(tmp_path / "test.p", "wb") as f:
        pickle.dump({"Rs": list(samples.R.numpy()), "images": list(images)}, f, protocol=2)
    from_npz = load_test_set(_cfg(shared, tmp_path / "run", f"Evaluation.TEST_DATA_PATH={tmp_path / 'test.npz'}",
                                  "Evaluation.NUM_SAMPLES=3"), progress=False)
    assert len(from_npz) == 3 and torch.equal(from_npz.K_vsd, samples.K[[0, 2, 4]])
    from_pickle = load_test_set(_cfg(shared, tmp_path / "run", f"Evaluation.TEST_DATA_PATH={tmp_path / 'test.p'}"),
                                progress=False)
    # a pickle has no t or K: the object at [0, 0, RADIUS] in the centred training window
    assert len(from_pickle) == 5 and from_pickle.t[:, 2].eq(700.0).all()
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16)).eval()
    result = evaluate_models(cfg, Encoder(TINY_ENCODER).eval(), head, from_pickle, tmp_path / "eval", progress=False)
    assert result.metrics["num_samples"] == 5 and (tmp_path / "eval" / "multipose_test-test.csv").is_file()


def test_evaluation_inputs_are_checked_before_any_work(shared, tmp_path):
    with pytest.raises(ConfigError, match=r"TEST_DATA_PATH = .*no such file"):
        check_evaluation_inputs(_cfg(shared, tmp_path, f"Evaluation.TEST_DATA_PATH={tmp_path / 'missing.npz'}"))
    with pytest.raises(ConfigError, match="MODELS_INFO"):
        check_evaluation_inputs(_cfg(shared, tmp_path, f"Evaluation.MODELS_INFO={tmp_path / 'none.json'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="BOP split folder"):
        check_evaluation_inputs(_cfg(shared, tmp_path, f"Evaluation.TEST_DATA_PATH={tmp_path / 'empty'}"))
    with pytest.raises(ModelFileError, match="checkpoint not found"):
        load_pose_checkpoint(tmp_path / "models" / "model-best.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable checkpoint"):
        load_pose_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a pose-head checkpoint"):
        load_pose_checkpoint(tmp_path / "other.pt")


def test_a_head_is_not_evaluated_on_another_encoder(shared, tmp_path):
    """The checkpoint records the sha256 of its encoder; other weights of the same shape are refused."""
    from multipose.experiment.evaluation import evaluate_checkpoint
    from multipose.models.weights import encoder_digest

    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16))
    torch.manual_seed(5)
    other = Encoder(TINY_ENCODER)
    state = {"model": head.state_dict(), "head_args": head.config.to_dict(), "epoch": 1,
             "encoder_args": TINY_ENCODER.to_dict(), "encoder_sha256": encoder_digest(other)}
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match=r"other encoder weights \(sha256 " + encoder_digest(other)[:12]):
        evaluate_checkpoint(_cfg(shared, tmp_path / "run"), tmp_path / "model.pt", progress=False)
    assert not (tmp_path / "run").exists()


def test_codebook_is_built_once_and_cached(shared, tmp_path, caplog):
    cfg = _cfg(shared, tmp_path / "run")
    encoder = Encoder(TINY_ENCODER).eval()
    first = codebook_from_config(cfg, encoder, progress=False)
    M = codebook_rotations(10, 2).shape[0]  # the icosahedron: 12 viewpoints
    assert first.num_entries == M == 24 and first.nbytes == M * (16 + 9) * 4
    caplog.set_level("INFO")
    again = codebook_from_config(cfg, encoder, progress=False)
    assert "entries from" in caplog.text and torch.equal(first.codes, again.codes)
    other = Encoder(TINY_ENCODER).eval()  # other weights: another key, another codebook
    assert not torch.equal(codebook_from_config(cfg, other, progress=False).codes, first.codes)


@pytest.mark.slow
def test_train_py_evaluates_at_the_end_and_evaluate_py_writes_its_files(shared, tmp_path, python):
    out = tmp_path / "run"
    args = sum((["--set", o] for o in _overrides(shared, out)), [])
    trained = subprocess.run([python, "train.py", "experiment_template.cfg", *args], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "evaluation: VSD recall (e < 0.3, tau 20 mm" in trained.stdout, trained.stdout
    after = json.loads((out / "evaluation" / "metrics.json").read_text())
    # the template's CODEBOOK_BASELINE: the main job puts the codebook of its encoder beside the head
    assert after["num_samples"] == 6 and after["epoch"] == 1 and after["codebook_entries"] == 24
    assert "codebook" in trained.stdout.splitlines()[-1]
    timings = json.loads((out / "timings.json").read_text())  # seconds per phase of this invocation
    phases = timings["phases"]
    assert {"caches", "head_training", "validation", "evaluation"} <= set(phases), phases
    assert all(seconds >= 0 for seconds in phases.values()) and timings["notes"]["epochs"] == 1
    assert sum(phases.values()) <= timings["total"] and phases["head_training"] > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(out / "tensorboard" / "head"))
    board.Reload()  # the evaluation's recall at the checkpoint's epoch beside the training curves
    assert [(e.step, e.value) for e in board.Scalars("evaluation/recall_head")] == [(1, after["recall"]["head"])]

    evaluated = subprocess.run(
        [python, "evaluate.py", "experiment_template.cfg", *args, "--num", "4", "--baseline", "codebook",
         "--out", str(tmp_path / "eval")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "VSD recall" in evaluated.stdout and "codebook" in evaluated.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_samples"] == 4 and set(metrics["recall"]) == {"head", "best-of-K", "random", "codebook"}
    assert metrics["bytes"]["codebook"] == 24 * (16 + 9) * 4 and metrics["bytes"]["head"] > 0
    assert {"encoder+head", "encoder+codebook"} <= set(metrics["ms_per_image"])
    assert metrics["checkpoint"].endswith("model-best.pt")
    for name in ("per-sample.csv", "multipose_synthetic-test.csv", "aaecodebook_synthetic-test.csv"):
        assert (tmp_path / "eval" / name).is_file(), name
    for name in ("recall.png", "rotation-error.png", "examples.png"):
        with Image.open(tmp_path / "eval" / name) as image:
            image.verify()

    (tmp_path / "bad.pt").write_bytes(b"\x00" * 100)
    bad = subprocess.run([python, "evaluate.py", "experiment_template.cfg", *args, "--checkpoint",
                          str(tmp_path / "bad.pt")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2  # a model file that cannot be used: bad input
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "bad.pt" in lines[0], bad.stderr


def test_train_py_checks_the_test_set_before_it_trains(shared, tmp_path):
    import argparse

    import train

    out = tmp_path / "run"
    cfg = _cfg(shared, out, f"Evaluation.TEST_DATA_PATH={tmp_path / 'missing.npz'}")
    with pytest.raises(ConfigError, match="missing.npz.*AFTER_TRAINING=false"):
        train.main(argparse.Namespace(force=False), cfg)
    assert not out.exists()


def _original_checkpoint(path: Path, K: int, code: int) -> np.ndarray:
    """A checkpoint as the original's train.py writes it whose head outputs one fixed 6D vector per
    hypothesis (l3's weight zero, its bias the confidences and vectors); returns the vectors (K, 6)."""
    sixd = np.array([[0.3, -0.8, 0.4, 0.9, 0.2, -0.1], [-0.5, 0.1, 0.7, 0.2, 0.9, 0.4]])[:K]
    state = original_state_dict(K, code)
    state["l3.weight"] = torch.zeros_like(state["l3.weight"])
    state["l3.bias"] = torch.tensor([2.0, *[0.0] * (K - 1), *sixd.ravel()], dtype=torch.float32)
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "lr_reducer": None, "epoch": 12}, path)
    return sixd


@pytest.mark.slow
def test_evaluate_py_evaluates_a_checkpoint_of_the_original_with_its_decoding(shared, tmp_path, python):
    sixd = _original_checkpoint(tmp_path / "model-epoch12.pt", K=2, code=16)
    args = sum((["--set", o] for o in _overrides(shared, tmp_path / "run")), [])
    evaluated = subprocess.run(
        [python, "evaluate.py", "experiment_template.cfg", *args, "--num", "3", "--checkpoint",
         str(tmp_path / "model-epoch12.pt"), "--out", str(tmp_path / "eval")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["epoch"] == 12
    rows = list(csv.DictReader(open(tmp_path / "eval" / "multipose_synthetic-test.csv")))
    assert len(rows) == 3  # BOP's rows: each sample's most confident hypothesis
    expected = [np.diag([-1.0, -1.0, 1.0]) @ ortho6d_columns(v).T for v in sixd]  # the physical poses
    for row in rows:  # every sample gets the same two hypotheses, the first the more confident
        R = np.array([float(x) for x in row["R"].split()]).reshape(3, 3)
        assert float(row["score"]) > 0.5
        np.testing.assert_allclose(R, expected[0], atol=1e-5)
    wrong_k = subprocess.run(
        [python, "evaluate.py", "experiment_template.cfg", *args, "--set", "Rendering.VIEWS=4", "--checkpoint",
         str(tmp_path / "model-epoch12.pt")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert wrong_k.returncode == 2 and "K = 2, but the config asks for K = 4" in wrong_k.stderr, wrong_k.stderr


def test_training_starts_from_an_original_checkpoint_and_keeps_its_decoding(shared, tmp_path):
    from multipose.experiment.pose_training import train_pose_head

    _original_checkpoint(tmp_path / "original.pt", K=2, code=16)
    cfg = _cfg(shared, tmp_path / "run", f"Training.INIT_CHECKPOINT={tmp_path / 'original.pt'}",
               "Evaluation.AFTER_TRAINING=false")
    train_pose_head(cfg, torch.device("cpu"), progress=False)
    state = torch.load(tmp_path / "run" / "models" / "model-epoch1.pt", weights_only=False)
    assert state["head_args"]["convention"] == "original"
    start = torch.load(tmp_path / "original.pt")["model"]["l01.weight"]
    change = (state["model"]["l01.weight"] - start).abs().max().item()
    assert 0 < change < 0.01  # two Adam steps of 1e-3 away from the original's weights
    bad = _cfg(shared, tmp_path / "run2", f"Training.INIT_CHECKPOINT={tmp_path / 'missing.pt'}")
    with pytest.raises(ModelFileError, match="missing.pt: checkpoint not found"):
        train_pose_head(bad, torch.device("cpu"), progress=False)
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("template, K", [("original_experiment_template.cfg", 10),
                                         ("original_experiment_template_final.cfg", 10)])
@pytest.mark.slow
def test_the_originals_templates_train_end_to_end(shared, tmp_path, python, template, K):
    """The original's templates with overrides for their paths and a tiny budget: the early one (T [0, 0,
    375], constant rate, after its VIEWS fix) and the final one (T [[0, 0, 1000]], NORMALIZE_VERTICES,
    one-cycle rates, WEIGHT_INIT_NAME)."""
    out = tmp_path / "run"
    overrides = [o for o in _overrides(shared, out) if not o.startswith("Rendering.VIEWS")] + [
        f"Dataset.MODEL_PATH_DATA={REPO_ROOT / 'data/cad-files/tless_like_2fold.ply'}",
        f"Dataset.MODEL_PATH_LOSS={REPO_ROOT / 'data/cad-files/tless_like_2fold.ply'}",
        "Dataset.VALID_DATA_PATH=", "Dataset.BACKGROUND_IMAGES=procedural", "Evaluation.TEST_DATA_PATH="]
    args = sum((["--set", o] for o in overrides), [])
    trained = subprocess.run([python, "train.py", f"tests/data/{template}", *args],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "evaluation: VSD recall" in trained.stdout
    state = torch.load(out / "models" / "model-epoch1.pt", weights_only=False)
    assert state["head_args"]["num_hypotheses"] == K


@pytest.mark.slow
def test_a_bop_split_converts_to_the_originals_pickle_and_evaluates_like_eval_pickle(shared, tmp_path, python):
    """generate_dataset.py --from-bop (the original's bop2pickle.py), then evaluate.py on the pickle: the
    results files carry the scene ids and translations (as eval-pickle.py wrote them), and rotations
    stored in the pickle (Rs_predicted) are evaluated as the method 'stored'."""
    from support.data import write_bop_dataset

    bop = write_bop_dataset(tmp_path / "bop")
    out_pickle = tmp_path / "test-obj01.p"
    made = subprocess.run([python, "generate_dataset.py", "experiment_template.cfg", "--from-bop", str(bop["split"]),
                           "--obj-id", "1", "--out", str(out_pickle)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr
    with open(out_pickle, "rb") as f:
        data = pickle.load(f)
    # image 0: one instance of object 1; image 3: two of object 1 (one almost hidden: no threshold here)
    assert (data["scene_ids"], data["img_ids"], data["obj_ids"]) == ([1, 1, 1], [0, 3, 3], [1, 1, 1])
    assert all(im.shape == (128, 128, 3) and im.dtype == np.uint8 for im in data["images"])
    np.testing.assert_allclose(data["Rs"][0], bop["R"][0].double().numpy(), atol=1e-6)
    np.testing.assert_allclose(data["ts"][1], bop["t"][1].numpy(), atol=1e-4)
    assert data["visib_fract"] == [1.0, 1.0, 0.05]

    data["Rs_predicted"] = data["Rs"]  # a method that is always right
    with open(out_pickle, "wb") as f:
        pickle.dump(data, f, protocol=2)
    args = sum((["--set", o] for o in _overrides(shared, tmp_path / "run")), [])
    evaluated = subprocess.run(
        [python, "evaluate.py", "experiment_template.cfg", *args, "--set", f"Evaluation.TEST_DATA_PATH={out_pickle}",
         "--checkpoint", str(_trained_head(shared, tmp_path)), "--out", str(tmp_path / "eval")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_samples"] == 3 and metrics["recall"]["stored"] == 1.0
    rows = list(csv.DictReader(open(tmp_path / "eval" / "stored_test-obj01-test.csv")))
    assert [(int(r["scene_id"]), int(r["im_id"]), int(r["obj_id"])) for r in rows] == [(1, 0, 1), (1, 3, 1), (1, 3, 1)]
    t = np.array([[float(x) for x in r["t"].split()] for r in rows])
    np.testing.assert_allclose(t, np.stack(data["ts"]), atol=1e-3)
    head_rows = list(csv.DictReader(open(tmp_path / "eval" / "multipose_test-obj01-test.csv")))
    assert len(head_rows) == 3 and {int(r["im_id"]) for r in head_rows} == {0, 3}  # one per instance


def _trained_head(shared: Path, tmp_path: Path) -> Path:
    """A checkpoint of a random head of this module's config (K = 2 on the tiny encoder)."""
    from multipose.experiment.encoders import load_encoder
    from multipose.models.weights import encoder_digest

    cfg = _cfg(shared, tmp_path / "run")
    torch.manual_seed(0)
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16))
    path = tmp_path / "head.pt"
    torch.save({"model": head.state_dict(), "head_args": head.config.to_dict(), "epoch": 1,
                "encoder_args": TINY_ENCODER.to_dict(), "encoder_sha256": encoder_digest(load_encoder(cfg))}, path)
    return path


@pytest.mark.slow
def test_scores_do_not_depend_on_the_batch_size(shared, tmp_path):
    """Batches are scored one by one and accumulated: 3 batches give the numbers of one batch."""
    samples = generate_samples(_cfg(shared, tmp_path / "run"), 5, seed=4, progress=False)
    test_set = TestSet(images=samples.images, R=samples.R, t=samples.t, K_vsd=samples.K, vsd_size=32)
    torch.manual_seed(2)
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16)).eval()
    encoder = Encoder(TINY_ENCODER).eval()
    results = [
        evaluate_models(_cfg(shared, tmp_path / "run", f"Evaluation.BATCH_SIZE={b}", "Evaluation.SAVE_IMAGES=true"),
                        encoder, head, test_set, tmp_path / f"eval{b}", progress=False)
        for b in (2, 5)
    ]
    for method, errors in results[0].errors.items():
        assert_close(errors, results[1].errors[method], msg=method)
    small, whole = (read_per_sample(tmp_path / f"eval{b}") for b in (2, 5))
    assert list(small) == list(whole)
    for column in small:
        np.testing.assert_allclose(small[column], whole[column], rtol=1e-5, atol=1e-4, err_msg=column)
    bop_rows = [(tmp_path / f"eval{b}" / "multipose_synthetic-test.csv").read_text().splitlines() for b in (2, 5)]
    assert [r.split(",")[:4] for r in bop_rows[0]] == [r.split(",")[:4] for r in bop_rows[1]]
    assert (tmp_path / "eval2" / "examples.png").is_file()


@pytest.mark.slow
def test_a_finetuned_head_is_evaluated_beside_a_codebook_of_either_encoder(shared, tmp_path):
    """A head with a fine-tuned encoder layer takes the frozen encoder's feature maps; the codebook baseline
    is built with the pretrained encoder or (CODEBOOK_ENCODER: finetuned) with the head's layer, and
    metrics.json says which. Asking for the fine-tuned codebook of a head without the layer is refused."""
    from multipose.experiment.encoders import load_encoder
    from multipose.experiment.evaluation import evaluate_checkpoint
    from multipose.models.weights import encoder_digest

    cfg = _cfg(shared, tmp_path / "run", "Evaluation.CODEBOOK_BASELINE=true")
    encoder = load_encoder(cfg)
    torch.manual_seed(0)
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, encoder_features=encoder.config.flat_features))
    assert head.encoder is not None
    head.encoder.load_state_dict(encoder.dense.state_dict())
    with torch.no_grad():
        head.encoder.weight.add_(0.5 * torch.randn_like(head.encoder.weight))  # "fine-tuned"
    state = {"model": head.state_dict(), "head_args": head.config.to_dict(), "epoch": 1,
             "encoder_args": TINY_ENCODER.to_dict(), "encoder_sha256": encoder_digest(encoder)}
    torch.save(state, tmp_path / "tuned.pt")
    results = {}
    for which in ("pretrained", "finetuned"):
        tuned_cfg = _cfg(shared, tmp_path / "run", f"Evaluation.CODEBOOK_ENCODER={which}")
        result = evaluate_checkpoint(tuned_cfg, tmp_path / "tuned.pt", out_dir=tmp_path / which, progress=False,
                                     codebook=True)
        assert result.metrics["codebook_encoder"] == which and result.metrics["finetuned_encoder_layer"] is True
        results[which] = result
    assert not torch.equal(results["pretrained"].errors["codebook"], results["finetuned"].errors["codebook"])
    assert_close(results["pretrained"].errors["head"], results["finetuned"].errors["head"])  # the same head
    plain = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16))
    torch.save({**state, "model": plain.state_dict(), "head_args": plain.config.to_dict()}, tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="CODEBOOK_ENCODER = finetuned: .* holds no fine-tuned encoder layer"):
        evaluate_checkpoint(_cfg(shared, tmp_path / "run", "Evaluation.CODEBOOK_ENCODER=finetuned"),
                            tmp_path / "plain.pt", progress=False, codebook=True)
