"""The BOP reader on a tiny BOP-format dataset written by the test (rendered with our renderer, depth
PNGs in 0.1 mm units like T-LESS): instances, crops, the AAE translation, and an evaluation end to end."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from support.data import (
    DEPTH_SCALE,
    REPO_ROOT,
    REVOLUTION,
    add_border_cut_image,
    write_bop19_dataset,
    write_bop_dataset,
)
from torch.testing import assert_close

from multipose.config import load_config_text
from multipose.core.render import MeshRenderer
from multipose.data import bop_files
from multipose.data.views import ViewSettings
from multipose.evaluation import bop_folders, bop_images
from multipose.evaluation.metrics import re, vsd
from multipose.experiment.codebook import codebook_from_config
from multipose.experiment.evaluation import evaluate_models
from multipose.experiment.testsets import check_evaluation_inputs, load_test_set
from multipose.inference import box_pose
from multipose.infra.errors import ConfigError, DataError
from multipose.models import Encoder, EncoderConfig, PoseHead, PoseHeadConfig


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    return write_bop_dataset(tmp_path_factory.mktemp("bop"))


def test_reader_finds_the_instances_of_one_object(dataset):
    split = dataset["split"]
    assert bop_files.is_bop_split(split) and not bop_files.is_bop_split(split / "000001")
    instances = bop_folders.read_bop_split(split, obj_id=1, min_visib_fract=0.1).instances
    assert [(i.scene_id, i.im_id, i.gt_index) for i in instances] == [(1, 0, 0), (1, 3, 1)]
    first = instances[0]
    assert_close(torch.from_numpy(first.R).float(), dataset["R"][0])
    assert first.t.tolist() == pytest.approx(dataset["t"][0].tolist())
    assert first.depth_scale == DEPTH_SCALE and first.image_path.name == "000000.png"
    assert len(bop_folders.read_bop_split(split, obj_id=1, min_visib_fract=0.0).instances) == 3  # the almost hidden

    assert [i.im_id for i in bop_folders.read_bop_split(split, obj_id=2).instances] == [3]
    with pytest.raises(DataError, match="no instance of object 5"):
        bop_folders.read_bop_split(split, obj_id=5)
    with pytest.raises(DataError, match="not found"):
        bop_folders.read_bop_split(split / "nope", obj_id=1)
    assert bop_folders.find_models_info(split) == (split.parent / "models_cad" / "models_info.json").resolve()


def test_crops_test_depth_and_the_aae_translation(dataset):
    instances = bop_folders.read_bop_split(dataset["split"], obj_id=1).instances
    crops = bop_images.load_bop_crops(instances, crop_size=32, pad_factor=1.2, vsd_size=64, vsd_pad=2.0, progress=False)
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
    view_R = torch.linalg.inv(box_pose.correct_rotation(torch.eye(3).expand(2, 3, 3), t)) @ R  # what a crop shows
    t_est = box_pose.estimate_translation(view_R, crops.boxes, crops.K, K_train, 700.0, dataset["mesh"].vertices)
    assert ((t_est[:, 2] - t[:, 2]).abs() / t[:, 2]).max() < 0.01, t_est  # +15 mm (2 %) with BOP's xywh as is
    assert (t_est[:, :2] - t[:, :2]).abs().max() < 1.0, t_est
    R_est = box_pose.correct_rotation(view_R, t_est)
    assert re(R_est, R).max() < 1.0
    errors = vsd(renderer(R_est, t_est, crops.K_vsd, 64).depth, gt, crops.depth, crops.K_vsd)
    assert errors.max() < 0.3, errors


def test_correct_rotation_turns_the_optical_axis_towards_the_object():
    t = torch.tensor([[0.0, 0.0, 700.0], [100.0, 0.0, 700.0], [0.0, -80.0, 600.0], [60.0, 40.0, 700.0]])
    Rc = box_pose.correct_rotation(torch.eye(3).expand(4, 3, 3), t)
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
    assert len(lines) == 1 + 2  # BOP's rows: one estimate per instance (its most confident hypothesis)
    assert [tuple(r.split(",")[:3]) for r in lines[1:]] == [("1", "0", "1"), ("1", "3", "1")]
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
    from multipose.tools.pickle_export import crop_like_bop2pickle

    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 0] = np.arange(200)[None] % 256  # x in the red channel
    image[:, :, 1] = np.arange(100)[:, None]  # y in the green channel
    inside = crop_like_bop2pickle(image, np.array([50, 30, 40, 20]), size=48)  # side 48 about (70, 40)
    assert inside.shape == (48, 48, 3)
    np.testing.assert_array_equal(inside, image[16:64, 46:94])  # 48 x 48 window, no resampling at size 48
    corner = crop_like_bop2pickle(image, np.array([0, 0, 10, 10]), size=24)  # side 12 about (5, 5): [0, 11)
    np.testing.assert_array_equal(corner, cv2.resize(image[0:11, 0:11], (24, 24), interpolation=cv2.INTER_LINEAR))


def _copy(dataset, tmp_path):
    import shutil

    shutil.copytree(dataset["split"].parent, tmp_path / "tless")
    return tmp_path / "tless" / "test_primesense"


def test_silent_data_problems_are_errors_or_counted(dataset, tmp_path, caplog):
    """No depth_scale beside a depth image, a missing scene_gt_info.json: one error naming the file; gzipped
    ground truth is read; a fully occluded instance is counted and reported; a missing depth PNG affects
    only the instances of its image."""
    import gzip
    import json

    split = _copy(dataset, tmp_path)
    scene = split / "000001"
    gt_text = (scene / "scene_gt.json").read_text()
    with gzip.open(scene / "scene_gt.json.gz", "wt") as f:
        f.write(gt_text)
    (scene / "scene_gt.json").unlink()
    assert bop_files.is_bop_split(split)
    assert len(bop_folders.read_bop_split(split, obj_id=1).instances) == 2  # read from scene_gt.json.gz

    info = json.loads((scene / "scene_gt_info.json").read_text())
    info["3"][2]["visib_fract"] = 0.0  # the almost hidden object-1 instance: now fully occluded
    (scene / "scene_gt_info.json").write_text(json.dumps(info))
    with caplog.at_level("WARNING"):
        read = bop_folders.read_bop_split(split, obj_id=1)
    assert read.fully_occluded == 1 and read.less_visible == 0 and len(read.instances) == 2
    assert "1 instance(s) of object 1 are fully occluded" in caplog.text

    (scene / "depth" / "000000.png").unlink()
    read = bop_folders.read_bop_split(split, obj_id=1)
    crops = bop_images.load_bop_crops(read.instances, crop_size=32, pad_factor=1.2, vsd_size=32, progress=False)
    assert crops.depth_known.tolist() == [False, True] and crops.depth[0].eq(0).all() and crops.depth[1].gt(0).any()

    camera = json.loads((scene / "scene_camera.json").read_text())
    del camera["3"]["depth_scale"]
    (scene / "scene_camera.json").write_text(json.dumps(camera))
    with pytest.raises(DataError, match=r"scene_camera.json \[3\]: no depth_scale, which the depth image 000003.png"):
        bop_folders.read_bop_split(split, obj_id=1)
    (scene / "scene_gt_info.json").unlink()
    with pytest.raises(DataError, match=r"scene_gt_info.json: missing \(the ground-truth boxes"):
        bop_folders.read_bop_split(split, obj_id=1)


def test_a_border_cut_instance_is_scored_on_the_image_only_like_bop(dataset, tmp_path):
    """VSD of an instance whose VSD window reaches past the image border equals BOP's full-image VSD (both
    renders end at the border); counting the window outside the image as visible (the old behaviour)
    does not."""
    from support.data import CAM_K, H, W

    from multipose.core.geometry import rotation_about_axis
    from multipose.experiment.evaluation import batch_scorer

    split = _copy(dataset, tmp_path)
    add_border_cut_image(dataset, split)
    cfg = load_config_text(
        f"[Dataset]\nMODEL_PATH_DATA: {REVOLUTION}\nCROP_SIZE: 32\n[Rendering]\nNORMALIZE_VERTICES: false\n"
        f"[Evaluation]\nTEST_DATA_PATH: {split}\nOBJ_ID: 1\nVSD_MESH_FACES: 0\n"
        f"[Training]\nOUTPUT_PATH: {tmp_path / 'run'}\nDEVICE: cpu\n"
    )
    test_set = load_test_set(cfg, progress=False)
    cut = int(torch.nonzero(test_set.im_id == 5)[0, 0])
    test_set = test_set.take(torch.tensor([cut]))
    assert not test_set.in_image[0].all() and test_set.in_image[0].any()
    head = PoseHead(PoseHeadConfig(num_hypotheses=1, input_dim=16)).eval()
    scorer = batch_scorer(cfg, Encoder(EncoderConfig(image_size=32, channels=(8, 8), latent_size=16)), head, test_set)
    R_gt, t_gt = test_set.R[:1], test_set.t[:1]
    R_est = rotation_about_axis((0.0, 1.0, 0.0), 20.0).float() @ R_gt  # 20 degrees off, 6 mm further
    t_est = t_gt + torch.tensor([0.0, 0.0, 6.0])
    _, _, ours = scorer._vsd(torch.tensor([0]), R_est[:, None], t_est[:, None])

    K = torch.from_numpy(CAM_K).float()
    full = MeshRenderer(dataset["mesh"])(torch.cat([R_est, R_gt]), torch.cat([t_est, t_gt]), K.expand(2, 3, 3),
                                         (H, W)).depth
    scene_depth = torch.from_numpy(bop_images.read_depth(split / "000001" / "depth" / "000005.png", DEPTH_SCALE))
    bop_like = vsd(full[0], full[1], scene_depth, K, 15.0, 20.0)[0]
    uncut = replace(test_set, in_image=None)
    _, _, old = batch_scorer(cfg, scorer.encoder, head, uncut)._vsd(torch.tensor([0]), R_est[:, None], t_est[:, None])
    assert abs(float(ours[0, 0]) - float(bop_like)) < 0.015, (float(ours[0, 0]), float(bop_like))
    assert abs(float(old[0, 0]) - float(bop_like)) > 0.03, (float(old[0, 0]), float(bop_like))


@pytest.fixture(scope="module")
def dataset19(tmp_path_factory) -> dict:
    return write_bop19_dataset(tmp_path_factory.mktemp("bop19"))


def _bop19_cfg(dataset19, tmp_path, *extra):
    return load_config_text("", "test.cfg", [
        f"Dataset.MODEL_PATH_DATA={REVOLUTION}", f"Dataset.CACHE_DIR={tmp_path / 'cache'}", "Dataset.CROP_SIZE=32",
        f"Training.OUTPUT_PATH={tmp_path / 'run'}", f"Evaluation.TEST_DATA_PATH={dataset19['split']}",
        "Evaluation.OBJ_ID=1", "Evaluation.PROTOCOL=bop19", "Evaluation.VSD_MESH_FACES=0", *extra,
    ])


def test_bop19_targets_are_the_most_visible_instances_of_each_target_image(dataset19, tmp_path):
    test_set = load_test_set(_bop19_cfg(dataset19, tmp_path), progress=False)
    keys = list(zip(test_set.scene_id.tolist(), test_set.im_id.tolist(), strict=True))
    assert keys == [(1, 0), (1, 3), (1, 5), (1, 7), (1, 7), (2, 0), (2, 7), (2, 7)] and test_set.num_targets == 8
    assert test_set.inst_count.tolist() == [1, 1, 1, 2, 2, 1, 2, 2] and test_set.image_width.tolist() == [128] * 8
    # image 3: object 1 twice, the fully visible entry (index 1) is the target, not the almost hidden one
    assert test_set.R[1].allclose(torch.from_numpy(
        bop_folders.read_bop_split(dataset19["split"], obj_id=1, min_visib_fract=0.0).instances[1].R).float())


def test_bop19_subsets_keep_whole_images_and_count_their_uncroppable_targets(tmp_path):
    """NUM_SAMPLES below the split's targets keeps evenly spaced whole images; a target that cannot be cropped
    is still one to find in the recall's denominator (as BOP counts it)."""

    def inst(scene_id: int, im_id: int) -> bop_folders.BopInstance:
        eye = np.eye(3)
        return bop_folders.BopInstance(scene_id, im_id, 0, 1, eye, np.zeros(3), eye, 0.1, np.array([1, 1, 9, 9]),
                               np.array([1, 1, 9, 9]), 1.0, tmp_path / "rgb.png", None, 1)

    # image 0: 1 target; image 1: 2 targets, one uncroppable; image 2: 1 uncroppable target only
    split = bop_folders.BopSplit(tmp_path, 1, [inst(1, 0), inst(1, 1)], 0, 0, {(1, 0): 1, (1, 1): 2, (1, 2): 1})
    assert split.num_targets == 4
    instances, targets = split.bop19_images(100)
    assert [(i.scene_id, i.im_id) for i in instances] == [(1, 0), (1, 1)] and targets == 4
    instances, targets = split.bop19_images(3)  # 2 of 3 images, evenly spaced: 0 and 2
    assert [(i.scene_id, i.im_id) for i in instances] == [(1, 0)] and targets == 2
    nothing = bop_folders.BopSplit(tmp_path, 1, [inst(1, 1)], 0, 0, {(1, 0): 1, (1, 1): 1})
    with pytest.raises(DataError, match="hold no target that can be cropped; raise"):
        nothing.bop19_images(1)


