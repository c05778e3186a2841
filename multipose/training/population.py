"""A population head's training targets: soft targets over its anchor rotations
(:class:`~multipose.core.losses.AnchorTargets`), computed once for the view cache's poses."""

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

__all__ = ["AnchorSettings", "PopulationTargets"]


@dataclass(frozen=True)
class PopulationTargets:
    """A population head's soft targets (:class:`~multipose.core.losses.AnchorTargets`) for its training batches:
    looked up in ``table`` (``index (N, M)``, ``prob (N, M)`` for the view cache's N poses, computed once
    per run) when the batches come from the view cache, rendered per batch otherwise."""

    anchors: AnchorTargets
    table: tuple[torch.Tensor, torch.Tensor] | None

    @classmethod
    def build(cls, head: PoseHead, loss_fn: MultiPoseLoss, data: TrainingData | ObjectMix | PbrMix,
              settings: AnchorSettings, progress: bool, dist: Dist) -> PopulationTargets | None:
        """None for a regression head; in a distributed run each rank computes its share of the table."""
        if head.config.output != "population":
            return None
        num_anchors = len(head.anchors)
        anchors = AnchorTargets(loss_fn.view, head.anchors, loss_fn.params, settings.temperature,
                                min(settings.candidates, num_anchors))
        if data.cache is None:
            return cls(anchors, None)
        start = time.perf_counter()
        poses = data.cache.views.R
        parts, nearest = [], []
        for rows in progress_bar(dist.batches(len(poses), 64), desc="anchor targets", unit="batch",
                                 disable=not progress, leave=False):
            index, prob, closest = anchors(poses[rows])
            parts.append((index.cpu(), prob.cpu()))
            nearest.append(closest.cpu())
        parts = dist.all_gather_list(parts)
        table = (torch.cat([p[0] for p in parts]).to(poses.device), torch.cat([p[1] for p in parts]).to(poses.device))
        logger.info("anchor targets of %d training poses over %d anchors in %.1f s (nearest anchor's depth term: "
                    "mean %.3f)", len(poses), num_anchors, time.perf_counter() - start,
                    float(torch.cat(nearest).mean()) if nearest else math.nan)
        return cls(anchors, table)

    def for_batch(self, batch: Batch, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """``index (n, M)``, ``prob (n, M)`` of the batch's ``rows`` (rows with ``index`` -1, not from the view
        cache, computed for their rotations)."""
        if self.table is None:
            index, prob, _ = self.anchors(batch.R[rows])
            return index, prob
        assert batch.index is not None  # batches drawn from the view cache carry their pool positions
        pool = batch.index[rows]
        index, prob = self.table[0][pool.clamp(min=0)], self.table[1][pool.clamp(min=0)]
        outside = torch.nonzero(pool < 0, as_tuple=True)[0]  # e.g. PBR crops: computed for their rotations
        if len(outside):
            index[outside], prob[outside], _ = self.anchors(batch.R[rows][outside])
        return index, prob


@dataclass(frozen=True)
class AnchorSettings:
    """How a population head's soft targets are made (:class:`~multipose.core.losses.AnchorTargets`): the
    softmax ``temperature`` over the anchors' depth terms and the ``candidates`` nearest anchors rendered."""

    temperature: float
    candidates: int
