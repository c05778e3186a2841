"""Data-parallel runs under ``torchrun`` (``torch.distributed``): the process group, each rank's share of a
global batch, batch norm over the global batch, and rank 0 as the only writer.

``python train.py CFG`` runs as before (world size 1, no process group). ``torchrun --standalone
--nproc_per_node=N train.py CFG`` (or the multi-node form) starts N processes that :func:`init_from_env`
joins: backend ``nccl`` with one GPU per ``LOCAL_RANK`` when ``[Training] DEVICE`` resolves to CUDA, ``gloo``
on the CPU; collectives time out after :data:`TIMEOUT_S`, so a rank that fails ends the job instead of
hanging it.

**World-size independence.** Every rank draws the same seeded global batch of ``BATCH_SIZE`` samples (the
data streams are the same on every rank) and trains on its contiguous share (:meth:`Dist.shard`); the loss
is scaled so that the gradients DDP averages are those of the global batch's mean, and the head's batch
norm layers use the statistics of the global batch (:func:`global_batch_norm`: ``SyncBatchNorm`` on CUDA,
:class:`GlobalBatchNorm1d` on the CPU, where ``SyncBatchNorm`` does not run). A 2-process run then ends with
the weights of a 1-process run up to float rounding, and a checkpoint of one world size resumes with another.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

__all__ = [
    "TIMEOUT_S",
    "Dist",
    "data_parallel",
    "GlobalBatchNorm1d",
    "GlobalBatchNorm2d",
    "global_batch_norm",
    "init_from_env",
    "process_group",
    "shutdown",
]

#: Seconds a collective waits for the other ranks before the job fails (a rank that hangs; a rank that exits
#: makes torchrun end the others at once). Long enough for the work one rank does while the others wait:
#: rank 0 writing checkpoints, figures and evaluation files, a rank with one render batch more than another.
TIMEOUT_S = 1800.0

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes files and shows progress."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (``torch.tensor_split``'s: the first ``n % world_size``
        ranks get one row more)."""
        size, extra = divmod(n, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (1 if self.rank < extra else 0))

    def batches(self, n: int, batch_size: int) -> list[slice]:
        """This rank's contiguous share (:meth:`shard`) of the batches of ``batch_size`` rows that cover ``n``
        rows, as row slices; all of them with one process. Concatenating every rank's share in rank order
        (:meth:`gather_list`) gives the batches in order."""
        starts = range(0, n, batch_size)
        return [slice(s, min(s + batch_size, n)) for s in starts[self.shard(len(starts))]]

    def gather_list(self, items: list[T]) -> list[T] | None:
        """Every rank's ``items`` concatenated in rank order, on rank 0 (the others get None). The items are
        pickled: move tensors to the CPU first."""
        if not self.enabled:
            return items
        parts: list[list[T] | None] = [None] * self.world_size if self.is_main else []
        dist.gather_object(items, parts if self.is_main else None, dst=0)
        return [item for part in parts if part for item in part] if self.is_main else None

    def all_gather_list(self, items: list[T]) -> list[T]:
        """Every rank's ``items`` concatenated in rank order, on every rank (pickled, as :meth:`gather_list`)."""
        if not self.enabled:
            return items
        parts: list[list[T] | None] = [None] * self.world_size
        dist.all_gather_object(parts, items)
        return [item for part in parts if part for item in part]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the ranks (a copy; unchanged with one process)."""
        value = value.clone()
        if self.enabled:
            dist.all_reduce(value)
        return value

    def gather_rows(self, rows: torch.Tensor, n: int) -> torch.Tensor:
        """The ``(n, ...)`` tensor whose :meth:`shard` rows each rank holds as ``rows`` (exact: the other
        ranks add zeros)."""
        if not self.enabled:
            return rows
        dtype = torch.uint8 if rows.dtype == torch.bool else rows.dtype  # no sum of bools in gloo
        full = torch.zeros((n, *rows.shape[1:]), dtype=dtype, device=rows.device)
        full[self.shard(n)] = rows.to(dtype)
        dist.all_reduce(full)
        return full.to(rows.dtype)


def init_from_env(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ...), or return ``Dist()`` and ``device`` unchanged for a plain run. On CUDA each rank
    uses the GPU ``cuda:LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=TIMEOUT_S))
    here = Dist(rank=rank, world_size=world, local_rank=local)
    if not here.is_main:  # other ranks: warnings and errors only, tagged
        root = logging.getLogger()
        root.setLevel(logging.WARNING)
        for handler in root.handlers:
            handler.setFormatter(logging.Formatter(f"[rank {rank}] %(levelname)s %(name)s: %(message)s"))
    logging.getLogger(__name__).info("process group: %d processes (%s)", world, dist.get_backend())
    return here, device


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[Dist, torch.device]]:
    """``with process_group(device) as (dist, device):`` the entry scripts' body, joined to ``torchrun``'s
    process group (:func:`init_from_env`). When the body ends normally every rank waits for the others, then
    leaves the group (:func:`shutdown`; a rank that tears its group down while another still works can hang
    both, pytorch/pytorch#75097). When it raises, the rank leaves without a collective: it exits, and torchrun
    ends the others."""
    here, device = init_from_env(device)
    yield here, device
    here.barrier()
    shutdown()


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


class _GlobalStatistics(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch, summed over the ranks with a
    differentiable all-reduce (the CPU's ``SyncBatchNorm``). The same parameters, buffers and state dict as
    the layer it replaces; in eval mode, or with one process, it is that layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]  # every dimension but the channels'
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.full_like(x.reshape(-1)[:1], float(x.numel() // x.shape[1]))
        # two passes, as the batch norm layers: the mean, then the squared deviations from it
        stats = differentiable_all_reduce(torch.cat([count, x.sum(dims)]))
        n = stats[0]
        mean = stats[1:] / n
        var = differentiable_all_reduce(((x - mean.reshape(shape)) ** 2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            assert self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape) if self.affine else y


class GlobalBatchNorm1d(_GlobalStatistics, nn.BatchNorm1d):
    """``BatchNorm1d`` over the global batch (:class:`_GlobalStatistics`)."""


class GlobalBatchNorm2d(_GlobalStatistics, nn.BatchNorm2d):
    """``BatchNorm2d`` over the global batch (:class:`_GlobalStatistics`)."""


def global_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with its batch norm layers computing the global batch's statistics: converted to
    ``SyncBatchNorm`` on CUDA, to :class:`GlobalBatchNorm1d` / :class:`GlobalBatchNorm2d` (in place, same
    weights) on the CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for layer in module.modules():
        if type(layer) is nn.BatchNorm1d:
            layer.__class__ = GlobalBatchNorm1d
        elif type(layer) is nn.BatchNorm2d:
            layer.__class__ = GlobalBatchNorm2d
    return module


def data_parallel(module: M, device: torch.device, here: Dist) -> tuple[M, nn.Module]:
    """``(model, trained)``: ``model`` is what is checkpointed, validated and saved, ``trained`` what the
    training step calls. With one process both are ``module``; distributed, ``model`` is ``module`` with its
    batch norm over the global batch (:func:`global_batch_norm`, the same parameters) and ``trained`` wraps it
    in ``DistributedDataParallel`` (on ``device``'s GPU with CUDA)."""
    if not here.enabled:
        return module, module
    from torch.nn.parallel import DistributedDataParallel  # lazy: only distributed runs need it

    model = cast(M, global_batch_norm(module, device))
    return model, DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