def test_bop19_average_recalls_count_matches_against_every_target(dataset19, tmp_path):
    """Ground-truth poses reach AR 1; poses 60 mm off none; correct poses for 3 of the 8 targets (2 scenes)
    0.375 on every error; a second hypothesis of one instance never crowds out the other instance of its
    image."""
    from multipose.evaluation import bop19
    from multipose.evaluation.scoring import Estimates
    from multipose.experiment.testsets import object_model

    cfg = _bop19_cfg(dataset19, tmp_path)
    test_set = load_test_set(cfg, progress=False)
    model = object_model(cfg)
    assert model.diameter == 88.1 and model.sym_R.shape[0] == 315
    renderer = MeshRenderer(dataset19["mesh"])
    R, t = test_set.R[:, None], test_set.t[:, None]
    far = t + torch.tensor([60.0, 0.0, 0.0])
    ones = torch.ones(len(test_set), 1)

    def ar(R_est, t_est, score=ones):
        sub = bop19.submission(test_set, Estimates(score, R_est, t_est))
        return bop19.average_recalls(test_set, sub, renderer, model, 15.0)

    exact = ar(R, t)
    assert exact["num_targets"] == 8 and exact["num_estimates"] == 8
    assert exact["AR_VSD"] == exact["AR_MSSD"] == exact["AR_MSPD"] == exact["AR"] == 1.0
    assert ar(R, far)["AR"] == 0.0
    some = torch.tensor([True, False, False, True, False, False, True, False])[:, None, None]
    partial = ar(R, torch.where(some, t, far))
    assert partial["AR_VSD"] == partial["AR_MSSD"] == partial["AR_MSPD"] == pytest.approx(0.375)
    # two hypotheses per instance: instance 3's wrong one scores above instance 4's right one
    R2, t2 = torch.cat([R, R], dim=1), torch.cat([t, far], dim=1)
    scores = torch.tensor([[0.9, 0.1]] * 8)
    scores[3] = torch.tensor([0.9, 0.8])
    scores[4] = torch.tensor([0.3, 0.2])
    sub = bop19.submission(test_set, Estimates(scores, R2, t2))
    assert sub.instance.tolist() == list(range(8))
    assert sub.score.tolist() == pytest.approx([0.9] * 4 + [0.3] + [0.9] * 3)
    assert ar(R2, t2, scores)["AR"] == 1.0


