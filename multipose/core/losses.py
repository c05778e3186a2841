"""The multi-pose loss (``vsd-union`` and ``vsd-union-var-gamma``), computed with rendered depth, and the
population head's soft targets from the same rendered depth (:class:`AnchorTargets`, end of this docstring).

For a sample with ground-truth rotation ``R*``, hypotheses ``R_1..R_K`` and softmax confidences
``c_1..c_K``, depth maps ``D*`` and ``D_k`` are rendered by the loss camera (:class:`LossView`: the
decimated loss mesh at the fixed translation ``T``). Then, per hypothesis:

- union mask ``U_k = (D* > 0) OR (D_k > 0)``;
- per-pixel error ``e_k = min(|D* - D_k|, d_max) / d_max``;
- depth term ``l_k = sum(e_k * U_k) / sum(U_k)`` (0 when the union is empty: both renders agree);
  with ``[Loss_parameters] DEPTH_NORMALIZATION: image`` (the paper-era code, whose background depth
  of -1 made its mask the whole image) ``l_k = sum(e_k) / (S * S)`` over all pixels instead: the
  same errors (a pixel that is background in both renders has ``e = 0``), divided by the image's
  area, so ``l_k`` shrinks with the object's share of the image and the diversity term weighs
  relatively more (by 1 / the union's share of the image: 2.5x when the union covers 40 %);
- weighted term ``l'_k = (c_k * l_k + gamma * l_k) / 2``;

and over pairs ``i < j`` of hypotheses, with ``theta_ij`` their geodesic angle in degrees, the
diversity term ``p_ij = 1 - min(theta_ij, pose_max) / pose_max``, averaged over pairs (0 for K = 1).
The sample loss is ``sum_k l'_k + mean_ij p_ij``; the batch loss is the mean over samples.

The two loss names of the original differ only in where ``d_max`` and ``gamma`` come from
(:func:`multipose.config.loss_parameters`), so both are this one function with parameters.

Multi-view: with viewpoint rotations ``V_1..V_m`` (config ``LOSS_VIEWPOINTS``, Euler degrees), ``R*``
and ``R_k`` are rendered as ``V_v @ R`` for every viewpoint (the object seen from another side by
the same camera) and the depth term ``l_k`` is averaged over viewpoints. Two poses that render the
same depth from every viewpoint -- symmetric poses -- get the same loss: no symmetry labels needed.

Population targets (``[Training] HEAD: population``): for a ground truth ``R*`` and the anchor grid
``A_1..A_n`` of the head, the target is ``q_a = softmax_a(-l(R*, A_a) / tau)`` over the ``M`` anchors
(``ANCHOR_CANDIDATES``) whose 16 x 16 block-mean depth is closest to ``R*``'s (squared L2, one matrix
product; the others get 0), with ``l`` the depth term above at the loss camera's full resolution and
``tau`` = ``ANCHOR_TEMPERATURE``. The head is trained with the cross-entropy ``-sum_a q_a log p_a``
(:func:`population_loss`). Anchors that render like the ground truth -- its symmetric poses among
them -- share the target mass, again without symmetry labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from multipose.core.geometry import geodesic_angle_deg
from multipose.core.render import LossView
from multipose.core.settings import LossParameters

__all__ = [
    "AnchorTargets",
    "LossTerms",
    "MultiPoseLoss",
    "depth_term",
    "diversity_term",
    "multi_pose_loss",
    "population_loss",
    "render_viewpoints",
]


@dataclass(frozen=True)
class LossTerms:
    """Everything :func:`multi_pose_loss` computed, for logging and hard-sample mining.

    Attributes:
        loss: ``()`` batch mean of ``per_sample`` (what to backpropagate).
        per_sample: ``(B,)`` sample losses ``sum_k l'_k + diversity``.
        depth: ``(B, K)`` depth terms ``l_k`` (averaged over viewpoints), in ``[0, 1]``.
        weighted: ``(B, K)`` ``l'_k = (c_k + gamma) * l_k / 2``.
        diversity: ``(B,)`` mean over hypothesis pairs of ``p_ij`` (0 for K = 1).
        rendered: ``(B, K, V, S, S)`` the hypotheses' depth maps (mm) per viewpoint.
    """

    loss: torch.Tensor
    per_sample: torch.Tensor
    depth: torch.Tensor
    weighted: torch.Tensor
    diversity: torch.Tensor
    rendered: torch.Tensor


def depth_term(
    depth_gt: torch.Tensor, depth: torch.Tensor, depth_max: float, normalization: str = "union"
) -> torch.Tensor:
    """``l = sum(min(|D* - D|, d_max) / d_max * U) / N`` over ``U = (D* > 0) | (D > 0)``.

    ``N = sum(U)`` for ``normalization="union"`` (an empty union gives 0), ``N = H * W`` for
    ``"image"``. ``(*, H, W), (*, H, W) -> (*)``; depth 0 means background.
    """
    union = ((depth_gt > 0) | (depth > 0)).to(depth.dtype)
    error = (depth_gt - depth).abs().clamp(max=depth_max) / depth_max
    area: torch.Tensor | float
    if normalization == "union":
        area = union.sum(dim=(-1, -2)).clamp_min(1.0)
    elif normalization == "image":
        area = float(depth.shape[-1] * depth.shape[-2])
    else:
        raise ValueError(f"unknown depth normalization {normalization!r}; expected 'union' or 'image'")
    return (error * union).sum(dim=(-1, -2)) / area


def diversity_term(R: torch.Tensor, pose_max: float) -> torch.Tensor:
    """Mean over pairs ``i < j`` of ``1 - min(theta_ij, pose_max) / pose_max``: ``(B, K, 3, 3) -> (B,)``.

    ``theta_ij`` is the geodesic angle between hypotheses in degrees; 1 for identical hypotheses,
    0 for hypotheses at least ``pose_max`` apart, 0 when K = 1.
    """
    B, K = R.shape[:2]
    if K == 1:
        return R.new_zeros(B)
    i, j = (torch.tensor(idx, device=R.device) for idx in zip(*combinations(range(K), 2), strict=True))
    theta = geodesic_angle_deg(R[:, i], R[:, j])  # (B, P)
    return (1.0 - theta.clamp(max=pose_max) / pose_max).mean(dim=1)


def render_viewpoints(view: LossView, R: torch.Tensor, viewpoints: torch.Tensor,
                      objects: torch.Tensor | None = None) -> torch.Tensor:
    """Depth of every rotation seen from every viewpoint, in one render call:
    ``R (N, 3, 3), viewpoints (V, 3, 3) -> (N, V, S, S)`` (pose ``viewpoints[v] @ R[n]``); ``objects (N,)``: the
    object of each rotation (a view of several objects)."""
    N, V, S = R.shape[0], viewpoints.shape[0], view.image_size
    each = objects.repeat_interleave(V) if objects is not None else None
    return view((viewpoints[None] @ R[:, None]).reshape(-1, 3, 3), each).depth.reshape(N, V, S, S)


def multi_pose_loss(
    view: LossView,
    R_gt: torch.Tensor,
    R_hyp: torch.Tensor,
    confidence: torch.Tensor,
    params: LossParameters,
    viewpoints: torch.Tensor | None = None,
    depth_gt: torch.Tensor | None = None,
    objects: torch.Tensor | None = None,
) -> LossTerms:
    """The multi-pose loss of a batch (see the module docstring).

    Args:
        view: the loss camera and mesh.
        R_gt: ``(B, 3, 3)`` ground-truth rotations (no gradient is needed through them).
        R_hyp: ``(B, K, 3, 3)`` hypotheses.
        confidence: ``(B, K)`` softmax confidences.
        params: ``depth_max`` (mm), ``pose_max`` (degrees), ``gamma``, ``depth_normalization``.
        viewpoints: ``(V, 3, 3)`` viewpoint rotations; None = identity only.
        depth_gt: optional ``(B, V, S, S)`` ground-truth depth already rendered for these viewpoints.
        objects: ``(B,)`` int64, each sample's object, for a view of several objects (each sample's hypotheses
            are rendered as its object, at its translation: ``vsd-union-multi-object``'s depth term).

    Returns:
        :class:`LossTerms`.
    """
    B, K = R_hyp.shape[:2]
    if R_gt.shape != (B, 3, 3) or R_hyp.shape != (B, K, 3, 3) or confidence.shape != (B, K):
        raise ValueError(
            f"expected R_gt (B,3,3), R_hyp (B,K,3,3), confidence (B,K); got {tuple(R_gt.shape)}, "
            f"{tuple(R_hyp.shape)}, {tuple(confidence.shape)}"
        )
    if viewpoints is None:
        viewpoints = torch.eye(3, device=R_hyp.device, dtype=R_hyp.dtype)[None]
    viewpoints = viewpoints.to(R_hyp)
    if depth_gt is None:
        with torch.no_grad():
            depth_gt = render_viewpoints(view, R_gt, viewpoints, objects)
    hyp_objects = objects.repeat_interleave(K) if objects is not None else None
    depth = render_viewpoints(view, R_hyp.reshape(B * K, 3, 3), viewpoints, hyp_objects)
    depth = depth.reshape(B, K, *depth.shape[1:])
    l = depth_term(depth_gt[:, None], depth, params.depth_max, params.depth_normalization).mean(dim=2)  # (B, K)
    weighted = (confidence * l + params.gamma * l) / 2.0
    diversity = diversity_term(R_hyp, params.pose_max)
    per_sample = weighted.sum(dim=1) + diversity
    return LossTerms(
        loss=per_sample.mean(), per_sample=per_sample, depth=l, weighted=weighted, diversity=diversity, rendered=depth
    )


class MultiPoseLoss(nn.Module):
    """:func:`multi_pose_loss` bound to a loss view, its parameters and viewpoints.

    ``forward(R_gt (B,3,3), R_hyp (B,K,3,3), confidence (B,K)) -> LossTerms``.
    """

    viewpoints: torch.Tensor  # a buffer (register_buffer in __init__)

    def __init__(self, view: LossView, params: LossParameters, viewpoints: torch.Tensor | None = None) -> None:
        super().__init__()
        self.view = view
        self.params = params
        if viewpoints is None:
            viewpoints = torch.eye(3)[None]
        self.register_buffer("viewpoints", viewpoints.float(), persistent=False)

    def render_gt(self, R_gt: torch.Tensor, objects: torch.Tensor | None = None) -> torch.Tensor:
        """Ground-truth depth for every viewpoint without gradient: ``(B,3,3) -> (B, V, S, S)``."""
        with torch.no_grad():
            return render_viewpoints(self.view, R_gt, self.viewpoints, objects)

    def forward(
        self,
        R_gt: torch.Tensor,
        R_hyp: torch.Tensor,
        confidence: torch.Tensor,
        depth_gt: torch.Tensor | None = None,
        objects: torch.Tensor | None = None,
    ) -> LossTerms:
        return multi_pose_loss(self.view, R_gt, R_hyp, confidence, self.params, self.viewpoints, depth_gt, objects)


def classification_loss(object_logits: torch.Tensor, objects: torch.Tensor, kind: str = "logits") -> torch.Tensor:
    """The classification term of ``vsd-union-multi-object`` per sample: cross-entropy of the classifier's
    ``object_logits (B, N)`` against ``objects (B,)`` -> ``(B,)``. ``kind``: ``"logits"`` (correct), or
    ``"original"``: applied to the softmax of the logits, as the original computed it (a second softmax inside
    the cross-entropy: for N objects the term cannot fall below ``log(1 + (N - 1) / e)``)."""
    if kind not in ("logits", "original"):
        raise ValueError(f"kind must be 'logits' or 'original', got {kind!r}")
    scores = object_logits if kind == "logits" else torch.softmax(object_logits, dim=1)
    return F.cross_entropy(scores, objects.to(object_logits.device), reduction="none")


def population_loss(anchor_logits: torch.Tensor, index: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
    """Soft-target cross-entropy per sample, ``-sum_m prob[b, m] * log_softmax(anchor_logits)[b, index[b, m]]``:
    ``(B, A), (B, M) int64, (B, M) -> (B,)``."""
    return -(prob * F.log_softmax(anchor_logits, dim=1).gather(1, index)).sum(dim=1)


class AnchorTargets:
    """The population head's soft targets over an anchor grid (see the module docstring).

    ``__call__(R (B, 3, 3)) -> (index (B, M) int64, prob (B, M), nearest (B,))``: the ``M`` candidate
    anchors, their target probabilities (summing to 1) and the smallest depth term among them (how far
    the grid is from the ground truth). The anchors' depth maps are rendered once here: ``A x S x S``
    floats (95 MB for 5,832 anchors at 64 px).
    """

    def __init__(self, view: LossView, anchors: torch.Tensor, params: LossParameters, temperature: float,
                 candidates: int, batch_size: int = 256) -> None:
        if not 1 <= candidates <= anchors.shape[0] or temperature <= 0:
            raise ValueError(f"need 1 <= candidates <= {anchors.shape[0]} anchors and temperature > 0, got "
                             f"{candidates}, {temperature}")
        self.view, self.params, self.temperature, self.candidates = view, params, temperature, candidates
        eye = torch.eye(3, device=anchors.device)[None]
        with torch.no_grad():
            self.depth = torch.cat([render_viewpoints(view, anchors[i : i + batch_size], eye)[:, 0]
                                    for i in range(0, anchors.shape[0], batch_size)])  # (A, S, S)
        self.coarse = self._coarse(self.depth)  # (A, c)
        self.coarse_norm = (self.coarse**2).sum(dim=1)  # (A,) squared norms, for the distances

    @staticmethod
    def _coarse(depth: torch.Tensor) -> torch.Tensor:
        """16 x 16 block means of depth maps, flattened: ``(N, S, S) -> (N, 256)``."""
        return F.adaptive_avg_pool2d(depth[:, None], 16).flatten(1)

    @torch.no_grad()
    def __call__(self, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        eye = torch.eye(3, device=R.device, dtype=R.dtype)[None]
        depth = render_viewpoints(self.view, R, eye)[:, 0]  # (B, S, S)
        coarse = self._coarse(depth)
        distance = (coarse * coarse).sum(1, keepdim=True) - 2 * coarse @ self.coarse.T + self.coarse_norm
        index = distance.topk(self.candidates, dim=1, largest=False).indices  # (B, M)
        error = depth_term(depth[:, None], self.depth[index], self.params.depth_max,
                           self.params.depth_normalization)  # (B, M)
        return index, torch.softmax(-error / self.temperature, dim=1), error.min(dim=1).values
