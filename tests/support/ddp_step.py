"""Run under ``torchrun --nproc_per_node=2``: one training step of the pose head on shards of a batch of 7
(DDP, global batch norm, the loss scaled as in training) against the same step on the whole batch in one
process; prints ``max relative gradient difference <x>`` on rank 0 (used by tests/test_distributed.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from multipose.infra.distributed import global_batch_norm, process_group  # noqa: E402
from multipose.models import PoseHead, PoseHeadConfig  # noqa: E402


def per_sample(out) -> torch.Tensor:
    return (out.R.flatten(1) ** 2 * torch.arange(18.0)).sum(1) * out.confidence[:, 0] + out.confidence[:, 1]


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    whole = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16)).train()
    sharded = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16)).train()
    sharded.load_state_dict(whole.state_dict())
    x = torch.randn(7, 16, generator=torch.Generator().manual_seed(1))
    per_sample(whole(x)).mean().backward()
    with process_group(torch.device("cpu")) as (here, _):  # the entry scripts' way in and out
        model = DistributedDataParallel(global_batch_norm(sharded, torch.device("cpu")))
        (per_sample(model(x[here.shard(7)])).sum() * here.world_size / 7).backward()
        worst = 0.0
        for a, b in zip(sharded.parameters(), whole.parameters(), strict=True):
            scale = float(b.grad.abs().max())
            if scale > 1e-6:  # directions the loss does not see (biases before batch norm) hold rounding noise only
                worst = max(worst, float((a.grad - b.grad).abs().max()) / scale)
        stats = max(float((a - b).abs().max()) for a, b in zip(sharded.buffers(), whole.buffers(), strict=True))
        if here.is_main:
            print(f"max relative gradient difference {worst:.3e}; running statistics {stats:.3e}", flush=True)

if __name__ == "__main__":
    main()