def test_bop19_evaluation_writes_ar_and_a_results_file_by_bops_rules(dataset19, tmp_path):
    import csv
    import json

    cfg = _bop19_cfg(dataset19, tmp_path, "Evaluation.VSD_MESH_FACES=300", "Evaluation.SAVE_IMAGES=false")
    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)).eval()
    head = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16)).eval()
    result = evaluate_models(cfg, encoder, head, load_test_set(cfg, progress=False), tmp_path / "eval", progress=False)
    b = json.loads((tmp_path / "eval" / "metrics.json").read_text())["bop19"]
    assert set(b["head"]) == {"AR_VSD", "AR_MSSD", "AR_MSPD", "AR", "num_targets", "num_estimates"}
    assert 0.0 <= b["head"]["AR"] <= 1.0 and b["head"]["num_targets"] == 8 and b["eval_model"] == str(REVOLUTION)
    assert "BOP19 on 8 targets: head AR" in result.summary()
    with open(tmp_path / "eval" / "multipose_tless-test.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["scene_id"], r["im_id"]) for r in rows] == [("1", "0"), ("1", "3"), ("1", "5"), ("1", "7"), ("1", "7"),
                                                           ("2", "0"), ("2", "7"), ("2", "7")]
    # time is the whole image's: image 7 holds two instances (6 decimals in the file)
    assert rows[3]["time"] == rows[4]["time"]
    assert float(rows[3]["time"]) == pytest.approx(2 * float(rows[0]["time"]), abs=2e-6)


