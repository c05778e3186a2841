"""Benchmark one pose-head training step (encoder forward, head, multi-pose loss, backward, Adam):
samples per second, ours against a seed-faithful setting measured in the same run.

    python benchmarks/train_step.py                                   # template settings
    python benchmarks/train_step.py --set Dataset.MODEL_PATH_DATA=data/tless/models_cad/obj_000010.ply \
        --set Dataset.MODEL_PATH_LOSS=data/tless/models_cad/obj_000010.ply --set Rendering.T=[0,0,375]

Ours: the config's loss (decimated loss mesh, DEPTH_GRADIENT auto, one render call per batch).
Seed-faithful (the original's way): the full loss mesh, PyTorch3D's backward, and one loss call per
sample in a Python loop. Both start from the same head weights and batch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.config import load_config, loss_parameters, num_hypotheses  # noqa: E402
from multipose.core.geometry import euler_views, random_rotations  # noqa: E402
from multipose.core.losses import MultiPoseLoss  # noqa: E402
from multipose.core.mesh import load_mesh  # noqa: E402
from multipose.experiment.factories import loss_from_config  # noqa: E402
from multipose.models import Encoder, EncoderConfig, PoseHead, PoseHeadConfig  # noqa: E402


def step_time(head, encoder, loss_fn, images, R, per_sample: bool, repeats: int) -> float:
    """Median seconds of one optimisation step over the batch."""
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with torch.no_grad():
            code = encoder.encode(images)
        out = head(code)
        optimizer.zero_grad()
        if per_sample:
            loss = sum(
                loss_fn(R[j : j + 1], out.R[j : j + 1], out.confidence[j : j + 1]).loss for j in range(len(R))
            ) / len(R)
        else:
            loss = loss_fn(R, out.R, out.confidence).loss
        loss.backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "experiment_template.cfg"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--batch", type=int, default=None, help="default: [Training] BATCH_SIZE")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    device = torch.device("cpu")
    B = args.batch or cfg.Training.BATCH_SIZE
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(image_size=64, channels=(32, 64, 128, 128))).eval()  # the small preset
    head = PoseHead(PoseHeadConfig(num_hypotheses(cfg), cfg.Training.POSE_REPRESENTATION))
    images = torch.rand(B, 3, 64, 64)
    R = random_rotations(B, generator=torch.Generator().manual_seed(1))

    ours = loss_from_config(cfg, device)
    full = load_mesh(cfg.Dataset.MODEL_PATH_LOSS, normalize=cfg.Rendering.NORMALIZE_VERTICES)
    r = cfg.Rendering
    faithful_view = ours.view.with_mesh(full, depth_gradient="pytorch3d")  # same camera, the full mesh
    faithful = MultiPoseLoss(faithful_view, loss_parameters(cfg), euler_views(r.LOSS_VIEWPOINTS))

    state = {k: v.clone() for k, v in head.state_dict().items()}
    t_ours = step_time(head, encoder, ours, images, R, per_sample=False, repeats=args.repeats)
    head.load_state_dict(state)
    t_faithful = step_time(head, encoder, faithful, images, R, per_sample=True, repeats=args.repeats)
    K = num_hypotheses(cfg)
    print(f"config {args.config} {' '.join(args.overrides)}; cpu, {torch.get_num_threads()} threads; batch {B}, K {K}, "
          f"{r.IMAGE_SIZE}x{r.IMAGE_SIZE} loss depth, {len(ours.viewpoints)} viewpoint(s)")
    print(
        f"ours:          loss mesh {ours.view.renderer.faces.shape[0]} faces, "
        f"{ours.view.renderer.settings.resolved_gradient(device)} "
        f"gradient, batched: {B / t_ours:.1f} samples/s ({t_ours:.2f} s/step)"
    )
    print(f"seed-faithful: full mesh {full.num_faces} faces, pytorch3d gradient, per-sample loop: "
          f"{B / t_faithful:.1f} samples/s ({t_faithful:.2f} s/step)")
    print(f"speed-up {t_faithful / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
