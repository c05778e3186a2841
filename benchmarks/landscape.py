"""Benchmark the loss-landscape computation: poses per second, ours against the original's way.

    python benchmarks/landscape.py                                  # template settings
    python benchmarks/landscape.py --set Dataset.MODEL_PATH_DATA=data/tless/models_cad/obj_000010.ply \
        --set Dataset.MODEL_PATH_LOSS=data/tless/models_cad/obj_000010.ply

Ours: the config's loss (decimated loss mesh, LOSS_MESH_FACES), [Sampling] BATCH_SIZE poses per loss
call, the reference depth rendered once. The original's way, measured in the same run on the first
--baseline-poses poses: one pose per loss call, the full mesh, the reference re-rendered every call,
PyTorch3D's depth path. Both use the same loss function, so the losses are compared too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.config import load_config, loss_parameters  # noqa: E402
from multipose.core.geometry import euler_views  # noqa: E402
from multipose.core.losses import MultiPoseLoss  # noqa: E402
from multipose.core.mesh import load_mesh  # noqa: E402
from multipose.experiment.factories import loss_from_config  # noqa: E402
from multipose.infra.timing import timed  # noqa: E402
from multipose.tools.landscape import compute_losses, landscape_rotations  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "experiment_template.cfg"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--baseline-poses", type=int, default=100)
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.Training.DEVICE != "cpu" else "cpu")

    ours = loss_from_config(cfg, device)
    _, _, _, R = landscape_rotations(cfg.Sampling.NUM_SAMPLES, cfg.Sampling.INPLANE_STEPS)
    R = R.reshape(-1, 3, 3)
    R_ref = R[cfg.Sampling.REFERENCE_NUM % len(R)]
    compute_losses(ours, R[:8], R_ref, 8, progress=False)  # warm-up
    (losses, _), ours_s = timed(lambda: compute_losses(ours, R, R_ref, cfg.Sampling.BATCH_SIZE, progress=False), device)

    full = load_mesh(cfg.Dataset.MODEL_PATH_LOSS, normalize=cfg.Rendering.NORMALIZE_VERTICES)
    r = cfg.Rendering
    view = ours.view.with_mesh(full, depth_gradient="pytorch3d")  # same camera, the full mesh
    original = MultiPoseLoss(view, loss_parameters(cfg), euler_views(r.LOSS_VIEWPOINTS)).to(device)
    n = min(args.baseline_poses, len(R))
    one = torch.ones(1, 1, device=device)

    @torch.no_grad()
    def one_pose_per_call() -> list[float]:
        return [
            original(R_ref[None].to(device), R[i : i + 1, None].to(device), one).per_sample.item() for i in range(n)
        ]

    baseline, original_s = timed(one_pose_per_call, device)
    diff = (torch.tensor(baseline) - losses[:n]).abs()

    print(f"config {args.config} {' '.join(args.overrides)}")
    print(f"device {device}, {torch.get_num_threads()} threads; {r.IMAGE_SIZE}x{r.IMAGE_SIZE} depth, "
          f"{len(ours.viewpoints)} viewpoint(s), T = {[round(x, 1) for x in ours.view.t.tolist()]}")
    print(
        f"ours:       {len(R)} poses, batch {cfg.Sampling.BATCH_SIZE}, loss mesh "
        f"{ours.view.renderer.faces.shape[0]} faces: "
        f"{len(R) / ours_s:.1f} poses/s ({ours_s:.1f} s)"
    )
    print(f"original's: {n} poses, one per call, full mesh {full.num_faces} faces, PyTorch3D path: "
          f"{n / original_s:.1f} poses/s ({original_s:.1f} s)")
    print(
        f"speed-up {(len(R) / ours_s) / (n / original_s):.1f}x; |loss difference| from the decimation over those "
        f"{n} poses: mean {diff.mean():.4f}, max {diff.max():.4f} (losses range {losses.min():.3f}..{losses.max():.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