def test_result_names_follow_bops_parser_and_bop19_needs_its_targets(tmp_path, dataset19):
    assert bop_folders.result_name(tmp_path / "tless_bop19" / "test_primesense") == "tless-test"
    assert bop_folders.result_name(tmp_path / "ycbv" / "test") == "ycbv-test"
    elsewhere = tmp_path / "other" / "test_primesense"
    import shutil

    shutil.copytree(dataset19["split"], elsewhere)
    with pytest.raises(ConfigError, match="test_targets_bop19.json, which does not exist"):
        check_evaluation_inputs(_bop19_cfg({"split": elsewhere}, tmp_path))
    with pytest.raises(ConfigError, match="PROTOCOL.*bop19 evaluates a BOP split folder"):
        check_evaluation_inputs(load_config_text("[Evaluation]\nPROTOCOL: bop19\n"))


@pytest.mark.parametrize("finetuned", [False, True])
def test_detections_replace_the_ground_truth_boxes_for_the_bop19_results(dataset19, tmp_path, finetuned):
    """A BOP detections file whose boxes are the ground truth's (COCO convention) gives the BOP19 results of
    the ground-truth boxes; a low-scored false positive and other objects' detections change nothing; the
    detector's time is added to the image's. ``finetuned``: a head with a fine-tuned encoder layer (it takes
    feature maps, not codes) beside a codebook, on the detections too."""
    import csv
    import json

    split = dataset19["split"]
    detections = []
    for scene_id, im_id, visib in ((1, 0, 0), (1, 3, 1), (1, 5, 0), (1, 7, 0), (1, 7, 1), (2, 0, 0), (2, 7, 0),
                                   (2, 7, 1)):
        info = json.loads((split / f"{scene_id:06d}" / "scene_gt_info.json").read_text())[str(im_id)][visib]
        x, y, w, h = info["bbox_obj"]
        detections.append({"scene_id": scene_id, "image_id": im_id, "category_id": 1, "bbox": [x, y, w + 1, h + 1],
                           "score": 1.0, "time": 0.25})
    detections.append({"scene_id": 1, "image_id": 0, "category_id": 1, "bbox": [2, 2, 20, 20], "score": 0.01,
                       "time": 0.25})
    detections.append({"scene_id": 1, "image_id": 3, "category_id": 2, "bbox": [30, 30, 40, 40], "score": 0.9,
                       "time": 0.25})
    (tmp_path / "det.json").write_text(json.dumps(detections))
    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)).eval()
    features = encoder.config.flat_features if finetuned else 0
    head = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16, encoder_features=features)).eval()
    results = {}
    for name, extra in (("gt", ()), ("det", (f"Evaluation.DETECTIONS={tmp_path / 'det.json'}",))):
        cfg = _bop19_cfg(dataset19, tmp_path, "Evaluation.VSD_MESH_FACES=300", "Evaluation.SAVE_IMAGES=false",
                         "Evaluation.CODEBOOK_VIEWS=12", "Evaluation.CODEBOOK_INPLANE=2", *extra)
        codebook = codebook_from_config(cfg, encoder, progress=False) if finetuned else None
        result = evaluate_models(cfg, encoder, head, load_test_set(cfg, progress=False), tmp_path / name,
                                 codebook=codebook, progress=False)
        with open(tmp_path / name / "multipose_tless-test.csv") as f:
            results[name] = (result.metrics, list(csv.DictReader(f)))
    (gt, gt_rows), (det, det_rows) = results["gt"], results["det"]
    assert det["bop19"]["head"] == gt["bop19"]["head"]
    if finetuned:
        assert det["bop19"]["codebook"] == gt["bop19"]["codebook"]
    assert "det.json: 10 detections" not in det["settings"]["detections"]  # other objects' are not read
    assert "det.json: 9 detections" in det["settings"]["detections"]
    assert [r["im_id"] for r in det_rows] == [r["im_id"] for r in gt_rows]
    for key, atol in (("R", 1e-5), ("t", 1e-3)):  # the same crops, so the same poses (up to batching's rounding)
        np.testing.assert_allclose([[float(v) for v in r[key].split()] for r in det_rows],
                                   [[float(v) for v in r[key].split()] for r in gt_rows], atol=atol)
    assert float(det_rows[0]["time"]) > 0.25 > float(gt_rows[0]["time"])
    with pytest.raises(ConfigError, match="DETECTIONS.*PROTOCOL: bop19"):
        check_evaluation_inputs(_bop19_cfg(dataset19, tmp_path, f"Evaluation.DETECTIONS={tmp_path / 'det.json'}",
                                           "Evaluation.PROTOCOL=sixd17"))


