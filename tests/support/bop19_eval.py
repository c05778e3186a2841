"""Run with ``python`` or under ``torchrun --nproc_per_node=2``: a seeded untrained encoder and head evaluated
with PROTOCOL bop19 on a BOP split (``argv[1]``), results to ``argv[2]``, caches in ``argv[3]``; rank 0 prints
``metrics.json``'s ``bop19`` part as one JSON line (used by tests/test_distributed.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multipose.config import load_config_text  # noqa: E402
from multipose.experiment.evaluation import evaluate_models
from multipose.experiment.testsets import load_test_set
from multipose.infra.distributed import process_group  # noqa: E402
from multipose.models import Encoder, EncoderConfig, PoseHead, PoseHeadConfig  # noqa: E402
from support.data import REVOLUTION  # noqa: E402


def main() -> None:
    split, out, cache = sys.argv[1:4]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8, 16, 16), latent_size=16)).eval()
    head = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16)).eval()
    cfg = load_config_text("", "test.cfg", [
        f"Dataset.MODEL_PATH_DATA={REVOLUTION}", f"Dataset.CACHE_DIR={cache}", "Dataset.CROP_SIZE=32",
        f"Evaluation.TEST_DATA_PATH={split}", "Evaluation.OBJ_ID=1", "Evaluation.PROTOCOL=bop19",
        "Evaluation.VSD_MESH_FACES=300", "Evaluation.SAVE_IMAGES=false", "Evaluation.BATCH_SIZE=3",
    ])
    with process_group(torch.device("cpu")) as (dist, device):
        result = evaluate_models(cfg, encoder, head, load_test_set(cfg, progress=False), out, device,
                                 progress=False, dist=dist)
    if dist.is_main:
        print(json.dumps(result.metrics["bop19"]["head"]))


if __name__ == "__main__":
    main()
