"""Validating the pose head: the loss terms of every validation sample, the figures' per-epoch examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multipose.core.losses import LossTerms, MultiPoseLoss, classification_loss
from multipose.data.io import SampleSet
from multipose.infra.distributed import Dist
from multipose.infra.visualize import image_grid, save_figure
from multipose.models.encoder import Encoder
from multipose.models.head import HeadOutput, PoseHead, head_input

#: Columns of ``validation-loss.csv``.
VALID_FIELDS = ("epoch", "loss", "depth", "diversity", "best_of_k_depth", "top_depth")

__all__ = ["VALID_FIELDS", "ClassifyTerm", "Validation", "evaluate_loss", "evaluate_objects", "sample_loss",
           "save_examples"]


@dataclass(frozen=True)
class Validation:
    """A validation pass: ``metrics`` (``loss``, ``depth``, ``diversity``: means over the samples;
    ``best_of_k_depth``: the mean of each sample's best hypothesis' depth term, the oracle's;
    ``top_depth``: the mean depth term of each sample's most confident hypothesis) and the per-sample
    losses ``(N,)``."""

    metrics: dict[str, float]
    per_sample: torch.Tensor


@dataclass(frozen=True)
class ClassifyTerm:
    """The classification term of ``vsd-union-multi-object``: ``weight`` x
    :func:`~multipose.core.losses.classification_loss` of the ``kind`` given (``"logits"`` or ``"original"``)."""

    weight: float
    kind: str = "logits"


def sample_loss(out: HeadOutput, R: torch.Tensor, loss_fn: MultiPoseLoss, objects: torch.Tensor | None,
                classify: ClassifyTerm | None) -> tuple[torch.Tensor, LossTerms, HeadOutput]:
    """A regression head's per-sample loss ``(B,)`` on ground truth ``R (B, 3, 3)``: the multi-pose loss of each
    sample's object block (``objects (B,)``, None: one object), plus the classification term when the head
    classifies and ``classify`` is given; also the loss terms and the picked output."""
    picked = out.select(objects) if objects is not None else out
    terms = loss_fn(R, picked.R, picked.confidence, objects=objects)
    loss = terms.per_sample
    if classify is not None and out.object_logits is not None and objects is not None:
        loss = loss + classify.weight * classification_loss(out.object_logits, objects, classify.kind)
    return loss, terms, picked


@torch.no_grad()
def evaluate_loss(
    encoder: Encoder, head: PoseHead, loss_fn: MultiPoseLoss, samples: SampleSet, batch_size: int,
    device: torch.device, dist: Dist | None = None, obj: int | None = None, classify: ClassifyTerm | None = None,
) -> Validation:
    """Validation: the loss terms of the head (eval mode) on ``samples``, in batches of ``batch_size``; in a
    distributed run each rank renders its share of the samples (:meth:`~multipose.infra.distributed.Dist.shard`)
    and every rank gets all the numbers. ``obj``: the samples' object, for a head of several objects (its block
    is scored, with the ``classify`` term when given)."""
    dist = dist or Dist()
    head.eval()
    mine = dist.shard(len(samples))
    names = VALID_FIELDS[1:]
    columns = []  # per sample: loss, depth term (mean over K), diversity, best and top hypothesis' depth term
    for batch in samples.rows(mine).batches(batch_size, device):
        out = head(head_input(encoder, head, batch.image))
        ids = torch.full((len(batch.R),), obj, dtype=torch.int64, device=device) if obj is not None else None
        loss, terms, picked = sample_loss(out, batch.R, loss_fn, ids, classify)
        top = terms.depth.gather(1, picked.confidence.argmax(dim=1, keepdim=True))[:, 0]
        columns.append(torch.stack([loss, terms.depth.mean(dim=1), terms.diversity,
                                    terms.depth.min(dim=1).values, top], dim=1))
    local = torch.cat(columns) if columns else torch.zeros(0, len(names), device=device)
    full = dist.gather_rows(local, len(samples)).cpu()
    return Validation({name: float(full[:, k].mean()) for k, name in enumerate(names)}, full[:, 0])


def evaluate_objects(
    encoder: Encoder, head: PoseHead, loss_fn: MultiPoseLoss, sets: Sequence[SampleSet], batch_size: int,
    device: torch.device, dist: Dist | None = None, classify: ClassifyTerm | None = None,
) -> Validation:
    """Validation of a head of several objects on one set per object (list order = object index): every metric
    the mean of the objects' means (as the original reported its validation loss), plus ``loss_obj<n>`` per
    object; ``per_sample``: object 0's."""
    each = [evaluate_loss(encoder, head, loss_fn, s, batch_size, device, dist, n, classify)
            for n, s in enumerate(sets)]
    metrics = {k: float(np.mean([v.metrics[k] for v in each])) for k in each[0].metrics}
    return Validation({**metrics, **{f"loss_obj{n}": v.metrics["loss"] for n, v in enumerate(each)}},
                      each[0].per_sample)


@torch.no_grad()
def save_examples(path: Path, encoder: Encoder, head: PoseHead, loss_fn: MultiPoseLoss, samples: SampleSet,
                  indices: torch.Tensor, device: torch.device, obj: int | None = None) -> None:
    """input | GT depth | each hypothesis' depth (its confidence in the title row) | error map of the
    most confident hypothesis, for the validation samples ``indices`` (evaluated again: eval mode, so
    exactly as in the validation pass)."""
    batch = next(samples.rows(indices.tolist()).batches(len(indices), device))
    head.eval()
    ids = torch.full((len(indices),), obj, dtype=torch.int64, device=device) if obj is not None else None
    _, terms, out = sample_loss(head(head_input(encoder, head, batch.image)), batch.R, loss_fn, ids, None)
    rows, row_titles = [], []
    for i, idx in enumerate(indices.tolist()):
        gt = loss_fn.render_gt(batch.R[i : i + 1], None if ids is None else ids[i : i + 1])[0, 0].cpu().numpy()
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
