"""The BOP reader on a tiny BOP-format dataset written by the test (rendered with our renderer, depth
PNGs in 0.1 mm units like T-LESS): instances, crops, the AAE translation, and an evaluation end to end."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from support.data import DEPTH_SCALE, REVOLUTION, write_bop_dataset
from torch.testing import assert_close

from multipose.config import load_config_text
from multipose.data.views import ViewSettings
from multipose.errors import ConfigError, DataError
from multipose.evaluation import bop, check_evaluation_inputs, evaluate_models, load_test_set
from multipose.evaluation.metrics import re, vsd
from multipose.models import Encoder, EncoderConfig, PoseHead, PoseHeadConfig
from multipose.render import MeshRenderer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    return write_bop_dataset(tmp_path_factory.mktemp("bop"))


def test_reader_finds_the_instances_of_one_object(dataset):
    split = dataset["split"]
    assert bop.is_bop_split(split) and not bop.is_bop_split(split / "000001")
    instances = bop.read_bop_split(split, obj_id=1, min_visib_fract=0.1)
    assert [(i.scene_id, i.im_id, i.gt_index) for i in instances] == [(1, 0, 0), (1, 3, 1)]
    first = instances[0]
    assert_close(torch.from_numpy(first.R).float(), dataset["R"][0])
    assert first.t.tolist() == pytest.approx(dataset["t"][0].tolist())
    assert first.depth_scale == DEPTH_SCALE and first.image_path.name == "000000.png"
    assert len(bop.read_bop_split(split, obj_id=1, min_visib_fract=0.0)) == 3  # the almost hidden one too
    assert [i.im_id for i in bop.read_bop_split(split, obj_id=2)] == [3]
    with pytest.raises(DataError, match="no instance of object 5"):
        bop.read_bop_split(split, obj_id=5)
    with pytest.raises(DataError, match="not found"):
        bop.read_bop_split(split / "nope", obj_id=1)
    assert bop.find_models_info(split) == (split.parent / "models_cad" / "models_info.json").resolve()


def test_crops_test_depth_and_the_aae_translation(dataset):
    instances = bop.read_bop_split(dataset["split"], obj_id=1)
    crops = bop.load_bop_crops(instances, crop_size=32, pad_factor=1.2, vsd_size=64, vsd_pad=2.0, progress=False)
    assert crops.images.shape == (2, 3, 32, 32) and crops.depth.shape == (2, 64, 64)
    assert crops.images.max() <= 1.0 and crops.images.mean() > 0.2
    # the scene depth cut into the VSD window lies on the ground-truth render with the window's K
    R, t = dataset["R"], dataset["t"]
    renderer = MeshRenderer(dataset["mesh"])
    gt = renderer(R, t, crops.K_vsd, 64).depth
    both = (gt > 0) & (crops.depth > 0)
    iou = both.sum() / ((gt > 0) | (crops.depth > 0)).sum()
    assert iou > 0.9, iou
    assert (gt - crops.depth).abs()[both].mean() < 1.0
    # ... and in the encoder's crop the object is centred and fills most of the window
    mask = renderer(R, t, crops.K_crop, 32).mask
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    assert abs(float(xs.float().mean()) - 15.5) < 4 and abs(float(ys.float().mean()) - 15.5) < 4
    # translation from the box and the true rotation, the AAE way: within a few percent
    K_train = ViewSettings().K_tensor()
    view_R = torch.linalg.inv(bop.correct_rotation(torch.eye(3).expand(2, 3, 3), t)) @ R  # what a crop shows
    t_est = bop.estimate_translation(view_R, crops.boxes, crops.K, K_train, 700.0, dataset["mesh"].vertices)
    assert ((t_est[:, 2] - t[:, 2]).abs() / t[:, 2]).max() < 0.03, t_est
    assert (t_est[:, :2] - t[:, :2]).abs().max() < 4.0, t_est
    R_est = bop.correct_rotation(view_R, t_est)
    assert re(R_est, R).max() < 1.0
    errors = vsd(renderer(R_est, t_est, crops.K_vsd, 64).depth, gt, crops.depth, crops.K_vsd)
    assert errors.max() < 0.3, errors


def test_correct_rotation_turns_the_optical_axis_towards_the_object():
    t = torch.tensor([[0.0, 0.0, 700.0], [100.0, 0.0, 700.0], [0.0, -80.0, 600.0], [60.0, 40.0, 700.0]])
    Rc = bop.correct_rotation(torch.eye(3).expand(4, 3, 3), t)
    assert_close(Rc[0], torch.eye(3))
    axis = Rc[:, :, 2]
    direction = t / t.norm(dim=1, keepdim=True)
    assert_close(axis[:3], direction[:3], atol=1e-6, rtol=0)  # exact in the xz and yz planes
    assert (axis[3] - direction[3]).norm() < 0.01  # first order elsewhere


def test_evaluation_runs_end_to_end_on_the_bop_folder(dataset, tmp_path):
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)).eval()
    head = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16)).eval()
    cfg = load_config_text("", "test.cfg", [
        f"Dataset.MODEL_PATH_DATA={REVOLUTION}", f"Dataset.CACHE_DIR={tmp_path / 'cache'}", "Dataset.CROP_SIZE=32",
        f"Training.OUTPUT_PATH={tmp_path / 'run'}", f"Evaluation.TEST_DATA_PATH={dataset['split']}",
        "Evaluation.OBJ_ID=1", "Evaluation.VSD_MESH_FACES=300", "Evaluation.NUM_EXAMPLES=2",
    ])
    test_set = load_test_set(cfg, progress=False)
    assert len(test_set) == 2 and test_set.name == "tless-test" and test_set.symmetries.shape[0] == 315
    result = evaluate_models(cfg, encoder, head, test_set, tmp_path / "eval", progress=False)
    m = result.metrics
    assert m["num_samples"] == 2 and set(m["recall"]) == {"head", "best-of-K", "random"}
    assert m["translation_error_mm"]["head"]["median"] < 100.0  # from the ground-truth box
    assert m["rotation_error_sym_deg"] is not None and m["settings"]["test_depth"] == "scene depth"
    assert m["settings"]["vsd_image_size"] == 64
    lines = (tmp_path / "eval" / "multipose_tless-test.csv").read_text().splitlines()
    assert lines[0] == "scene_id,im_id,obj_id,score,R,t,time"
    assert len(lines) == 1 + 2 * 3
    assert [tuple(r.split(",")[:3]) for r in lines[1::3]] == [("1", "0", "1"), ("1", "3", "1")]
    assert len(lines[1].split(",")[4].split()) == 9 and len(lines[1].split(",")[5].split()) == 3
    for name in ("metrics.json", "per-sample.csv", "recall.png", "rotation-error.png", "examples.png"):
        assert (tmp_path / "eval" / name).is_file(), name


def test_a_bop_folder_needs_an_object_id(dataset):
    cfg = load_config_text("", "test.cfg", [f"Evaluation.TEST_DATA_PATH={dataset['split']}"])
    with pytest.raises(ConfigError, match="OBJ_ID"):
        check_evaluation_inputs(cfg)
    missing = load_config_text("", "test.cfg", [f"Evaluation.TEST_DATA_PATH={dataset['split'] / 'nothing'}"])
    with pytest.raises(ConfigError, match="TEST_DATA_PATH.*no such file"):
        check_evaluation_inputs(missing)


def test_bop2pickle_crop_clips_at_the_border_and_stretches():
    """The original's crop: side int(1.2 * max(w, h)) about the box centre, clipped at the image border."""
    from multipose.evaluation.bop import crop_like_bop2pickle

    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 0] = np.arange(200)[None] % 256  # x in the red channel
    image[:, :, 1] = np.arange(100)[:, None]  # y in the green channel
    inside = crop_like_bop2pickle(image, np.array([50, 30, 40, 20]), size=48)  # side 48 about (70, 40)
    assert inside.shape == (48, 48, 3)
    np.testing.assert_array_equal(inside, image[16:64, 46:94])  # 48 x 48 window, no resampling at size 48
    corner = crop_like_bop2pickle(image, np.array([0, 0, 10, 10]), size=24)  # side 12 about (5, 5): [0, 11)
    np.testing.assert_array_equal(corner, cv2.resize(image[0:11, 0:11], (24, 24), interpolation=cv2.INTER_LINEAR))
