"""How long the loss renderer takes: a forward render and a forward + backward pass (``preview.py --timing``,
``benchmarks/render.py``)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import partial

import torch

from multipose.core.geometry import matrix_to_rotation_6d, rotation_6d_to_matrix
from multipose.core.render import LossView
from multipose.infra.timing import timed


@dataclass(frozen=True)
class LossViewTiming:
    """Median ms per depth map of a :class:`~multipose.core.render.LossView`: a forward pass without
    gradients, a forward pass that records the graph, and the backward pass alone."""

    no_grad_ms: float
    forward_ms: float
    backward_ms: float

    @property
    def forward_backward_ms(self) -> float:
        return self.forward_ms + self.backward_ms


def time_loss_view(view: LossView, R: torch.Tensor, repeats: int = 3) -> LossViewTiming:
    """Time ``view`` on rotations ``R (B, 3, 3)`` (on the view's device): the gradient flows to the
    rotations' 6D parameters, as in training, through a random weighting of the depth. The first
    of ``repeats + 1`` runs warms up; forward and backward are timed separately, not by subtraction."""
    device = R.device
    weights = torch.rand(R.shape[0], view.image_size, view.image_size, device=device)
    plain, forward, backward = [], [], []
    per_image = 1000.0 / R.shape[0]
    for i in range(repeats + 1):
        with torch.no_grad():
            _, t_plain = timed(partial(view, R), device)
        six = matrix_to_rotation_6d(R).clone().requires_grad_(True)

        def weighted_depth(six: torch.Tensor = six) -> torch.Tensor:
            return (view(rotation_6d_to_matrix(six)).depth * weights).sum()

        loss, t_forward = timed(weighted_depth, device)
        _, t_backward = timed(loss.backward, device)
        if i:
            plain.append(t_plain * per_image)
            forward.append(t_forward * per_image)
            backward.append(t_backward * per_image)
    return LossViewTiming(statistics.median(plain), statistics.median(forward), statistics.median(backward))
