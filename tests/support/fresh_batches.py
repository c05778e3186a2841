"""Run under ``torchrun --nproc_per_node=2``: training batches rendered per batch (``NOOF_TRAINING_IMGS: 0``,
with reconstruction targets), each rank rendering its share of the rows, against the batches of the same
config in one process (built again here without the process group); rank 0 prints ``batches <n> identical
<bool>`` (used by tests/test_distributed.py)."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from multipose.config import load_config  # noqa: E402
from multipose.experiment.datasets import training_data_from_config
from multipose.infra.distributed import process_group  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_config(REPO_ROOT / "experiment_template.cfg", [
        "Dataset.NOOF_TRAINING_IMGS=0", "Dataset.CROP_SIZE=32", "Dataset.NOOF_BG_IMGS=4", "Training.BATCH_SIZE=5",
        "Training.NUM_SAMPLES=10", "Training.DEVICE=cpu", f"Dataset.CACHE_DIR={sys.argv[1]}",
    ])
    with process_group(torch.device("cpu")) as (dist, device):
        shared = training_data_from_config(cfg, device, progress=False, with_target=True, dist=dist)
        alone = training_data_from_config(cfg, device, progress=False, with_target=True)
        pairs = list(zip(shared, alone, strict=True))
    same = all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for a, b in pairs for f in fields(a)
               if getattr(a, f.name) is not None)
    if dist.is_main:
        print(f"batches {len(pairs)} identical {same}")


if __name__ == "__main__":
    main()
