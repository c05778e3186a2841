"""A population head's training targets: soft targets over its anchor rotations
(:class:`~multipose.core.losses.AnchorTargets`), computed once for the view cache's poses and the PBR instances."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch

from multipose.core.losses import AnchorTargets, MultiPoseLoss
from multipose.data.datasets import TrainingData
from multipose.data.io import Batch
from multipose.data.objects import ObjectMix
from multipose.data.pbr import PbrMix
from multipose.infra.distributed import Dist
from multipose.infra.progress import progress_bar
from multipose.models.head import PoseHead

logger = logging.getLogger(__name__)

__all__ = ["AnchorSettings", "PopulationTargets", "anchor_table"]


Table = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class PopulationTargets:
    """A population head's soft targets (:class:`~multipose.core.losses.AnchorTargets`) for its training batches:
    looked up in ``table`` (``index (N, M)``, ``prob (N, M)`` for the view cache's N poses) for samples drawn from
    the view cache, in ``pbr_table`` (the same for the PBR index's instances) for PBR crops, both computed once per
    run; computed per batch for any other sample."""

    anchors: AnchorTargets
    table: Table | None
    pbr_table: Table | None = None

    @classmethod
    def build(cls, head: PoseHead, loss_fn: MultiPoseLoss, data: TrainingData | ObjectMix | PbrMix,
              settings: AnchorSettings, progress: bool, dist: Dist) -> PopulationTargets | None:
        """None for a regression head; in a distributed run each rank computes its share of the tables."""
        if head.config.output != "population":
            return None
        num_anchors = len(head.anchors)
        anchors = AnchorTargets(loss_fn.view, head.anchors, loss_fn.params, settings.temperature,
                                min(settings.candidates, num_anchors))
        table = anchor_table(anchors, data.cache.views.R, "training poses", progress, dist) if data.cache else None
        pbr = (anchor_table(anchors, data.pbr.R.to(anchors.depth.device), "PBR instances", progress, dist)
               if isinstance(data, PbrMix) else None)  # (the index's rotations are on the CPU)
        return cls(anchors, table, pbr)

    def for_batch(self, batch: Batch, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """``index (n, M)``, ``prob (n, M)`` of the batch's ``rows``: from the tables where ``batch.index`` (view
        cache) or ``batch.pbr`` (PBR index) has the sample, else computed for its rotation."""
        R = batch.R[rows]
        index = torch.empty(len(R), self.anchors.candidates, dtype=torch.int64, device=R.device)
        prob = torch.empty(len(R), self.anchors.candidates, dtype=R.dtype, device=R.device)
        todo = torch.ones(len(R), dtype=torch.bool, device=R.device)
        for table, at in ((self.table, batch.index), (self.pbr_table, batch.pbr)):
            if table is None or at is None:
                continue
            found = at[rows] >= 0
            index[found], prob[found] = table[0][at[rows][found]], table[1][at[rows][found]]
            todo &= ~found
        if todo.any():
            index[todo], prob[todo], _ = self.anchors(R[todo])
        return index, prob


def anchor_table(anchors: AnchorTargets, poses: torch.Tensor, what: str, progress: bool, dist: Dist) -> Table:
    """The soft targets ``index (N, M)``, ``prob (N, M)`` of ``poses (N, 3, 3)``, in batches of 64 shared out
    over the ranks."""
    start = time.perf_counter()
    parts, nearest = [], []
    for rows in progress_bar(dist.batches(len(poses), 64), desc=f"anchor targets ({what})", unit="batch",
                             disable=not progress, leave=False):
        index, prob, closest = anchors(poses[rows])
        parts.append((index.cpu(), prob.cpu()))
        nearest.append(closest.cpu())
    parts = dist.all_gather_list(parts)
    table = (torch.cat([p[0] for p in parts]).to(poses.device), torch.cat([p[1] for p in parts]).to(poses.device))
    logger.info("anchor targets of %d %s over %d anchors in %.1f s (nearest anchor's depth term: mean %.3f)",
                len(poses), what, len(anchors.depth), time.perf_counter() - start,
                float(torch.cat(nearest).mean()) if nearest else math.nan)
    return table


@dataclass(frozen=True)
class AnchorSettings:
    """How a population head's soft targets are made (:class:`~multipose.core.losses.AnchorTargets`): the
    softmax ``temperature`` over the anchors' depth terms and the ``candidates`` nearest anchors rendered."""

    temperature: float
    candidates: int
