"""Preview an experiment's object and loss camera: decimation error, renderer speed and a figure.

    python preview.py experiment_template.cfg
    python preview.py my_experiment.cfg --set Rendering.LOSS_MESH_FACES=1500 --views 8

Writes <OUTPUT_PATH>/preview/preview.png, preview.json and the resolved config.cfg.
"""

from __future__ import annotations

import argparse
import sys

from multipose.app.cli import make_parser, run
from multipose.config import Config, resolve_device


def main(args: argparse.Namespace, cfg: Config) -> int:
    from multipose.tools.preview import run_preview  # heavy imports after the config is known to be valid

    device = resolve_device(cfg)
    run_preview(cfg, device, num_views=args.views)
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__)
    parser.add_argument("--views", type=int, default=6, help="rotations shown in preview.png (default 6)")
    sys.exit(run(main, parser, preflight=True))
