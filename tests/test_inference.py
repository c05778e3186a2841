"""Poses of one's own images: predict.py on a BOP-style scene written by our renderer (two instances of the
template part, one cut by the image border), the Python API, overlays, bad inputs, and the exported models."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.data import REPO_ROOT, write_two_part_scene

from multipose.app.cli import run
from multipose.config import load_config
from multipose.experiment.estimators import estimator_from_run
from multipose.experiment.evaluation import evaluate_checkpoint
from multipose.experiment.pose_training import train_pose_head
from multipose.inference.estimator import PosedObject, PoseEstimator
from multipose.inference.export import ExportedPoseModel, export_model
from multipose.inference.overlay import COLOURS
from multipose.infra.errors import UserInputError
from multipose.models import Encoder, EncoderConfig, PoseHead, PoseHeadConfig
from multipose.models.head import head_input
from multipose.models.weights import load_encoder_pt

ENCODER = REPO_ROOT / "data" / "encoders" / "tless_like_2fold-small.pt"


def _overrides(run_dir: Path) -> list[str]:
    return [f"Dataset.ENCODER_WEIGHTS={ENCODER}", f"Dataset.CACHE_DIR={run_dir / 'cache'}",
            "Dataset.NOOF_TRAINING_IMGS=16", "Dataset.NOOF_VALID_IMGS=4", "Dataset.NOOF_BG_IMGS=8",
            "Rendering.IMAGE_SIZE=24", "Rendering.LOSS_MESH_FACES=300", "Rendering.VIEWS=3",
            f"Training.OUTPUT_PATH={run_dir}", "Training.HEAD=regression", "Training.NUM_ITER=1",
            "Training.NUM_SAMPLES=16", "Training.BATCH_SIZE=8", "Training.SAVE_IMAGES=false", "Training.DEVICE=cpu",
            "Evaluation.AFTER_TRAINING=false", "Evaluation.OBJ_ID=1"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """The scene, a head trained for one epoch on the committed encoder, and its config file."""
    root = tmp_path_factory.mktemp("inference")
    found = write_two_part_scene(root)
    run_dir = root / "run"
    cfg = load_config(REPO_ROOT / "experiment_template.cfg", _overrides(run_dir))
    train_pose_head(cfg, torch.device("cpu"), progress=False)
    infos = found["infos"]
    (root / "boxes.json").write_text(json.dumps([{"bbox_obj": i["bbox_obj"], "obj_id": 1} for i in infos]))
    return {**found, "root": root, "run": run_dir, "cfg": run_dir / "config.cfg"}


def _predict_module():
    spec = importlib.util.spec_from_file_location("predict_script", REPO_ROOT / "predict.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _predict(scene: dict, out: Path, *extra: str, image: Path | None = None) -> int:
    predict = _predict_module()
    return run(predict.main, predict.build_parser(), [
        str(scene["cfg"]), "--image", str(image or scene["image"]), "--camera", str(scene["root"] / "camera.json"),
        "--boxes", str(scene["root"] / "boxes.json"), "--out", str(out), *extra])


@pytest.mark.slow
def test_predict_py_poses_each_box_as_the_evaluation_does_and_draws_it(scene, tmp_path, python):
    """predict.py on the scene: poses.json holds per box a rotation (orthonormal, det +1), a translation and the
    K hypotheses by confidence; the poses are the evaluation's of the same split (evaluate.py's results file, to
    its 6 decimals); the overlay draws the top hypothesis's outline on the object's box, also for the box cut by
    the border; evaluate.py --vis draws the same image with the ground truth."""
    out = tmp_path / "poses"
    result = subprocess.run([python, "predict.py", str(scene["cfg"]), "--image", str(scene["image"]), "--camera",
                             str(scene["root"] / "camera.json"), "--boxes", str(scene["root"] / "boxes.json"),
                             "--out", str(out), "--vis"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "poses.json").read_text())
    boxes = data["images"]["000000.png"]
    assert len(boxes) == 2 and data["num_hypotheses"] == 3 and data["seconds_per_box"]["encoder+head"] > 0
    for box in boxes:
        R = np.array(box["R"])
        assert R.shape == (3, 3) and np.allclose(R @ R.T, np.eye(3), atol=1e-5) and np.linalg.det(R) > 0.999
        confidences = [h["confidence"] for h in box["hypotheses"]]
        assert confidences == sorted(confidences, reverse=True) and sum(confidences) == pytest.approx(1.0)
        assert box["hypotheses"][0]["R"] == box["R"] and box["obj_id"] == 1 and box["t"][2] > 0
    cfg = load_config(scene["cfg"], [f"Evaluation.TEST_DATA_PATH={scene['split']}"])
    evaluate_checkpoint(cfg, device="cpu", out_dir=tmp_path / "eval", codebook=False, progress=False, vis=1)
    with open(tmp_path / "eval" / "multipose_parts-test.csv") as f:
        rows = list(csv.DictReader(f))
    for box, row in zip(boxes, rows, strict=True):
        np.testing.assert_allclose(np.array(box["R"]).ravel(), [float(v) for v in row["R"].split()], atol=1e-6)
        np.testing.assert_allclose(box["t"], [float(v) for v in row["t"].split()], atol=1e-5)
    drawn = np.asarray(Image.open(out / "000000-poses.png").convert("RGB")).astype(int)
    top = (np.abs(drawn - np.array(COLOURS["top"])).sum(axis=-1) < 60)
    for info in scene["infos"]:
        x, y, w, h = info["bbox_obj"]
        near = top[max(y - 12, 0):y + h + 12, max(x - 12, 0):min(x + w + 12, 640)]
        assert near.sum() > 40  # the top hypothesis's outline is drawn about the box
    assert top.sum() < 3000  # and nowhere else (outlines and labels of two boxes)
    evaluated = np.asarray(Image.open(tmp_path / "eval" / "overlays" / "000001_000000.png").convert("RGB"))
    truth = (np.abs(evaluated.astype(int) - np.array(COLOURS["truth"])).sum(axis=-1) < 60)
    mask = scene["masks"][0].numpy()
    ys, xs = np.nonzero(truth[:, :400])
    assert len(ys) > 40 and mask[ys.clip(0, 479), xs].mean() > 0.3  # the ground truth's outline, on the object


def test_bad_inputs_are_one_error_line_and_nothing_written(scene, tmp_path, capsys):
    """Unreadable image, camera without a valid K, a boxes file naming an image that is not there, a zero-size box,
    a box outside the image, a box of another object, a checkpoint of another K: exit 2, one error line, no
    output folder."""
    root = scene["root"]
    (tmp_path / "junk.png").write_text("not an image")
    (tmp_path / "camera-no-k.json").write_text(json.dumps({"width": 640}))
    (tmp_path / "camera-bad-k.json").write_text(json.dumps({"K": [[-600, 0, 320], [0, 600, 240], [0, 0, 1]]}))
    boxes = {"named.json": {"other.png": [{"bbox": [1, 1, 5, 5]}]}, "zero.json": [{"bbox": [10, 10, 0, 5]}],
             "outside.json": [{"bbox": [700, 10, 20, 20]}], "object.json": [{"bbox": [200, 200, 60, 60], "obj_id": 7}]}
    for name, content in boxes.items():
        (tmp_path / name).write_text(json.dumps(content))
    camera, good = ["--camera", str(root / "camera.json")], ["--boxes", str(root / "boxes.json")]
    cases = {
        "junk.png: not an image that can be read": ["--image", str(tmp_path / "junk.png"), *camera, *good],
        "camera-no-k.json: expected \"K\"": ["--camera", str(tmp_path / "camera-no-k.json"), *good],
        "is not a pinhole camera matrix": ["--camera", str(tmp_path / "camera-bad-k.json"), *good],
        "boxes for other.png, which is not among the images": [*camera, "--boxes", str(tmp_path / "named.json")],
        "has zero or negative size": [*camera, "--boxes", str(tmp_path / "zero.json")],
        "lies outside the 640 x 480 image": [*camera, "--boxes", str(tmp_path / "outside.json")],
        "a box of object 7, but the head poses object(s) [1]": [*camera, "--boxes", str(tmp_path / "object.json")],
        "K = 4": [*camera, *good, "--set", "Rendering.VIEWS=4"],
    }
    predict = _predict_module()
    for message, args in cases.items():
        image = [] if "--image" in args else ["--image", str(scene["image"])]
        out = tmp_path / "out"
        code = run(predict.main, predict.build_parser(), [str(scene["cfg"]), *image, *args, "--out", str(out)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (message, code, lines)
        assert message in lines[0], (message, lines[0])
        assert not out.exists(), message


def test_the_python_api_gives_the_poses_of_predict_py(scene, tmp_path):
    """estimator_from_run(...).predict(image, K, boxes) returns typed poses; predict.py writes the same numbers."""
    from multipose.inference.inputs import read_boxes, read_camera, read_image

    estimator = estimator_from_run(scene["run"])
    camera = read_camera(scene["root"] / "camera.json")
    boxes = read_boxes(scene["root"] / "boxes.json", [scene["image"]])["000000.png"]
    poses = estimator.predict(read_image(scene["image"], camera), camera.K, boxes.boxes, boxes.obj_id)
    assert poses.R.shape == (2, 3, 3, 3) and poses.t.shape == (2, 3, 3) and poses.R_top.shape == (2, 3, 3)
    assert _predict(scene, tmp_path / "p") == 0
    written = json.loads((tmp_path / "p" / "poses.json").read_text())["images"]["000000.png"]
    np.testing.assert_allclose([b["R"] for b in written], poses.R_top.numpy(), atol=1e-7)
    np.testing.assert_allclose([b["t"] for b in written], poses.t_top.numpy(), atol=1e-4)
    assert len(estimator.predict(read_image(scene["image"], camera), camera.K, torch.zeros(0, 4))) == 0
    folder = tmp_path / "images"  # a folder of images, the boxes keyed by image name (an image without boxes)
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(scene["image"].read_bytes())
    keyed = json.loads((scene["root"] / "boxes.json").read_text())
    (tmp_path / "keyed.json").write_text(json.dumps({"a.png": keyed}))
    predict = _predict_module()
    assert run(predict.main, predict.build_parser(), [
        str(scene["cfg"]), "--image", str(folder), "--camera", str(scene["root"] / "camera.json"), "--boxes",
        str(tmp_path / "keyed.json"), "--out", str(tmp_path / "f")]) == 0
    by_image = json.loads((tmp_path / "f" / "poses.json").read_text())["images"]
    assert list(by_image) == ["a.png"] and [b["R"] for b in by_image["a.png"]] == [b["R"] for b in written]


def test_a_head_of_two_objects_poses_each_box_as_its_object_or_as_its_classifier_says():
    """Boxes with ids get their object's block; without one, the classifier's choice (refused without a
    classifier); an id the head does not pose is refused."""
    from multipose.core.mesh import load_mesh
    from multipose.data.views import ViewSettings

    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)).eval()
    mesh = load_mesh(REPO_ROOT / "data" / "cad-files" / "tless_like_2fold.ply")
    objects = [PosedObject(5, mesh, ViewSettings(size=32)), PosedObject(10, mesh, ViewSettings(size=32))]
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, num_objects=2, classify=True)).eval()
    estimator = PoseEstimator(encoder, head, objects)
    assert estimator.object_index(torch.tensor([10, 0, 5])).tolist() == [1, -1, 0]
    image = np.full((120, 160, 3), 90, np.uint8)
    poses = estimator.predict(image, torch.tensor([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]]),
                              torch.tensor([[40.0, 30, 80, 70], [90, 40, 130, 90]]), torch.tensor([10, 0]))
    crops = estimator.crops(image, torch.tensor([[40.0, 30, 80, 70], [90, 40, 130, 90]], dtype=torch.float64))
    with torch.no_grad():
        chosen = int(head(head_input(encoder, head, crops)).object_logits[1].argmax())
    assert poses.object.tolist() == [1, chosen] and poses.obj_id.tolist() == [10, (5, 10)[chosen]]
    with pytest.raises(UserInputError, match="a box of object 3"):
        estimator.object_index(torch.tensor([3]))
    plain = PoseEstimator(encoder, PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, num_objects=2)), objects)
    with pytest.raises(UserInputError, match="has no classifier to choose its block"):
        plain.object_index(torch.tensor([0]))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression-finetuned", "population"])
def test_exported_models_give_pytorchs_outputs(tmp_path, kind):
    """TorchScript and ONNX (run by onnxruntime) files of the committed encoder and a head give PyTorch's
    confidences and rotations to 1e-5 on several crops, for batch sizes other than the traced one."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a dev dependency (requirements-dev.txt)")
    encoder = load_encoder_pt(ENCODER)
    if kind == "population":
        config = PoseHeadConfig(num_hypotheses=4, input_dim=encoder.config.latent_size, output="population",
                                anchor_views=12, anchor_inplane=4, width=32)
    else:
        config = PoseHeadConfig(num_hypotheses=3, input_dim=encoder.config.latent_size, width=32,
                                encoder_features=encoder.config.flat_features)
    torch.manual_seed(0)
    head = PoseHead(config).eval()
    size = encoder.config.image_size
    crops = torch.randint(0, 256, (5, size, size, 3), dtype=torch.uint8)
    with torch.no_grad():
        expected = ExportedPoseModel(encoder, head)(crops)
    scripted = torch.jit.load(str(export_model(encoder, head, "torchscript", tmp_path / "m.pt")))
    for a, b in zip(scripted(crops), expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    session = ort.InferenceSession(str(export_model(encoder, head, "onnx", tmp_path / "m.onnx")))
    assert [i.name for i in session.get_inputs()] == ["crops"]
    for n in (1, 5):
        got = session.run(None, {"crops": crops[:n].numpy()})
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b[:n].numpy(), atol=1e-5)
