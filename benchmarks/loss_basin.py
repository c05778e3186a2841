"""How far the multi-pose loss's gradient leads a hypothesis back to the ground truth: the basin that a
regression head trained with it depends on.

    python benchmarks/loss_basin.py --mesh data/cad-files/tless_like_2fold.ply path/to/tless/models_cad/obj_000010.ply

For each mesh (the loss camera of ``experiment_template.cfg``: 800 faces, 64 px, T auto), N random ground
truths are each turned by a fixed angle about a random axis; printed per angle: the depth term (mean, 10th
and 90th percentiles), the norm of its gradient with respect to the axis-angle, and the share of samples
whose gradient points back towards the ground truth (a positive component along the turn's axis: a step
down the gradient reduces the angle). Where that share falls to ~0.5, the gradient no longer knows where the
ground truth is: a hypothesis further away than that is moved towards the nearest local minimum instead.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytorch3d.transforms import axis_angle_to_matrix  # noqa: E402

from multipose.config import load_config  # noqa: E402
from multipose.core.geometry import random_rotations  # noqa: E402
from multipose.experiment.factories import loss_from_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=Path, nargs="+", default=[REPO / "data" / "cad-files" / "tless_like_2fold.ply"])
    parser.add_argument("--num", type=int, default=200, help="ground truths per angle (default 200)")
    parser.add_argument("--angles", type=float, nargs="+", default=[2, 5, 10, 20, 30, 45, 60, 90, 135, 180])
    args = parser.parse_args()
    for mesh in args.mesh:
        if not mesh.is_file():
            print(f"error: {mesh}: no such mesh file", file=sys.stderr)
            return 2
    cache = tempfile.mkdtemp(prefix="loss-basin-")
    print("| mesh | angle (deg) | depth term mean (p10-p90) | gradient norm | gradient towards the ground truth |")
    print("|---|---|---|---|---|")
    for mesh in args.mesh:
        overrides = [f"Dataset.MODEL_PATH_DATA={mesh}", f"Dataset.MODEL_PATH_LOSS={mesh}", f"Dataset.CACHE_DIR={cache}"]
        cfg = load_config(REPO / "experiment_template.cfg", overrides)
        loss = loss_from_config(cfg, torch.device("cpu"))
        R = random_rotations(args.num, generator=torch.Generator().manual_seed(1))
        axes = torch.randn(args.num, 3, generator=torch.Generator().manual_seed(2))
        axes = axes / axes.norm(dim=1, keepdim=True)
        for angle in args.angles:
            turn = (axes * math.radians(angle)).requires_grad_(True)
            terms = loss(R, (axis_angle_to_matrix(turn) @ R)[:, None], torch.ones(args.num, 1))
            (grad,) = torch.autograd.grad(terms.depth.sum(), turn)
            towards = ((grad * axes).sum(dim=1) > 0).double().mean()
            d = terms.depth[:, 0].detach()
            print(f"| {mesh.name} | {angle:g} | {d.mean():.3f} ({d.quantile(0.1):.3f}-{d.quantile(0.9):.3f}) | "
                  f"{grad.norm(dim=1).mean():.3f} | {towards:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
