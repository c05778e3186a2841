"""Training on BOP's PBR images (``[Dataset] PBR_PATH``) on a tiny PBR-like split written by our renderer in BOP's
layout (two scenes, three objects, border-cut and mostly hidden instances): the index, the crops, the rotations,
bad folders, and a run mixing PBR crops with renders that resumes exactly."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support.data import PART, REPO_ROOT, REVOLUTION, tiny_mesh, write_mesh

from multipose.config import LossParameters, load_config
from multipose.core.geometry import off_axis_correction, random_rotations
from multipose.core.losses import AnchorTargets
from multipose.core.mesh import load_mesh, simplify_mesh
from multipose.core.render import LossView, MeshRenderer
from multipose.data.io import Batch
from multipose.data.pbr import MIN_VISIB_FRACT, PbrCrops, PbrMix, index_pbr
from multipose.experiment.pbr import check_pbr, pbr_index_from_config
from multipose.experiment.pose_training import train_pose_head
from multipose.experiment.run_folder import stored_config_changes
from multipose.inference.box_pose import box_extent
from multipose.inference.images import crop_boxes, read_rgb
from multipose.infra.checkpoint import CheckpointStore
from multipose.infra.distributed import Dist
from multipose.infra.errors import ConfigError, DataError
from multipose.tools.pbr_like import write_pbr_like
from multipose.training.population import PopulationTargets, anchor_table


@pytest.fixture(scope="module")
def pbr(tmp_path_factory) -> Path:
    """Four 320 x 240 images in two scenes of objects 1, 2 and 3 (seed 6: instances cut by the border, and some
    less than half visible)."""
    root = tmp_path_factory.mktemp("pbr")
    third = tiny_mesh()
    third = type(third)(third.vertices * torch.tensor([1.0, 0.6, 1.4]), third.faces, "stretched")
    models = [PART, REVOLUTION, write_mesh(third, root / "stretched.ply")]
    return write_pbr_like(models, [1, 2, 3], root / "train_pbr", 4, seed=6, size=(240, 320), scene_size=2)


def _annotated(folder: Path) -> list[dict]:
    """Every instance of the folder's JSON files, independently of the index."""
    found = []
    for scene in sorted(folder.iterdir()):
        gt = json.loads((scene / "scene_gt.json").read_text())
        info = json.loads((scene / "scene_gt_info.json").read_text())
        for key in gt:
            for entry, item in zip(gt[key], info[key], strict=True):
                found.append({**entry, **item, "image": scene / "rgb" / f"{int(key):06d}.jpg"})
    return found


def test_the_index_keeps_exactly_the_instances_at_least_half_visible(pbr):
    everything = _annotated(pbr)
    assert len({p.parent.parent for p in (i["image"] for i in everything)}) == 2
    assert any(i["visib_fract"] < MIN_VISIB_FRACT for i in everything)  # the split has hidden instances
    assert any(i["bbox_obj"][0] < 0 or i["bbox_obj"][0] + i["bbox_obj"][2] >= 320 for i in everything)  # and cut
    kept = [i for i in everything if i["visib_fract"] >= MIN_VISIB_FRACT and i["obj_id"] in (3, 1)]
    index = index_pbr(pbr, (3, 1), progress=False)  # object 3 first: index 0
    assert len(index) == len(kept) and index.obj_ids == (3, 1)
    assert sorted(index.visib.tolist()) == pytest.approx(sorted(i["visib_fract"] for i in kept))
    assert index.counts.tolist() == [sum(i["obj_id"] == 3 for i in kept), sum(i["obj_id"] == 1 for i in kept)]
    for row in range(len(index)):
        match = [i for i in kept if np.allclose(i["cam_t_m2c"], index.t[row].numpy(), atol=1e-3)]
        assert len(match) == 1 and match[0]["obj_id"] == (3, 1)[int(index.object[row])]
        assert str(match[0]["image"]) == index.images[int(index.image[row])]


def test_crops_match_their_boxes_and_rotations_are_in_the_crops_view(pbr):
    """aae crops without offset are the evaluation's crops of the whole box (BOP's box extent); original crops are
    nearest-neighbour resamplings; corrected rotations turn back into cam_R_m2c by the AAE's correction."""
    index = index_pbr(pbr, (1, 2, 3), progress=False)
    ours = PbrCrops(index, 32, 1.2, 0.0, style="aae", rotation="corrected", objects="uniform", augmenter=None,
                    generator=torch.Generator().manual_seed(0))
    theirs = PbrCrops(index, 32, 1.2, 0.0, style="original", rotation="scene", objects="instances", augmenter=None,
                      generator=torch.Generator().manual_seed(0))
    for row in range(len(index)):
        image = read_rgb(Path(index.images[int(index.image[row])]))
        expected = crop_boxes(image, box_extent(index.bbox_obj[row : row + 1].double()), 32, 1.2)[0]
        got = torch.from_numpy(ours.cutter.crop(row, torch.zeros(2))).permute(2, 0, 1).float() / 255.0
        torch.testing.assert_close(got, expected, atol=1 / 255, rtol=0)
        original = theirs.cutter.crop(row, torch.zeros(2)).reshape(-1, 3)
        colours = {tuple(c) for c in image.reshape(-1, 3)[:: 7].tolist()} | {tuple(c) for c in image.reshape(-1, 3)
                                                                              .tolist()}
        assert all(tuple(c) in colours for c in original[::37].tolist())  # nearest: the image's own pixels
    back = off_axis_correction(index.t) @ ours.R
    torch.testing.assert_close(back, index.R, atol=1e-5, rtol=0)
    assert torch.equal(theirs.R, index.R)
    batch = ours.batch(6)
    assert batch.image.shape == (6, 3, 32, 32) and batch.objects is not None and (batch.index == -1).all()