def test_bop_toolkits_own_checks_accept_the_results_files(dataset19, tmp_path):
    """bop_toolkit's ``check_bop_results`` (bop19), ``check_consistent_timings`` and ``parse_result_filename``
    on the head's and the codebook's results files. bop_toolkit is not a dependency: the test runs where
    ``bop_toolkit_lib`` is importable (e.g. ``PYTHONPATH=path/to/bop_toolkit``) and is skipped elsewhere."""
    inout = pytest.importorskip("bop_toolkit_lib.inout", reason="bop_toolkit is not installed")

    cfg = _bop19_cfg(dataset19, tmp_path, "Evaluation.VSD_MESH_FACES=300", "Evaluation.SAVE_IMAGES=false",
                     "Evaluation.CODEBOOK_VIEWS=12", "Evaluation.CODEBOOK_INPLANE=2")
    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)).eval()
    head = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16)).eval()
    codebook = codebook_from_config(cfg, encoder, progress=False)
    evaluate_models(cfg, encoder, head, load_test_set(cfg, progress=False), tmp_path / "eval", codebook=codebook,
                    progress=False)
    for name, method in (("multipose_tless-test.csv", "multipose"), ("aaecodebook_tless-test.csv", "aaecodebook")):
        path = tmp_path / "eval" / name
        assert inout.parse_result_filename(name)[1:4] == (method, "tless", "test")
        passed, message = inout.check_bop_results(str(path), version="bop19")
        assert passed, message
        passed, message, _, timed = inout.check_consistent_timings(inout.load_bop_results(str(path)), "im_id")
        assert passed and timed, message


