"""A BOP-format image set of CAD models rendered by our renderer, for trying PBR training (``[Dataset] PBR_PATH``)
and BOP evaluation without BOP's downloads: scenes of images with several instances at random poses, lit from
random directions, on cluttered backgrounds, with BOP's annotation files.

    python -m multipose.tools.pbr_like --model data/cad-files/tless_like_2fold.ply --obj-id 1 --out output/pbr/train

Per image (``--width`` x ``--height``, the T-LESS Primesense camera): 1 to ``--max-instances`` instances of the
models (ids ``--obj-id``, in the order of ``--model``) at 550-850 mm, anywhere in the image (some cut by its
border), nearer ones hiding farther ones; one directional light from a random direction in front of the objects
with random ambient and diffuse strengths; a background of random colour gradients, rectangles and discs. Written
as BOP lays out its PBR and test sets: ``<out>/<scene:06d>/rgb/<im:06d>.jpg`` (``--png`` for PNG), ``depth/``
(uint16, 0.1 mm), ``scene_gt.json``, ``scene_gt_info.json`` (``bbox_obj`` the whole silhouette, also where the
border cuts it; ``bbox_visib`` and ``visib_fract`` of its visible pixels) and ``scene_camera.json``, plus
``test_targets_bop19.json`` beside ``<out>`` (every instance with ``visib_fract >= 0.1``). Deterministic for a
``--seed``. This is not BlenderProc: no physics, textures or materials; the models' own grey surface.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from multipose.core.geometry import random_rotations
from multipose.core.mesh import Mesh, load_mesh
from multipose.core.render import MeshRenderer
from multipose.data.views import tight_boxes
from multipose.infra.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["main", "write_pbr_like"]

#: The T-LESS Primesense intrinsics (the template's [Dataset] K).
CAMERA = ((1075.65, 0.0, 360.0), (0.0, 1073.9, 270.0), (0.0, 0.0, 1.0))
#: Depth PNG units (mm), as T-LESS.
DEPTH_SCALE = 0.1
#: Images per scene folder.
SCENE_SIZE = 25


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Random colour gradient, rectangles and discs, blurred a little: ``(H, W, 3)`` uint8 RGB."""
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0.0, 1.0, width)[None, :, None] if rng.random() < 0.5 else np.linspace(0.0, 1.0, height)[
        :, None, None]
    image = np.ascontiguousarray(np.broadcast_to(a + (b - a) * ramp, (height, width, 3)).astype(np.uint8))
    for _ in range(int(rng.integers(4, 12))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + int(rng.integers(20, 200)), y + int(rng.integers(20, 200))), colour, -1)
        else:
            cv2.circle(image, (x, y), int(rng.integers(10, 80)), colour, -1)
    return cv2.GaussianBlur(image, (5, 5), 0)


