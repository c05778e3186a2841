"""Benchmark the training data with PBR images: training images per second of the synthetic pipeline (view cache,
backgrounds, augmentation), of PBR crops (JPEG decode, crop, augmentation) and of their half-and-half mix, as
``train.py`` builds them from a config.

    python benchmarks/pbr_data.py --pbr output/pbr/train/train_pbr
    python benchmarks/pbr_data.py --pbr path/to/tless/train_pbr --set Dataset.PBR_OBJ_IDS=10

The config is the template (``--config``, with ``--set`` overrides; ``PBR_OBJ_IDS`` 1 unless set); batches of its
``BATCH_SIZE`` on the CPU: the synthetic renders ``--batches`` of them after a warm-up batch; the PBR crops and the
mix a whole epoch (``NUM_SAMPLES``) after a warm-up epoch, as training iterates them, with the crops cut by each of
``--workers`` background processes (``[Dataset] PBR_WORKERS``; 0: in this process). Nothing trains here: with
workers these rates are the decoding's, which training overlaps with its own work. Also prints the seconds to index
the PBR folder from scratch and from its cache.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.config import crop_size, load_config  # noqa: E402
from multipose.experiment.datasets import training_data_from_config  # noqa: E402
from multipose.experiment.encoders import with_encoder_crop_size  # noqa: E402
from multipose.experiment.pbr import pbr_index_from_config, pbr_mix_from_config  # noqa: E402


def _rate(source, batches: int) -> float:
    """Images per second of ``source.batch()`` over ``batches`` batches after one."""
    source.batch()
    start = time.perf_counter()
    n = sum(source.batch().image.shape[0] for _ in range(batches))
    return n / (time.perf_counter() - start)


def _epoch_rate(source) -> float:
    """Images per second of iterating an epoch of ``source`` after one warm-up epoch (the workers' start)."""
    for _ in source:
        pass
    start = time.perf_counter()
    n = sum(batch.image.shape[0] for batch in source)
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbr", required=True, help="a BOP PBR folder (scene folders)")
    parser.add_argument("--config", default=str(REPO / "experiment_template.cfg"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    overrides = [f"Dataset.PBR_PATH={args.pbr}", "Training.DEVICE=cpu", *args.overrides]
    if not any(o.startswith("Dataset.PBR_OBJ_IDS=") for o in overrides):
        overrides.append("Dataset.PBR_OBJ_IDS=1")
    cfg = with_encoder_crop_size(load_config(args.config, overrides))
    results: dict = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                     "batch_size": cfg.Training.BATCH_SIZE, "crop": crop_size(cfg)}
    with tempfile.TemporaryDirectory() as cache:
        fresh = cfg.with_value("Dataset", "CACHE_DIR", cache, "benchmark")
        start = time.perf_counter()
        index = pbr_index_from_config(fresh, progress=False)
        results["index_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        pbr_index_from_config(fresh, progress=False)
        results["index_cached_s"] = round(time.perf_counter() - start, 3)
    results["instances"] = index.counts.tolist()
    results["images"] = len(index.images)
    synthetic = training_data_from_config(cfg, "cpu", progress=False)
    results["synthetic_images_per_s"] = round(_rate(synthetic, args.batches), 1)
    for workers in args.workers:
        alone = cfg.with_value("Dataset", "PBR_WORKERS", workers, "benchmark")
        results[f"pbr_images_per_s_{workers}_workers"] = round(_epoch_rate(
            pbr_mix_from_config(alone, None, "cpu", progress=False)), 1)
        mix = alone.with_value("Dataset", "PBR_MIX", 0.5, "benchmark")
        results[f"mix_0.5_images_per_s_{workers}_workers"] = round(_epoch_rate(
            pbr_mix_from_config(mix, synthetic, "cpu", progress=False)), 1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