ENCODER_FILE = REPO_ROOT / "data" / "encoders" / "tless_like_2fold-small.pt"  # a file (auto pretrains one object's)


def _two_object_split(dataset19, tmp_path):
    """A copy of the BOP19 split whose models_info.json also describes object 2 (one target, in image 3)."""
    import json

    split = _copy(dataset19, tmp_path)
    info_path = split.parent / "models_cad" / "models_info.json"
    info = json.loads(info_path.read_text())
    info["2"] = {**info["1"], "diameter": 90.0}
    info_path.write_text(json.dumps(info))
    return split


def test_a_head_of_two_objects_writes_one_bop_results_file_with_both_objects_rows(dataset19, tmp_path):
    """[Evaluation] OBJ_ID [1, 2] on one BOP split: each object scored on its own block in obj<n>/, one
    ``multipose_<dataset>-<split>.csv`` with both objects' rows (one time per image: the sum of the objects'),
    every object's BOP19 recalls, their mean, and the dataset's (target-weighted, as bop_toolkit pools them)."""
    import csv
    import json

    from multipose.experiment.evaluation import evaluate_objects

    split = _two_object_split(dataset19, tmp_path)
    cfg = _bop19_cfg(dataset19, tmp_path, f"Evaluation.TEST_DATA_PATH={split}", "Evaluation.SAVE_IMAGES=false",
                     f"Dataset.MODEL_PATH_DATA={json.dumps([str(REVOLUTION)] * 2)}", "Evaluation.OBJ_ID=[1, 2]",
                     "Training.LOSS=vsd-union-multi-object", f"Dataset.ENCODER_WEIGHTS={ENCODER_FILE}")
    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)).eval()
    head = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16, num_objects=2)).eval()
    result = evaluate_objects(cfg, encoder, head, tmp_path / "eval", torch.device("cpu"), progress=False)
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["object_ids"] == [1, 2] and m["bop19"]["objects"]["obj0"]["head"]["num_targets"] == 8
    assert m["bop19"]["objects"]["obj1"]["head"]["num_targets"] == 1
    ars = [m["bop19"]["objects"][f"obj{n}"]["head"]["AR"] for n in range(2)]
    assert m["bop19"]["mean"]["head"]["AR"] == pytest.approx(sum(ars) / 2)
    assert m["bop19"]["dataset"]["head"]["AR"] == pytest.approx((8 * ars[0] + ars[1]) / 9)
    assert "BOP19 on 9 targets" in result.summary()
    with open(tmp_path / "eval" / "multipose_tless-test.csv") as f:
        rows = list(csv.DictReader(f))
    parts = [list(csv.DictReader(open(tmp_path / "eval" / f"obj{n}" / "multipose_tless-test.csv"))) for n in range(2)]
    assert len(rows) == len(parts[0]) + len(parts[1]) == 9 and {r["obj_id"] for r in rows} == {"1", "2"}
    image3 = [r for r in rows if (r["scene_id"], r["im_id"]) == ("1", "3")]
    assert [r["obj_id"] for r in image3] == ["1", "2"] and image3[0]["time"] == image3[1]["time"]
    alone = {r["obj_id"]: float(r["time"]) for p in parts for r in p if (r["scene_id"], r["im_id"]) == ("1", "3")}
    assert float(image3[0]["time"]) == pytest.approx(alone["1"] + alone["2"], abs=2e-6)
    assert [(int(r["scene_id"]), int(r["im_id"])) for r in rows] == sorted((int(r["scene_id"]), int(r["im_id"]))
                                                                            for r in rows)
    try:  # bop_toolkit's own check where it is importable (not a dependency), as in the test above
        from bop_toolkit_lib import inout
    except ImportError:
        return
    passed, message = inout.check_bop_results(str(tmp_path / "eval" / "multipose_tless-test.csv"), version="bop19")
    assert passed, message