def _instances(count: int, models: int, K: torch.Tensor, size: tuple[int, int], rng: np.random.Generator,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` instances: object indices, rotations and translations placing each anywhere in the image."""
    objects = torch.from_numpy(rng.integers(0, models, count)).long()
    R = random_rotations(count, generator=generator)
    z = rng.uniform(550.0, 850.0, count)
    u, v = rng.uniform(0, size[1], count), rng.uniform(0, size[0], count)
    x, y = (u - float(K[0, 2])) * z / float(K[0, 0]), (v - float(K[1, 2])) * z / float(K[1, 1])
    return objects, R, torch.tensor(np.stack([x, y, z], axis=1), dtype=torch.float32)


def _render_image(renderer: MeshRenderer, meshes: list[Mesh], K: torch.Tensor, size: tuple[int, int],
                  objects: torch.Tensor, R: torch.Tensor, t: torch.Tensor, rng: np.random.Generator) -> dict:
    """One image: each instance rendered in a window about it at the image's resolution (its whole silhouette,
    also past the border), pasted into the image and composed by depth."""
    H, W = size
    light = torch.tensor(rng.normal(size=3), dtype=torch.float32)
    light[2] = abs(float(light[2])) + 0.3  # from in front of the objects (camera frame: +z into the scene)
    ambient, diffuse = float(rng.uniform(0.15, 0.5)), float(rng.uniform(0.4, 0.9))
    n = len(objects)
    rgb = torch.zeros(n, H, W, 3)
    depth = torch.full((n, H, W), math.inf)
    whole, boxes = [], []
    for k in range(n):
        box = tight_boxes(meshes[int(objects[k])].vertices, R[k:k + 1], t[k:k + 1], K)[0]
        side = int(math.ceil(1.2 * float((box[2:] - box[:2]).max()))) + 4
        u0, v0 = (int(math.floor(float(c) - side / 2)) for c in (box[:2] + box[2:]) / 2)
        K_win = K.clone()
        K_win[0, 2] -= u0
        K_win[1, 2] -= v0
        out = renderer.render_rgb(R[k:k + 1], t[k:k + 1], K_win, side, light_dir=-light / light.norm(),
                                  ambient=ambient, diffuse=diffuse, objects=objects[k:k + 1])
        mask = out.mask[0] > 0
        assert out.rgb is not None  # render_rgb gives colour
        whole.append(int(mask.sum()))
        boxes.append(_box(mask.numpy(), (u0, v0)))
        ys, xs = slice(max(v0, 0), min(v0 + side, H)), slice(max(u0, 0), min(u0 + side, W))
        wy, wx = slice(ys.start - v0, ys.stop - v0), slice(xs.start - u0, xs.stop - u0)
        rgb[k, ys, xs] = out.rgb[0].permute(1, 2, 0)[wy, wx]
        depth[k, ys, xs] = torch.where(mask[wy, wx], out.depth[0][wy, wx], torch.tensor(math.inf))
    nearest = depth.argmin(dim=0)
    seen = torch.isfinite(depth).any(dim=0)
    image_rgb = rgb[nearest, torch.arange(H)[:, None], torch.arange(W)]
    visible = torch.stack([torch.isfinite(depth[k]) & (nearest == k) for k in range(n)])
    return {"rgb": image_rgb, "depth": depth.amin(dim=0), "seen": seen, "visible": visible, "whole": whole,
            "boxes": boxes}


def _box(mask: np.ndarray, corner: tuple[int, int] = (0, 0)) -> list[int]:
    """BOP's ``[x, y, w, h]`` of a mask's pixels (first and last pixel), shifted by ``corner``; zeros if empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0, 0, 0, 0]
    return [int(xs.min()) + corner[0], int(ys.min()) + corner[1], int(xs.max() - xs.min()), int(ys.max() - ys.min())]


def _annotations(frame: dict, objects: torch.Tensor, R: torch.Tensor, t: torch.Tensor, obj_ids: Sequence[int]
                 ) -> tuple[list[dict], list[dict]]:
    """BOP's ``scene_gt`` and ``scene_gt_info`` entries of one image."""
    gts, infos = [], []
    for k in range(len(objects)):
        visible = frame["visible"][k].numpy()
        gts.append({"cam_R_m2c": R[k].reshape(-1).tolist(), "cam_t_m2c": t[k].tolist(),
                    "obj_id": int(obj_ids[int(objects[k])])})
        infos.append({"bbox_obj": frame["boxes"][k], "bbox_visib": _box(visible) if visible.any() else [-1, -1, 0, 0],
                      "visib_fract": float(visible.sum() / max(frame["whole"][k], 1)),
                      "px_count_all": frame["whole"][k], "px_count_visib": int(visible.sum())})
    return gts, infos


def write_pbr_like(models: Sequence[str | Path], obj_ids: Sequence[int], out: str | Path, images: int, seed: int = 0,
                   size: tuple[int, int] = (480, 640), max_instances: int = 3, png: bool = False,
                   scene_size: int = SCENE_SIZE) -> Path:
    """Write the image set (module docstring) of ``models`` (ids ``obj_ids``) to ``out``, ``scene_size`` images per
    scene folder; returns ``out``."""
    out, H, W = Path(out), size[0], size[1]
    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    meshes = [load_mesh(m) for m in models]
    renderer = MeshRenderer(meshes)
    K = torch.tensor(CAMERA, dtype=torch.float32)
    scenes: dict[int, dict[str, dict]] = {}
    targets = []
    for i in range(images):
        scene, im = i // scene_size + 1, i % scene_size
        objects, R, t = _instances(int(rng.integers(1, max_instances + 1)), len(meshes), K, (H, W), rng, generator)
        frame = _render_image(renderer, meshes, K, (H, W), objects, R, t, rng)
        background = _background(H, W, rng)
        seen = frame["seen"].numpy()
        image = np.where(seen[..., None], (frame["rgb"].numpy() * 255).round(), background).astype(np.uint8)
        folder = out / f"{scene:06d}"
        ok, data = cv2.imencode(".png" if png else ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert ok  # an 8-bit RGB image always encodes
        atomic_write_bytes(folder / "rgb" / f"{im:06d}{'.png' if png else '.jpg'}", data.tobytes())
        depth = torch.where(torch.isfinite(frame["depth"]), frame["depth"], torch.zeros(())).numpy()
        atomic_write_bytes(folder / "depth" / f"{im:06d}.png",
                           cv2.imencode(".png", (depth / DEPTH_SCALE).round().astype(np.uint16))[1].tobytes())
        gts, infos = _annotations(frame, objects, R, t, obj_ids)
        entry = scenes.setdefault(scene, {"scene_gt": {}, "scene_gt_info": {}, "scene_camera": {}})
        entry["scene_gt"][str(im)], entry["scene_gt_info"][str(im)] = gts, infos
        entry["scene_camera"][str(im)] = {"cam_K": K.reshape(-1).tolist(), "depth_scale": DEPTH_SCALE}
        for obj in sorted({g["obj_id"] for g in gts}):
            count = sum(g["obj_id"] == obj and f["visib_fract"] >= 0.1 for g, f in zip(gts, infos, strict=True))
            if count:
                targets.append({"scene_id": scene, "im_id": im, "obj_id": obj, "inst_count": count})
    for scene, files in scenes.items():
        for name, written in files.items():
            atomic_write_text(out / f"{scene:06d}" / f"{name}.json", json.dumps(written))
    atomic_write_text(out.parent / "test_targets_bop19.json", json.dumps(targets))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multipose.tools.pbr_like --model PLY [--model PLY ...] --obj-id N [...] --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m multipose.tools.pbr_like", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="a CAD model (mm); repeat for several")
    parser.add_argument("--obj-id", action="append", type=int, required=True, help="its BOP id, in --model's order")
    parser.add_argument("--out", required=True, help="the folder of scene folders to write (e.g. .../train_pbr)")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--max-instances", type=int, default=3)
    parser.add_argument("--png", action="store_true", help="PNG images instead of BOP PBR's JPEG")
    args = parser.parse_args(argv)
    if len(args.model) != len(args.obj_id):
        parser.error("give one --obj-id per --model")
    write_pbr_like(args.model, args.obj_id, args.out, args.images, args.seed, (args.height, args.width),
                   args.max_instances, args.png)
    print(f"{args.images} images of objects {args.obj_id} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
