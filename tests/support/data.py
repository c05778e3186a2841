"""Helpers shared by the tests: tiny meshes and configs, a reference rasteriser, a tiny BOP split."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from multipose.config import Config, load_config_text
from multipose.core.geometry import random_rotations
from multipose.core.mesh import Mesh, load_mesh, simplify_mesh
from multipose.core.render import MeshRenderer

REPO_ROOT = Path(__file__).resolve().parents[2]
PART = REPO_ROOT / "data" / "cad-files" / "tless_like_2fold.ply"
REVOLUTION = REPO_ROOT / "data" / "cad-files" / "tless_like_revolution.ply"

#: --set overrides that put the template's head training back on the schema's defaults (the paper's
#: regression head on the frozen encoder, constant learning rate, PyTorch's initialisation, gamma 1/K):
#: tests whose numbers were worked out for those.
SCHEMA_HEAD_DEFAULTS = ("Training.HEAD=regression", "Training.FINETUNE_ENCODER=false", "Training.LEARNING_RATE_LOW=",
                        "Training.LEARNING_RATE_HIGH=", "Training.WEIGHT_INIT_NAME=", "Loss_parameters.GAMMA=")


def tiny_mesh(faces: int = 300) -> Mesh:
    """The committed procedural part decimated to about ``faces`` faces (fast CPU renders)."""
    return simplify_mesh(load_mesh(PART), faces)


def write_mesh(mesh: Mesh, path: Path) -> Path:
    mesh.to_trimesh().export(path)
    return path


def small_config(tmp_path: Path, mesh_path: Path, *overrides: str) -> Config:
    """A config for tests: the given mesh, 32 px crops, few views, everything under ``tmp_path``."""
    base = [
        f"Dataset.MODEL_PATH_DATA={mesh_path}",
        f"Dataset.CACHE_DIR={tmp_path / 'cache'}",
        "Dataset.CROP_SIZE=32",
        "Dataset.NOOF_TRAINING_IMGS=12",
        "Dataset.NOOF_VALID_IMGS=6",
        f"Training.OUTPUT_PATH={tmp_path / 'run'}",
        "Training.BATCH_SIZE=4",
        "Training.NUM_SAMPLES=10",
        "Training.DEVICE=cpu",
    ]
    return load_config_text("", "test.cfg", [*base, *overrides])


def rasterize_reference(vertices: np.ndarray, faces: np.ndarray, R: np.ndarray, t: np.ndarray,
                        K: np.ndarray, size: int) -> np.ndarray:
    """Independent silhouette: project the vertices with ``cv2.projectPoints`` and mark every pixel
    whose centre (integer coordinates) lies in a projected triangle. Returns ``(size, size)`` bool."""
    rvec, _ = cv2.Rodrigues(np.asarray(R, dtype=np.float64))
    uv, _ = cv2.projectPoints(np.asarray(vertices, np.float64), rvec, np.asarray(t, np.float64),
                              np.asarray(K, np.float64), None)
    tri = uv[:, 0][faces]  # (F, 3, 2)
    ys, xs = np.mgrid[0:size, 0:size]
    centres = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float64)[None]  # (1, P, 2)
    out = np.zeros(size * size, dtype=bool)
    for start in range(0, len(tri), 256):
        a, b, c = (tri[start : start + 256, i][:, None] for i in range(3))

        def edge(p, q):
            return (q[..., 0] - p[..., 0]) * (centres[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
                centres[..., 0] - p[..., 0])

        e0, e1, e2 = edge(b, c), edge(c, a), edge(a, b)
        inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
        out |= inside.any(axis=0)
    return out.reshape(size, size)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


#: The tiny BOP dataset of :func:`write_bop_dataset`: image size, camera, depth units.
H, W = 96, 128
CAM_K = np.array([[500.0, 0.0, 63.5], [0.0, 500.0, 47.5], [0.0, 0.0, 1.0]])
DEPTH_SCALE = 0.1  # T-LESS: depth PNG values are 0.1 mm


def write_bop_dataset(root: Path) -> dict:
    """``root/tless/test_primesense/000001`` with images 0 and 3 of object 1 (plus, in image 3, an
    object 2 entry and an almost hidden object-1 entry that the reader must skip) and
    ``root/tless/models_cad/models_info.json`` (object 1: continuous symmetry about z)."""
    scene = root / "tless" / "test_primesense" / "000001"
    (scene / "rgb").mkdir(parents=True)
    (scene / "depth").mkdir()
    mesh = load_mesh(REVOLUTION)
    renderer = MeshRenderer(mesh)
    R = random_rotations(2, generator=torch.Generator().manual_seed(7))
    t = torch.tensor([[25.0, -12.0, 700.0], [-30.0, 18.0, 650.0]])
    K = torch.from_numpy(CAM_K).float()
    out = renderer.render_rgb(R, t, K, (H, W))
    gt, cam, info = {}, {}, {}
    for i, im_id in enumerate((0, 3)):
        rgb = (out.rgb[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        mask = out.mask[i].numpy() > 0
        rgb[~mask] = 90  # a grey scene behind the object
        cv2.imwrite(str(scene / "rgb" / f"{im_id:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        depth = np.where(mask, out.depth[i].numpy() / DEPTH_SCALE, 0.0).round().astype(np.uint16)
        cv2.imwrite(str(scene / "depth" / f"{im_id:06d}.png"), depth)
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
        entry = {"cam_R_m2c": R[i].reshape(-1).tolist(), "cam_t_m2c": t[i].tolist(), "obj_id": 1}
        item = {"bbox_obj": box, "bbox_visib": box, "visib_fract": 1.0}
        gt[str(im_id)], info[str(im_id)] = [entry], [item]
        cam[str(im_id)] = {"cam_K": CAM_K.reshape(-1).tolist(), "depth_scale": DEPTH_SCALE}
    gt["3"] = [{**gt["3"][0], "obj_id": 2}, gt["3"][0], gt["3"][0]]
    info["3"] = [info["3"][0], info["3"][0], {**info["3"][0], "visib_fract": 0.05}]
    for name, data in (("scene_gt", gt), ("scene_camera", cam), ("scene_gt_info", info)):
        (scene / f"{name}.json").write_text(json.dumps(data))
    models = root / "tless" / "models_cad"
    models.mkdir()
    (models / "models_info.json").write_text(
        json.dumps({"1": {"diameter": 88.1, "symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]}})
    )
    return {"split": scene.parent, "R": R, "t": t, "mesh": mesh}


def add_border_cut_image(dataset: dict, split: Path, im_id: int = 5) -> None:
    """Image ``im_id`` of scene 1: object 1 half outside the right border (its full box from a render on a
    wider canvas, as BOP's bbox_obj; visib_fract the fraction inside the image)."""
    scene = split / "000001"
    R = dataset["R"][:1]
    t = torch.tensor([[60.0, 5.0, 650.0]])
    K = torch.from_numpy(CAM_K).float()
    wide = MeshRenderer(dataset["mesh"]).render_rgb(R, t, K[None], (H, 2 * W))
    mask = wide.mask[0].numpy() > 0
    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
    assert xs.max() >= W > xs.min()  # cut by the image border
    rgb = (wide.rgb[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :W]
    rgb[~mask[:, :W]] = 90
    cv2.imwrite(str(scene / "rgb" / f"{im_id:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    depth = np.where(mask, wide.depth[0].numpy() / DEPTH_SCALE, 0.0).round().astype(np.uint16)[:, :W]
    cv2.imwrite(str(scene / "depth" / f"{im_id:06d}.png"), depth)
    inside = mask[:, :W]
    ys, xs = np.nonzero(inside)
    visib = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
    for name, entry in (
        ("scene_gt", [{"cam_R_m2c": R[0].reshape(-1).tolist(), "cam_t_m2c": t[0].tolist(), "obj_id": 1}]),
        ("scene_camera", {"cam_K": CAM_K.reshape(-1).tolist(), "depth_scale": DEPTH_SCALE}),
        ("scene_gt_info", [{"bbox_obj": box, "bbox_visib": visib, "visib_fract": float(inside.sum() / mask.sum())}]),
    ):
        data = json.loads((scene / f"{name}.json").read_text())
        data[str(im_id)] = entry
        (scene / f"{name}.json").write_text(json.dumps(data))


def add_second_instance(dataset: dict, split: Path, im_id: int = 7) -> None:
    """Image ``im_id`` of scene 1: two instances of object 1 side by side (the second one first in the
    ground truth, less visible than the first: BOP keeps the most visible ones first)."""
    scene = split / "000001"
    R = dataset["R"]
    t = torch.tensor([[-35.0, 0.0, 700.0], [35.0, 0.0, 700.0]])
    K = torch.from_numpy(CAM_K).float()
    out = MeshRenderer(dataset["mesh"]).render_rgb(R, t, K.expand(2, 3, 3), (H, W))
    masks = out.mask > 0
    nearer = torch.where(masks[0] & (~masks[1] | (out.depth[0] <= out.depth[1])), 0, 1)
    both = masks[0] | masks[1]
    rgb = torch.where(nearer[None].bool(), out.rgb[1], out.rgb[0])
    rgb = (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    rgb[~both.numpy()] = 90
    cv2.imwrite(str(scene / "rgb" / f"{im_id:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    depth = torch.where(nearer.bool(), out.depth[1], out.depth[0]) * both
    cv2.imwrite(str(scene / "depth" / f"{im_id:06d}.png"), (depth.numpy() / DEPTH_SCALE).round().astype(np.uint16))
    gts, infos = [], []
    for k in (1, 0):
        mask = masks[k].numpy()
        visible = mask & (nearer.numpy() == k)
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
        gts.append({"cam_R_m2c": R[k].reshape(-1).tolist(), "cam_t_m2c": t[k].tolist(), "obj_id": 1})
        infos.append({"bbox_obj": box, "bbox_visib": box, "visib_fract": float(visible.sum() / mask.sum()) - 0.01 * k})
    for name, entry in (("scene_gt", gts), ("scene_gt_info", infos),
                        ("scene_camera", {"cam_K": CAM_K.reshape(-1).tolist(), "depth_scale": DEPTH_SCALE})):
        data = json.loads((scene / f"{name}.json").read_text())
        data[str(im_id)] = entry
        (scene / f"{name}.json").write_text(json.dumps(data))


def write_bop19_dataset(root: Path) -> dict:
    """:func:`write_bop_dataset` plus a border-cut image (5), a two-instance image (7), a second scene (a copy
    of the first) and ``tless/test_targets_bop19.json`` with object 1's targets: in scene 1, 1 instance in
    images 0, 3 and 5, 2 in image 7 (image 3 also holds object 2 and an almost hidden object-1 instance that
    BOP19 does not target); in scene 2, 1 in image 0 and 2 in image 7."""
    import shutil

    dataset = write_bop_dataset(root)
    add_border_cut_image(dataset, dataset["split"])
    add_second_instance(dataset, dataset["split"])
    shutil.copytree(dataset["split"] / "000001", dataset["split"] / "000002")
    wanted = [(1, 0, 1), (1, 3, 1), (1, 5, 1), (1, 7, 2), (2, 0, 1), (2, 7, 2)]
    targets = [{"scene_id": s, "im_id": im, "obj_id": 1, "inst_count": n} for s, im, n in wanted]
    targets.append({"scene_id": 1, "im_id": 3, "obj_id": 2, "inst_count": 1})
    (dataset["split"].parent / "test_targets_bop19.json").write_text(json.dumps(targets))
    return dataset


def write_two_part_scene(root: Path) -> dict:
    """A BOP split ``root/parts/test/000001`` with one 640 x 480 image (0) of two instances of the template part,
    the second half outside the right border (``bbox_obj`` its whole box, from a render on a wider canvas, as BOP's),
    RGB on grey, depth, and ``camera.json`` beside the split. Returns the split, the camera ``K``, the poses ``R, t``
    and the instances' silhouettes ``masks (2, 480, 640)`` inside the image."""
    scene = root / "parts" / "test" / "000001"
    (scene / "rgb").mkdir(parents=True)
    (scene / "depth").mkdir()
    height, width = 480, 640
    K = torch.tensor([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
    R = random_rotations(2, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([[-90.0, 10.0, 650.0], [373.0, -20.0, 700.0]])
    wide = MeshRenderer(load_mesh(PART)).render_rgb(R, t, K, (height, 2 * width))
    masks = wide.mask > 0
    depth = torch.where(masks, wide.depth, torch.full_like(wide.depth, float("inf")))
    nearer = depth.argmin(dim=0)
    rgb = wide.rgb.permute(0, 2, 3, 1)[nearer, torch.arange(height)[:, None], torch.arange(2 * width)]
    seen = masks.any(dim=0)
    image = np.where(seen.numpy()[..., None], (rgb.numpy() * 255).round(), 90).astype(np.uint8)[:, :width]
    cv2.imwrite(str(scene / "rgb" / "000000.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    z = torch.where(seen, depth.amin(dim=0), torch.zeros(())).numpy()[:, :width]
    cv2.imwrite(str(scene / "depth" / "000000.png"), (z / DEPTH_SCALE).round().astype(np.uint16))
    gts, infos = [], []
    for k in range(2):
        ys, xs = np.nonzero(masks[k].numpy())
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
        visible = (masks[k] & (nearer == k)).numpy()[:, :width]
        gts.append({"cam_R_m2c": R[k].reshape(-1).tolist(), "cam_t_m2c": t[k].tolist(), "obj_id": 1})
        infos.append({"bbox_obj": box, "bbox_visib": box, "visib_fract": float(visible.sum() / masks[k].sum())})
    for name, data in (("scene_gt", {"0": gts}), ("scene_gt_info", {"0": infos}),
                       ("scene_camera", {"0": {"cam_K": K.reshape(-1).tolist(), "depth_scale": DEPTH_SCALE}})):
        (scene / f"{name}.json").write_text(json.dumps(data))
    (root / "camera.json").write_text(json.dumps({"K": K.tolist(), "width": width, "height": height}))
    return {"split": scene.parent, "K": K, "R": R, "t": t, "masks": masks[:, :, :width], "infos": infos,
            "image": scene / "rgb" / "000000.png"}