def test_a_head_of_two_objects_names_what_is_wrong_with_its_test_data(dataset19, tmp_path):
    """OBJ_ID missing or of another length, an id absent from models_info.json, a dataset file, one
    MODEL_PATH_EVAL for two objects: one ConfigError each, before any work."""
    import json

    split = _two_object_split(dataset19, tmp_path)
    two = (f"Evaluation.TEST_DATA_PATH={split}", f"Dataset.MODEL_PATH_DATA={json.dumps([str(REVOLUTION)] * 2)}",
           "Training.LOSS=vsd-union-multi-object", f"Dataset.ENCODER_WEIGHTS={ENCODER_FILE}")
    cases = {
        "Evaluation.OBJ_ID=": r"needs \[Evaluation\] OBJ_ID, the BOP ids of its objects",
        "Evaluation.OBJ_ID=[1, 2, 3]": r"OBJ_ID names 3 object\(s\), but \[Dataset\] MODEL_PATH_DATA names 2",
        "Evaluation.OBJ_ID=[1, 7]": r"models_info.json has no object 7 \(it has \[1, 2\]\)",
        f"Evaluation.MODEL_PATH_EVAL={REVOLUTION}": r"MODEL_PATH_EVAL names one model, but the head has 2 objects",
    }
    for setting, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            check_evaluation_inputs(_bop19_cfg(dataset19, tmp_path, *two, "Evaluation.OBJ_ID=[1, 2]", setting))
    npz = tmp_path / "crops.npz"
    npz.write_bytes(b"")
    with pytest.raises(ConfigError, match="a dataset file holds one object's crops"):
        check_evaluation_inputs(_bop19_cfg(dataset19, tmp_path, *two, "Evaluation.OBJ_ID=[1, 2]",
                                           f"Evaluation.TEST_DATA_PATH={npz}"))


def test_a_targets_file_of_ones_own_replaces_bops(dataset19, tmp_path):
    """[Evaluation] TARGETS_FILE (e.g. targets of another split): its targets are evaluated;
    a missing file, or one given without PROTOCOL bop19, is one ConfigError naming TARGETS_FILE."""
    import json

    mine = tmp_path / "my_targets.json"
    mine.write_text(json.dumps([{"scene_id": 1, "im_id": 0, "obj_id": 1, "inst_count": 1},
                                {"scene_id": 2, "im_id": 7, "obj_id": 1, "inst_count": 2}]))
    cfg = _bop19_cfg(dataset19, tmp_path, f"Evaluation.TARGETS_FILE={mine}")
    test_set = load_test_set(cfg, progress=False)
    assert test_set.num_targets == 3 and sorted(set(test_set.im_id.tolist())) == [0, 7]
    with pytest.raises(ConfigError, match=r"TARGETS_FILE = .*nothing.json.*which does not exist"):
        check_evaluation_inputs(_bop19_cfg(dataset19, tmp_path, f"Evaluation.TARGETS_FILE={tmp_path / 'nothing.json'}"))
    with pytest.raises(ConfigError, match="a targets file is read by PROTOCOL: bop19"):
        check_evaluation_inputs(_bop19_cfg(dataset19, tmp_path, f"Evaluation.TARGETS_FILE={mine}",
                                           "Evaluation.PROTOCOL=sixd17"))


