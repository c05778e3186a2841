"""Compute a loss landscape: the multi-pose loss of poses all over the sphere against one reference.

    python plot_loss_landscape.py experiment_template.cfg
    python plot_loss_landscape.py my.cfg --set Sampling.NUM_SAMPLES=500 --set Sampling.INPLANE_STEPS=8

Uses the training config: [Sampling] NUM_SAMPLES points on the sphere (equal area), REFERENCE_NUM
(the reference pose's index), INPLANE_STEPS, BATCH_SIZE; the loss mesh, camera, loss parameters and
viewpoints of [Rendering] / [Loss_parameters]. Writes points.npy, losses.npy, rotations.npy and
landscape.json (and depths.npy with SAVE_IMAGES) to [Training] OUTPUT_PATH; then run
show_loss_landscape.py OUTPUT_PATH to draw it.

Several processes: torchrun --standalone --nproc_per_node=N plot_loss_landscape.py CFG (each computes
its share of the poses; rank 0 gathers them and writes the files, the same as with one process).
"""

from __future__ import annotations

import argparse
import sys

from multipose.app.cli import make_parser, run
from multipose.config import Config, resolve_device


def main(args: argparse.Namespace, cfg: Config) -> int:
    from multipose.infra.distributed import process_group  # heavy imports after the config is known to be valid
    from multipose.tools.landscape import run_landscape

    with process_group(resolve_device(cfg)) as (dist, device):  # torchrun: each rank computes its share of poses
        run_landscape(cfg, device, dist=dist)
    return 0


if __name__ == "__main__":
    sys.exit(run(main, make_parser(__doc__), preflight=True))
