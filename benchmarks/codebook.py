"""Benchmark the encoder presets and the AAE codebook baseline.

    python benchmarks/codebook.py                    # CPU or CUDA (whichever --device says)
    python benchmarks/codebook.py --json out.json

Reports, for ``[Encoder] ARCH`` aae and small: ms per image of an eval-mode forward pass without
gradients (batch ``--batch``), and of one autoencoder pretraining step (forward, bootstrapped L2,
backward, Adam; batch ``--train-batch``). For codebooks of M = 2,562 (sphere views only) and 92,232
(x 36 in-plane) random unit codes of size 128: their memory and ms per query image of a top-1
lookup with 1 and with ``--batch`` queries at a time. Times are medians over ``--repeats`` runs after
a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.core.geometry import random_rotations  # noqa: E402
from multipose.infra.timing import median_seconds  # noqa: E402
from multipose.models import PRESETS, Autoencoder, Codebook, Encoder, bootstrapped_l2_loss  # noqa: E402


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` runs after one warm-up run."""
    return median_seconds(fn, device, repeats) * 1000.0


def bench_encoders(device: torch.device, batch: int, train_batch: int, repeats: int) -> dict:
    out = {}
    for arch, config in PRESETS.items():
        size = config.image_size
        encoder = Encoder(config).to(device).eval()
        images = torch.rand(batch, 3, size, size, device=device)
        with torch.no_grad():
            forward = median_ms(partial(encoder, images), device, repeats) / batch
        ae = Autoencoder.from_config(config).to(device).train()
        optimizer = torch.optim.Adam(ae.parameters(), lr=2e-4)
        x = torch.rand(train_batch, 3, size, size, device=device)

        def step(ae=ae, x=x, optimizer=optimizer) -> None:
            loss = bootstrapped_l2_loss(ae(x).reconstruction, x, 4)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        train = median_ms(step, device, max(1, repeats // 2)) / train_batch
        params = sum(p.numel() for p in encoder.parameters())
        out[arch] = {"architecture": config.describe(), "encoder_parameters": params,
                     "forward_ms_per_image": round(forward, 3), "forward_batch": batch,
                     "pretrain_step_ms_per_image": round(train, 2), "pretrain_batch": train_batch}
        print(f"encoder {arch:5s} ({config.describe()}; {params / 1e6:.2f} M parameters): "
              f"forward {forward:.2f} ms/img (batch {batch}); "
              f"pretraining step {train:.1f} ms/img = {train * train_batch / 1000:.2f} s per batch of {train_batch}")
    return out


def bench_codebooks(device: torch.device, batch: int, repeats: int, code_size: int = 128) -> dict:
    out = {}
    g = torch.Generator().manual_seed(0)
    for m in (2562, 92232):
        codebook = Codebook(torch.randn(m, code_size, generator=g), random_rotations(m, generator=g)).to(device)
        row = {"entries": m, "code_size": code_size, "nbytes": codebook.nbytes}
        for b in (1, batch):
            queries = torch.randn(b, code_size, device=device)
            with torch.no_grad():
                ms = median_ms(partial(codebook, queries), device, repeats) / b
            row[f"lookup_ms_per_image_batch{b}"] = round(ms, 4)
        out[str(m)] = row
        print(f"codebook M = {m:6d} x D = {code_size}: {codebook.nbytes / 1e6:.1f} MB; top-1 lookup "
              f"{row['lookup_ms_per_image_batch1']:.3f} ms/img one at a time, "
              f"{row[f'lookup_ms_per_image_batch{batch}']:.3f} ms/img in batches of {batch}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="forward and lookup batch size")
    parser.add_argument("--train-batch", type=int, default=16, help="batch of the pretraining step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    results = {
        "device": str(device), "device_name": name, "threads": torch.get_num_threads(),
        "encoders": bench_encoders(device, args.batch, args.train_batch, args.repeats),
        "codebooks": bench_codebooks(device, args.batch, args.repeats),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
