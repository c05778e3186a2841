"""Benchmark the synthetic-data pipeline: view rendering (views/s), training batches from the view
cache (images/s: composite + augment), and rendering into the crop versus rendering a 384x384 frame
and cropping it (the way the original AAE pipeline cut its crops).

    python benchmarks/data.py                           # T-LESS obj_10: data/tless/models_cad/obj_000010.ply
    python benchmarks/data.py --mesh data/cad-files/tless_like_2fold.ply --size 128

Settings are the AAE's: K = [1075.65, 0, 360; 0, 1073.9, 270; 0, 0, 1], RADIUS 700 mm, PAD_FACTOR
1.2, MAX_REL_OFFSET 0.2, 128x128 crops, uniform random rotations. The 384x384 frame is the base
camera's image around its principal point (the object spans ~150 px at 700 mm); its crop is cut and
resized with kornia's ``crop_and_resize`` (bilinear RGB, nearest mask). Times are medians of
``--repeats`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from kornia.geometry.transform import crop_and_resize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.config import ViewSampling  # noqa: E402
from multipose.core.mesh import load_mesh  # noqa: E402
from multipose.data.augment import Augmenter  # noqa: E402
from multipose.data.backgrounds import ImageBackgrounds, ProceduralBackgrounds, load_background_images  # noqa: E402
from multipose.data.cache import ViewCache  # noqa: E402
from multipose.data.datasets import TrainingData  # noqa: E402
from multipose.data.sampling import PoseSampler, sundermeyer_random  # noqa: E402
from multipose.data.views import ViewRenderer, Views, ViewSettings, random_light_directions  # noqa: E402
from multipose.infra.timing import median_seconds  # noqa: E402

#: T-LESS object 10 where data/README.md puts the BOP release's models (tless_models.zip).
DEFAULT_MESH = REPO / "data" / "tless" / "models_cad" / "obj_000010.ply"


@torch.no_grad()
def render_frame_then_crop(vr: ViewRenderer, R, offsets, light, frame: int):
    """The baseline: render a ``frame x frame`` image around the base principal point, then cut the
    same crop windows and resize them to the output size. Returns ``rgb (B,3,S,S), mask (B,S,S)``."""
    st = vr.settings
    S = st.size
    t, windows, _ = vr.windows(R, offsets)
    K = st.K_tensor(vr.device)
    shift = (frame - 1) / 2.0 - K[:2, 2]
    K_frame = K.clone()
    K_frame[:2, 2] += shift
    out = vr.renderer.render_rgb(R.to(vr.device), t, K_frame, frame, light_dir=light.to(vr.device), color=st.color)
    centre = windows[:, :2] + shift
    half = windows[:, 2:3] / 2 - windows[:, 2:3] / (2 * S)  # outermost output pixel centres
    x0, y0 = (centre - half).unbind(-1)
    x1, y1 = (centre + half).unbind(-1)
    boxes = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                         torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], dim=1)
    rgb = crop_and_resize(out.rgb, boxes, (S, S), mode="bilinear", align_corners=True)
    mask = crop_and_resize(out.mask[:, None], boxes, (S, S), mode="nearest", align_corners=True)[:, 0] > 0.5
    return rgb, mask


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    parser.add_argument("--size", type=int, default=128, help="crop size (config CROP_SIZE)")
    parser.add_argument("--views", type=int, default=32, help="views rendered for views/s")
    parser.add_argument("--ratio-views", type=int, default=8, help="views for the crop-vs-frame comparison")
    parser.add_argument("--frame", type=int, default=384, help="side of the baseline's rendered frame")
    parser.add_argument("--render-batch", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32, help="training batch size")
    parser.add_argument("--batches", type=int, default=10, help="training batches timed per repeat")
    parser.add_argument("--backgrounds", type=Path, default=None, help="a folder of images (default: procedural)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not args.mesh.is_file():
        parser.error(f"mesh not found: {args.mesh} (T-LESS models: data/README.md; or pass --mesh "
                     "data/cad-files/tless_like_2fold.ply)")
    device = torch.device(args.device)
    mesh = load_mesh(args.mesh)
    settings = ViewSettings(size=args.size)
    vr = ViewRenderer(mesh, settings, device)
    gen = torch.Generator().manual_seed(0)
    R = sundermeyer_random(args.views, gen)

    # 1. view rendering (what building the view cache costs)
    rendered: list[Views] = []

    def render_all():
        rendered[:] = [vr.render(R[i : i + args.render_batch], torch.Generator().manual_seed(i))
                       for i in range(0, args.views, args.render_batch)]

    render_s = median_seconds(render_all, device, max(1, args.repeats - 1))
    views_per_s = args.views / render_s

    # 2. render into the crop vs render a frame and crop, on the same views
    n = args.ratio_views
    offsets = (torch.rand(n, 2, generator=gen) * 2 - 1) * settings.max_rel_offset
    light = random_light_directions(n, gen)

    @torch.no_grad()
    def into_crop():
        t, _, K = vr.windows(R[:n], offsets)
        return vr.renderer.render_rgb(
            R[:n].to(device), t, K, args.size, light_dir=light.to(device), color=settings.color
        )

    crop_s = median_seconds(into_crop, device, args.repeats)
    frame_s = median_seconds(
        lambda: render_frame_then_crop(vr, R[:n], offsets, light, args.frame), device, args.repeats
    )
    a = into_crop().mask > 0
    _, b = render_frame_then_crop(vr, R[:n], offsets, light, args.frame)
    iou = float(((a & b).sum((1, 2)) / (a | b).sum((1, 2)).clamp_min(1)).mean())

    # 3. training batches from the (in-memory) view cache: composite + augment
    cache = ViewCache(Views.cat(rendered), key="benchmark")
    if args.backgrounds is not None:
        backgrounds = ImageBackgrounds(load_background_images(args.backgrounds, args.size, 2000), device)
        bg_name = f"{len(backgrounds)} images from {args.backgrounds}"
    else:
        backgrounds = ProceduralBackgrounds(args.size)
        bg_name = "procedural"
    rows = {}
    for label, augmenter in (("composite + augment", Augmenter()), ("composite only", None)):
        data = TrainingData(
            sampler=PoseSampler(ViewSampling("sundermeyer-random"), torch.Generator().manual_seed(1), pool=cache.R),
            backgrounds=backgrounds, augmenter=augmenter, batch_size=args.batch,
            num_samples=args.batch * args.batches, generator=torch.Generator().manual_seed(2),
            device=device, cache=cache,
        )
        seconds = median_seconds(lambda data=data: [b.image for b in data], device, args.repeats)
        rows[label] = args.batch * args.batches / seconds
    aug = Augmenter()
    images = torch.rand(args.batch, 3, args.size, args.size, generator=gen).to(device)
    aug_s = median_seconds(lambda: aug(images, torch.Generator().manual_seed(3)), device, args.repeats)
    bg_s = median_seconds(lambda: backgrounds.sample(args.batch, torch.Generator().manual_seed(4), device),
                        device, args.repeats)

    print(f"device {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"torch {torch.__version__}")
    print(f"mesh {args.mesh.name}: {mesh.num_faces} faces; crops {args.size}x{args.size}; backgrounds {bg_name}")
    print(f"view rendering (render into the crop, batch {args.render_batch}): {views_per_s:.2f} views/s "
          f"({1000 / views_per_s:.0f} ms/view)")
    print(f"render into the crop vs {args.frame}x{args.frame} frame + crop ({n} views): "
          f"{crop_s / n * 1000:.0f} vs {frame_s / n * 1000:.0f} ms/view -> {frame_s / crop_s:.1f}x faster "
          f"(silhouette IoU between the two {iou:.3f})")
    for label, rate in rows.items():
        print(f"training batches from the cache, {label} (batch {args.batch}): {rate:.0f} images/s")
    print(
        f"  of which: augmentation {aug_s / args.batch * 1000:.2f} ms/img, backgrounds "
        f"{bg_s / args.batch * 1000:.2f} ms/img"
    )
    if args.json:
        args.json.write_text(json.dumps({
            "device": str(device), "mesh": args.mesh.name, "faces": mesh.num_faces, "size": args.size,
            "views_per_s": views_per_s, "crop_ms_per_view": crop_s / n * 1000,
            "frame_ms_per_view": frame_s / n * 1000, "frame_over_crop": frame_s / crop_s,
            "crop_vs_frame_iou": iou, "images_per_s": rows, "backgrounds": bg_name,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