def test_background_workers_cut_the_same_crops_and_pbr_rows_take_their_targets_from_the_table(pbr):
    """Two epochs of PBR batches cut by a background worker equal those cut in this process (the workers do not
    draw); each PBR row names its instance; a population head's targets for PBR rows are looked up in the table of
    the instances' rotations, equal to the targets computed for the rows' rotations."""
    index = index_pbr(pbr, (1, 2, 3), progress=False)

    def epochs(workers: int) -> list[Batch]:
        crops = PbrCrops(index, 32, 1.2, 0.1, style="aae", rotation="corrected", objects="uniform", augmenter=None,
                         generator=torch.Generator().manual_seed(5), workers=workers)
        mix = PbrMix(None, crops, 1.0, batch_size=4, num_samples=10, several=True)
        return [*mix, *mix]

    here, ahead = epochs(0), epochs(1)
    assert [len(b.R) for b in here] == [4, 4, 2] * 2
    for a, b in zip(here, ahead, strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.pbr, b.pbr) and torch.equal(a.R, b.R)
        assert torch.equal(a.objects, index.object[a.pbr]) and (a.index == -1).all()
    assert not torch.equal(here[0].image, here[3].image)  # each epoch draws anew

    crops = PbrCrops(index, 32, 1.2, 0.1, style="aae", rotation="corrected", objects="uniform", augmenter=None,
                     generator=torch.Generator().manual_seed(5))
    view = LossView(MeshRenderer(simplify_mesh(load_mesh(PART), 300)), t=(0.0, 0.0, 140.0), fov_deg=60.0,
                    image_size=24)
    anchors = AnchorTargets(view, random_rotations(24, generator=torch.Generator().manual_seed(1)),
                            LossParameters(depth_max=30.0, pose_max=40.0, gamma=0.25), 0.03, 4)
    targets = PopulationTargets(anchors, None, anchor_table(anchors, crops.R, "PBR instances", False, Dist()))
    batch = here[0]
    rendered = Batch(image=batch.image[:1], R=random_rotations(1, generator=torch.Generator().manual_seed(2)),
                     index=torch.tensor([-1]), pbr=torch.tensor([-1]))
    mixed = Batch.cat([rendered, batch])  # a row from neither table is computed for its rotation
    index_got, prob_got = targets.for_batch(mixed, slice(0, 5))
    index_expected, prob_expected, _ = anchors(mixed.R)
    assert torch.equal(index_got, index_expected)
    torch.testing.assert_close(prob_got, prob_expected, atol=1e-5, rtol=0)


def test_bad_pbr_folders_name_the_file_or_id(pbr, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pbr, broken)
    (broken / "000002" / "scene_gt_info.json").unlink()
    with pytest.raises(DataError, match=r"000002/scene_gt_info.json: missing"):
        index_pbr(broken, (1,), progress=False)
    mixed = tmp_path / "mixed"
    shutil.copytree(pbr, mixed)
    shutil.copy(mixed / "000001" / "rgb" / "000000.jpg", mixed / "000001" / "rgb" / "000009.png")
    with pytest.raises(DataError, match=r"000001/rgb: a mix of \.jpg and \.png images"):
        index_pbr(mixed, (1,), progress=False)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(pbr, corrupt)
    for image in corrupt.glob("*/rgb/*.jpg"):
        image.write_bytes(b"not a JPEG")
    crops = PbrCrops(index_pbr(corrupt, (1,), progress=False), 32, 1.2, 0.0, style="aae", rotation="corrected",
                     objects="uniform", augmenter=None, generator=torch.Generator().manual_seed(0), workers=1)
    with pytest.raises(DataError, match=r"rgb/\d{6}\.jpg: cannot read this PBR image$") as raised:
        list(PbrMix(None, crops, 1.0, batch_size=2, num_samples=2, several=False))  # cut by a worker
    assert "Traceback" not in str(raised.value)
    assert not multiprocessing.active_children()  # the worker ended with the error, not at the interpreter's exit
    with pytest.raises(DataError, match="no instance of object 7 with visib_fract >= 0.5"):
        index_pbr(pbr, (1, 7), progress=False)
    with pytest.raises(ConfigError, match="PBR_PATH needs PBR_OBJ_IDS"):
        load_config(REPO_ROOT / "experiment_template.cfg", [f"Dataset.PBR_PATH={pbr}"])
    with pytest.raises(ConfigError, match="expected 1 BOP id"):
        load_config(REPO_ROOT / "experiment_template.cfg", [f"Dataset.PBR_PATH={pbr}", "Dataset.PBR_OBJ_IDS=[1, 2]"])