@pytest.mark.slow
def test_one_run_per_object_is_evaluated_as_one_dataset(dataset19, tmp_path, capsys):
    """[Evaluation] CHECKPOINTS {1: run, 2: run} and OBJ_ID all: each object evaluated with its run's config in
    obj<id>/, one results file with both objects' rows, the dataset's BOP19 recalls; evaluate.py does it; an id
    without a run, or CHECKPOINTS in a training config, is one ConfigError."""
    import csv
    import json

    from multipose.app.cli import run
    from multipose.config import load_config
    from multipose.experiment.dataset_evaluation import evaluate_dataset
    from multipose.experiment.pose_training import train_pose_head
    from multipose.models import save_encoder

    split = _two_object_split(dataset19, tmp_path)
    encoder_file = save_encoder(Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)),
                                tmp_path / "encoder.pt")  # of no model in particular
    runs = {}
    for obj_id in (1, 2):
        runs[obj_id] = tmp_path / f"run{obj_id}"
        cfg = load_config(REPO_ROOT / "experiment_template.cfg", [
            f"Dataset.MODEL_PATH_DATA={REVOLUTION}", f"Dataset.ENCODER_WEIGHTS={encoder_file}",
            f"Dataset.CACHE_DIR={tmp_path / 'cache'}", "Dataset.NOOF_TRAINING_IMGS=8", "Dataset.NOOF_VALID_IMGS=4",
            "Dataset.NOOF_BG_IMGS=4", "Rendering.IMAGE_SIZE=24", "Rendering.LOSS_MESH_FACES=300",
            "Rendering.VIEWS=2", f"Training.OUTPUT_PATH={runs[obj_id]}", "Training.HEAD=regression",
            "Training.NUM_ITER=1", "Training.NUM_SAMPLES=8", "Training.BATCH_SIZE=8", "Training.SAVE_IMAGES=false",
            "Training.DEVICE=cpu", "Evaluation.AFTER_TRAINING=false", f"Training.RANDOM_SEED={obj_id}"])
        train_pose_head(cfg, torch.device("cpu"), progress=False)
    mapping = json.dumps({str(k): str(v) for k, v in runs.items()})
    settings = [f"Evaluation.TEST_DATA_PATH={split}", "Evaluation.PROTOCOL=bop19", "Evaluation.OBJ_ID=all",
                f"Evaluation.CHECKPOINTS={mapping}", "Evaluation.SAVE_IMAGES=false", "Evaluation.VSD_MESH_FACES=300",
                f"Training.OUTPUT_PATH={tmp_path / 'dataset'}", "Training.DEVICE=cpu", "Evaluation.MODELS_INFO="]
    cfg = load_config(REPO_ROOT / "experiment_template.cfg", settings)
    result = evaluate_dataset(cfg, tmp_path / "eval", progress=False)
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["object_ids"] == [1, 2] and m["bop19"]["dataset"]["head"]["num_targets"] == 9
    assert (tmp_path / "eval" / "obj1" / "metrics.json").is_file() and (tmp_path / "eval" / "obj2").is_dir()
    with open(tmp_path / "eval" / "multipose_tless-test.csv") as f:
        assert sorted({r["obj_id"] for r in csv.DictReader(f)}) == ["1", "2"]
    assert "BOP19 on 9 targets" in result.summary()
    evaluate_script = importlib.util.spec_from_file_location("evaluate_script", REPO_ROOT / "evaluate.py")
    assert evaluate_script is not None and evaluate_script.loader is not None
    module = importlib.util.module_from_spec(evaluate_script)
    evaluate_script.loader.exec_module(module)
    argv = ["experiment_template.cfg", *(a for s in settings for a in ("--set", s)), "--out", str(tmp_path / "cli")]
    code = run(module.main, module.build_parser(), argv, preflight=True, several_objects=True)  # as its __main__
    assert code == 0 and (tmp_path / "cli" / "multipose_tless-test.csv").is_file(), capsys.readouterr().err
    with pytest.raises(ConfigError, match="has no run of object 5"):
        evaluate_dataset(load_config(REPO_ROOT / "experiment_template.cfg", [*settings, "Evaluation.OBJ_ID=[1, 5]"]))
    with pytest.raises(ConfigError, match="is read by evaluate.py alone"):
        check_evaluation_inputs(cfg)


def test_merged_results_count_a_detectors_time_once_and_the_dataset_weighs_objects_by_targets(tmp_path):
    """merge_bop_results: an image's time is the sum of the objects' times with the detector's (in every object's
    rows) counted once; rows by scene and image. combine_bop19: the mean of the objects' ARs, and the dataset's
    weighted by their targets (bop_toolkit pools the matches)."""
    import csv

    from multipose.evaluation.report import BOP_HEADER, combine_bop19, merge_bop_results

    rows = {1: [(2, 7, 0.9, 0.30), (1, 3, 0.8, 0.25)], 2: [(1, 3, 0.7, 0.35)]}  # object: (scene, image, score, time)
    paths = []
    for obj, entries in rows.items():
        path = tmp_path / f"obj{obj}.csv"
        lines = [",".join(BOP_HEADER)] + [f"{sc},{im},{obj},{score},1 0 0 0 1 0 0 0 1,0 0 700,{t}"
                                          for sc, im, score, t in entries]
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    merged = merge_bop_results(paths, tmp_path / "all.csv", shared={(1, 3): 0.2, (2, 7): 0.2})
    with open(merged) as f:
        out = list(csv.DictReader(f))
    assert [(r["scene_id"], r["im_id"], r["obj_id"]) for r in out] == [("1", "3", "1"), ("1", "3", "2"),
                                                                        ("2", "7", "1")]
    assert [float(r["time"]) for r in out] == pytest.approx([0.40, 0.40, 0.30])  # 0.25 + 0.35 - 0.2; alone 0.30
    one = {"head": {"AR": 0.5, "AR_VSD": 0.4, "AR_MSSD": 0.5, "AR_MSPD": 0.6, "num_targets": 30}}
    two = {"head": {"AR": 0.2, "AR_VSD": 0.1, "AR_MSSD": 0.2, "AR_MSPD": 0.3, "num_targets": 10}, "eval_model": "x"}
    both = combine_bop19([one, two], ["obj5", "obj9"])
    assert set(both["objects"]) == {"obj5", "obj9"} and both["mean"]["head"]["AR"] == pytest.approx(0.35)
    assert both["dataset"]["head"]["AR"] == pytest.approx((30 * 0.5 + 10 * 0.2) / 40)
    assert both["dataset"]["head"]["num_targets"] == 40
