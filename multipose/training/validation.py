"""Validating the pose head: the loss terms of every validation sample, the figures' per-epoch examples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multipose.core.losses import MultiPoseLoss
from multipose.data.io import SampleSet
from multipose.infra.distributed import Dist
from multipose.infra.visualize import image_grid, save_figure
from multipose.models.encoder import Encoder
from multipose.models.head import PoseHead, head_input

#: Columns of ``validation-loss.csv``.
VALID_FIELDS = ("epoch", "loss", "depth", "diversity", "best_of_k_depth", "top_depth")

__all__ = ["VALID_FIELDS", "Validation", "evaluate_loss", "save_examples"]


@dataclass(frozen=True)
class Validation:
    """A validation pass: ``metrics`` (``loss``, ``depth``, ``diversity``: means over the samples;
    ``best_of_k_depth``: the mean of each sample's best hypothesis' depth term, the oracle's;
    ``top_depth``: the mean depth term of each sample's most confident hypothesis) and the per-sample
    losses ``(N,)``."""

    metrics: dict[str, float]
    per_sample: torch.Tensor


@torch.no_grad()
def evaluate_loss(
    encoder: Encoder, head: PoseHead, loss_fn: MultiPoseLoss, samples: SampleSet, batch_size: int,
    device: torch.device, dist: Dist | None = None,
) -> Validation:
    """Validation: the loss terms of the head (eval mode) on ``samples``, in batches of ``batch_size``; in a
    distributed run each rank renders its share of the samples (:meth:`~multipose.infra.distributed.Dist.shard`)
    and every rank gets all the numbers."""
    dist = dist or Dist()
    head.eval()
    mine = dist.shard(len(samples))
    names = VALID_FIELDS[1:]
    columns = []  # per sample: loss, depth term (mean over K), diversity, best and top hypothesis' depth term
    for batch in samples.rows(mine).batches(batch_size, device):
        out = head(head_input(encoder, head, batch.image))
        terms = loss_fn(batch.R, out.R, out.confidence)
        top = terms.depth.gather(1, out.confidence.argmax(dim=1, keepdim=True))[:, 0]
        columns.append(torch.stack([terms.per_sample, terms.depth.mean(dim=1), terms.diversity,
                                    terms.depth.min(dim=1).values, top], dim=1))
    local = torch.cat(columns) if columns else torch.zeros(0, len(names), device=device)
    full = dist.gather_rows(local, len(samples)).cpu()
    return Validation({name: float(full[:, k].mean()) for k, name in enumerate(names)}, full[:, 0])


@torch.no_grad()
def save_examples(path: Path, encoder: Encoder, head: PoseHead, loss_fn: MultiPoseLoss, samples: SampleSet,
                  indices: torch.Tensor, device: torch.device) -> None:
    """input | GT depth | each hypothesis' depth (its confidence in the title row) | error map of the
    most confident hypothesis, for the validation samples ``indices`` (evaluated again: eval mode, so
    exactly as in the validation pass)."""
    batch = next(samples.rows(indices.tolist()).batches(len(indices), device))
    head.eval()
    out = head(head_input(encoder, head, batch.image))
    terms = loss_fn(batch.R, out.R, out.confidence)
    rows, row_titles = [], []
    for i, idx in enumerate(indices.tolist()):
        gt = loss_fn.render_gt(batch.R[i : i + 1])[0, 0].cpu().numpy()
        hyp = terms.rendered[i, :, 0].cpu().numpy()  # (K, S, S)
        top = int(out.confidence[i].argmax())
        error = np.abs(gt - hyp[top]) * ((gt > 0) | (hyp[top] > 0)) + 1e-6 * ((gt > 0) | (hyp[top] > 0))
        image = batch.image[i].permute(1, 2, 0).cpu().numpy()
        rows.append([image, gt, *hyp, error])
        conf = ", ".join(f"{c:.2f}" for c in out.confidence[i].tolist())
        row_titles.append(f"#{idx} loss {terms.per_sample[i]:.3f}\nconf {conf}")
    K = len(rows[0]) - 3
    titles = ["input", "GT depth", *[f"hypothesis {k + 1}" for k in range(K)], "|error| top"]
    save_figure(
        image_grid(rows, titles, row_titles=row_titles, cmaps=[None, "viridis", *["viridis"] * K, "magma"]), path
    )