def _cfg(pbr: Path, out: Path, *extra: str):
    return load_config(REPO_ROOT / "experiment_template.cfg", [
        f"Dataset.ENCODER_WEIGHTS={REPO_ROOT / 'data' / 'encoders' / 'tless_like_2fold-small.pt'}",
        f"Dataset.CACHE_DIR={out.parent / 'cache'}", "Dataset.NOOF_TRAINING_IMGS=16", "Dataset.NOOF_VALID_IMGS=4",
        "Dataset.NOOF_BG_IMGS=8", "Rendering.IMAGE_SIZE=24", "Rendering.LOSS_MESH_FACES=300", "Rendering.VIEWS=3",
        f"Training.OUTPUT_PATH={out}", "Training.HEAD=regression", "Training.NUM_ITER=2", "Training.NUM_SAMPLES=16",
        "Training.BATCH_SIZE=8", "Training.SAVE_IMAGES=false", "Training.DEVICE=cpu", "Evaluation.AFTER_TRAINING=false",
        f"Dataset.PBR_PATH={pbr}", "Dataset.PBR_OBJ_IDS=1", *extra])


@pytest.mark.slow
def test_a_run_mixing_pbr_crops_with_renders_trains_and_resumes_exactly(pbr, tmp_path):
    """PBR_MIX 0.5 with a population head: half of every batch PBR crops of object 1 (their targets from the PBR
    table, the rest from the view cache's); epoch 1 with the crops cut in the training process, then resumed with a
    background worker (a resumable key), the weights are those of an uninterrupted run; the index is cached once;
    check_data counts the usable instances."""
    mix = ("Dataset.PBR_MIX=0.5", "Training.HEAD=population", "Training.HEAD_WIDTH=32", "Training.ANCHOR_VIEWS=12",
           "Training.ANCHOR_INPLANE=4", "Training.ANCHOR_CANDIDATES=8")
    whole = train_pose_head(_cfg(pbr, tmp_path / "a", *mix), torch.device("cpu"), progress=False)
    train_pose_head(_cfg(pbr, tmp_path / "b", *mix, "Dataset.PBR_WORKERS=0"), torch.device("cpu"), progress=False,
                    stop_after_epoch=1)
    cfg = _cfg(pbr, tmp_path / "b", *mix)
    assert stored_config_changes(cfg) == []  # the number of workers may change on resuming
    resumed = train_pose_head(cfg, torch.device("cpu"), progress=False)
    assert whole.last_epoch == resumed.last_epoch == 2
    a, _ = CheckpointStore(tmp_path / "a" / "models").load_latest()
    b, _ = CheckpointStore(tmp_path / "b" / "models").load_latest()
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert len(list((tmp_path / "cache" / "pbr").glob("index-*.npz"))) == 1
    usable = sum(i["obj_id"] == 1 and i["visib_fract"] >= MIN_VISIB_FRACT for i in _annotated(pbr))
    assert len(pbr_index_from_config(cfg, progress=False)) == usable
    (found,) = check_pbr(cfg)
    assert found.status == "ok" and f"object 1: {usable}" in found.message
    (quick,) = check_pbr(cfg, quick=True)  # the pre-flight check: from the cached index
    assert quick.status == "ok" and f"object 1: {usable}" in quick.message
    (fresh,) = check_pbr(cfg.with_value("Dataset", "CACHE_DIR", str(tmp_path / "empty"), "test"), quick=True)
    assert fresh.status == "note" and "indexed on first use" in fresh.message
    (absent,) = check_pbr(cfg.with_value("Dataset", "PBR_PATH", str(tmp_path / "nothing"), "test"), quick=True)
    assert absent.status == "missing"
    alone = train_pose_head(_cfg(pbr, tmp_path / "c", "Training.NUM_ITER=1"), torch.device("cpu"), progress=False)
    assert alone.last_epoch == 1  # PBR crops alone (the original's): no view cache needed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh runs it)")
def test_a_population_head_trains_on_pbr_crops_mixed_with_renders_on_cuda(pbr, tmp_path):
    """On CUDA: the PBR index's rotations, the crops (cut by a worker on the CPU) and the PBR table meet the
    view cache's on the device."""
    cfg = _cfg(pbr, tmp_path / "cuda", "Dataset.PBR_MIX=0.5", "Training.HEAD=population", "Training.HEAD_WIDTH=32",
               "Training.ANCHOR_VIEWS=12", "Training.ANCHOR_INPLANE=4", "Training.ANCHOR_CANDIDATES=8",
               "Training.NUM_ITER=1", "Training.DEVICE=cuda")
    assert train_pose_head(cfg, torch.device("cuda"), progress=False).last_epoch == 1
