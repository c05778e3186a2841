"""Benchmark evaluation's VSD renders: ms per depth map of the VSD window (``2 x CROP_SIZE`` = 256 px for the
AAE's 128 px crops) with the full CAD model and with copies decimated to ``[Evaluation] VSD_MESH_FACES``, and
the VSD error each decimation adds (what ``VSD_MESH_FACES`` trades for speed).

    python benchmarks/vsd.py --mesh path/to/tless/models_cad/obj_000010.ply
    python benchmarks/vsd.py --mesh data/cad-files/tless_like_2fold.ply --faces 500 1000

Poses: the object at 700 mm with the T-LESS Primesense camera (the template's K) in a window of twice its
projected size, random rotations; estimates are the ground truth turned by 5 to 20 degrees and moved by up
to 10 mm. The test depth is the full model's ground-truth render. Errors: VSD at tau 20 mm (sixd17) and the
mean over BOP19's taus (0.05..0.5 of the diameter); reported: mean and largest absolute difference to the
full model's error. Times are medians over ``--repeats`` runs after a warm-up, on the CPU unless CUDA is there.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.core.geometry import random_rotations, rotation_about_axis  # noqa: E402
from multipose.core.mesh import load_mesh, simplify_mesh  # noqa: E402
from multipose.core.render import MeshRenderer  # noqa: E402
from multipose.data.views import ViewSettings, crop_intrinsics, crop_windows, tight_boxes  # noqa: E402
from multipose.evaluation.bop19 import VSD_TAUS  # noqa: E402
from multipose.evaluation.metrics import vsd  # noqa: E402
from multipose.infra.timing import median_seconds  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=Path, default=REPO / "data" / "cad-files" / "tless_like_2fold.ply")
    parser.add_argument("--faces", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--size", type=int, default=256, help="VSD window pixels (2 x CROP_SIZE)")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    full = load_mesh(args.mesh)
    diameter = 2.0 * float(full.radius)
    gen = torch.Generator().manual_seed(0)
    R_gt = random_rotations(args.pairs, generator=gen)
    axes = torch.nn.functional.normalize(torch.randn(args.pairs, 3, generator=gen), dim=-1)
    angles = 5.0 + 15.0 * torch.rand(args.pairs, generator=gen)
    turn = torch.stack([rotation_about_axis(a.tolist(), float(d)).float() for a, d in zip(axes, angles, strict=True)])
    R_est = turn @ R_gt
    t_gt = torch.tensor([0.0, 0.0, 700.0]).expand(args.pairs, 3)
    t_est = t_gt + 10.0 * (torch.rand(args.pairs, 3, generator=gen) - 0.5) * 2
    K = ViewSettings().K_tensor()
    boxes = tight_boxes(full.vertices, R_gt, t_gt, K)
    K_vsd = crop_intrinsics(K, crop_windows(boxes, torch.zeros(args.pairs, 2), 2.0), args.size)
    results = {"mesh": str(args.mesh), "faces": full.num_faces, "diameter_mm": round(diameter, 1),
               "size": args.size, "pairs": args.pairs, "device": str(device), "cpu": platform.processor(),
               "threads": torch.get_num_threads(), "rows": []}
    reference = None
    for faces in [0, *args.faces]:
        mesh = full if faces == 0 else simplify_mesh(full, faces)
        renderer = MeshRenderer(mesh).to(device)

        def depths(R: torch.Tensor, t: torch.Tensor, renderer: MeshRenderer = renderer) -> torch.Tensor:
            return renderer(R.to(device), t.to(device), K_vsd[: len(R)].to(device), args.size).depth.cpu()

        seconds = median_seconds(lambda: depths(R_est[:16], t_est[:16]), device, args.repeats)
        gt, est = depths(R_gt, t_gt), depths(R_est, t_est)
        test = gt if reference is None else reference["gt"]
        errors = torch.stack([vsd(est, gt, test, K_vsd, 15.0, 20.0)[..., 0],
                              vsd(est, gt, test, K_vsd, 15.0, VSD_TAUS, normalized_by_diameter=True,
                                  diameter=diameter).mean(-1)])
        if reference is None:
            reference = {"gt": gt, "errors": errors}
        diff = (errors - reference["errors"]).abs()
        row = {"vsd_mesh_faces": faces, "mesh_faces": mesh.num_faces, "ms_per_depth_map": round(1000 * seconds / 16, 2)}
        for name, d in (("tau20", diff[0]), ("bop19", diff[1])):
            row[f"vsd_{name}_mean_abs_diff"] = round(float(d.mean()), 4)
            row[f"vsd_{name}_max_abs_diff"] = round(float(d.max()), 4)
        results["rows"].append(row)
        print(json.dumps(results["rows"][-1]), flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
