"""Benchmark the loss renderer: ms per 64x64 depth map, forward and backward, full vs decimated mesh,
PyTorch3D's rasterizer and backward vs the torch rasterizer and depth path, and the depth error the
decimation introduces.

    python benchmarks/render.py                       # T-LESS obj_10: data/tless/models_cad/obj_000010.ply
    python benchmarks/render.py --mesh data/cad-files/tless_like_2fold.ply --faces 800

Poses: uniform random rotations, the object at T = auto (bounding sphere fills 60% of a 60-degree
view, the template's settings), batch 16. Times are medians over ``--repeats`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.core.geometry import distance_for_fill, random_rotations  # noqa: E402
from multipose.core.mesh import load_mesh, simplify_mesh  # noqa: E402
from multipose.core.render import LossView, MeshRenderer, RenderSettings
from multipose.tools.loss_timing import time_loss_view
from multipose.tools.mesh_difference import mesh_difference

#: T-LESS object 10 where data/README.md puts the BOP release's models (tless_models.zip).
DEFAULT_MESH = REPO / "data" / "tless" / "models_cad" / "obj_000010.ply"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    parser.add_argument("--faces", type=int, default=800, help="decimated face count (config LOSS_MESH_FACES)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--error-views", type=int, default=128, help="rotations for the decimation error")
    parser.add_argument("--error-faces", type=int, nargs="*", default=[300, 800, 1500, 3000],
                        help="face counts whose decimation error is reported (besides --faces)")
    parser.add_argument("--fov", type=float, default=60.0)
    parser.add_argument("--fill", type=float, default=0.6)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not args.mesh.is_file():
        parser.error(f"mesh not found: {args.mesh} (T-LESS models: data/README.md; or pass --mesh "
                     "data/cad-files/tless_like_2fold.ply)")
    device = torch.device(args.device)

    full = load_mesh(args.mesh)
    start = time.perf_counter()
    simple = simplify_mesh(full, args.faces)
    decimation_s = time.perf_counter() - start
    t = (0.0, 0.0, distance_for_fill(full.radius, args.fov, args.fill))
    R = random_rotations(args.batch, generator=torch.Generator().manual_seed(0)).to(device)

    def view(mesh, path, rasterizer="auto"):
        settings = RenderSettings(depth_gradient=path, rasterizer=rasterizer)
        return LossView(MeshRenderer(mesh, settings), t, args.fov, args.size).to(device)

    rows = []
    for label, mesh in (("full", full), ("decimated", simple)):
        for rasterizer, path in (("pytorch3d", "pytorch3d"), ("pytorch3d", "torch"), ("torch", "torch")):
            v = view(mesh, path, rasterizer)
            with torch.no_grad():
                coverage = float(v(R).mask.mean())
            timing = time_loss_view(v, R, repeats=args.repeats)
            rows.append(
                {
                    "mesh": label,
                    "faces": mesh.num_faces,
                    "rasterizer": rasterizer,
                    "depth_gradient": path,
                    "forward_no_grad_ms": timing.no_grad_ms,
                    "forward_ms": timing.forward_ms,
                    "backward_ms": timing.backward_ms,
                    "covered_pixels": coverage,
                }
            )
    R_err = random_rotations(args.error_views, generator=torch.Generator().manual_seed(1)).to(device)
    full_view = view(full, "torch")
    differences = {}
    for faces in sorted({args.faces, *args.error_faces}):
        mesh = simple if faces == args.faces else simplify_mesh(full, faces)
        differences[mesh.num_faces] = mesh_difference(full_view, view(mesh, "torch"), R_err)

    print(f"mesh {args.mesh.name}: {full.num_faces} faces -> {simple.num_faces} (decimation {decimation_s:.2f} s)")
    print(f"device {device}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}; batch {args.batch}, {args.size}x{args.size}, T = {t[2]:.1f} mm, FOV {args.fov}")
    print(f"covered pixels: {100 * rows[0]['covered_pixels']:.0f}% of each depth map")
    print("| mesh | faces | rasterizer | depth gradient | forward, no grad | forward, with graph | backward "
          "| forward + backward |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mesh']} | {r['faces']} | {r['rasterizer']} | {r['depth_gradient']} | "
            f"{r['forward_no_grad_ms']:.1f} | "
            f"{r['forward_ms']:.1f} | {r['backward_ms']:.1f} | {r['forward_ms'] + r['backward_ms']:.1f} |"
        )
    print("(ms per 64x64 depth map, median of --repeats batches)")
    print(f"\ndecimation error against the full mesh over {args.error_views} random views (pixels covered in both):")
    print("| faces | mean abs depth error mm | p95 mm | silhouette IoU |")
    print("|---|---|---|---|")
    for faces, d in differences.items():
        print(f"| {faces} | {d.mean_abs_depth_mm:.3f} | {d.p95_abs_depth_mm:.3f} | {d.silhouette_iou:.4f} |")
    if args.json:
        report = {
            "rows": rows,
            "difference": {k: v.__dict__ for k, v in differences.items()},
            "T": t,
            "device": str(device),
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
