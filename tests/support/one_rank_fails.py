"""Run under ``torchrun --nproc_per_node=2`` as an entry script would (``multipose.app.cli.run``): rank 1 reads a
damaged dataset file (``argv`` after the config: the good file, then the bad one) after the process group
formed, while rank 0 reads the good one and waits for it in a collective, inside a training loop's SIGTERM
guard (used by tests/test_distributed.py: the job must end with rank 1's error, not hang)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from multipose.app.cli import make_parser, run  # noqa: E402
from multipose.config import Config  # noqa: E402
from multipose.data.io import load_samples  # noqa: E402
from multipose.infra.distributed import process_group  # noqa: E402
from multipose.infra.runlock import StopRequest  # noqa: E402


def main(args: argparse.Namespace, cfg: Config) -> int:
    with process_group(torch.device("cpu")) as (dist, _):
        load_samples(args.files[dist.rank])
        with StopRequest():
            dist.barrier()
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__)
    parser.add_argument("files", nargs=2)
    sys.exit(run(main, parser, encoder_crop_size=False))
