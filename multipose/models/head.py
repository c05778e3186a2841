"""The pose head: K rotation hypotheses with confidences from an encoder code.

Architecture (the original's): four dense layers of width 128 with batch norm and ReLU, each fed the
concatenation of the previous layer's output and the input code (skip concatenations), then
``128 -> 64 -> K * (1 + D)``: one confidence logit and a D-dimensional rotation parameter per
hypothesis (``D = 6`` for ``6d-pose``, PyTorch3D's row convention; ``D = 4`` for ``quat``, a
quaternion (w, x, y, z) normalised to unit length). Confidences are the softmax over the K logits.

The architecture arguments live in :class:`PoseHeadConfig`, which checkpoints store, so a model is
always rebuilt from its arguments and never guessed back from tensor shapes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from pytorch3d.transforms import quaternion_to_matrix, rotation_6d_to_matrix
from torch import nn

__all__ = ["REPRESENTATIONS", "HeadOutput", "PoseHead", "PoseHeadConfig"]

#: Parameters per hypothesis for each ``POSE_REPRESENTATION``.
REPRESENTATIONS = {"6d-pose": 6, "quat": 4}


@dataclass(frozen=True)
class PoseHeadConfig:
    """Arguments of :class:`PoseHead`.

    Attributes:
        num_hypotheses: K (config ``[Rendering] VIEWS``).
        representation: ``"6d-pose"`` or ``"quat"`` (config ``POSE_REPRESENTATION``).
        input_dim: size of the encoder code (128 for the AAE).
        width: width of the four skip-connected layers (128 in the original).
    """

    num_hypotheses: int
    representation: str = "6d-pose"
    input_dim: int = 128
    width: int = 128

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"unknown representation {self.representation!r}; expected one of {list(REPRESENTATIONS)}")
        if self.num_hypotheses < 1 or self.input_dim < 1 or self.width < 1:
            raise ValueError(f"bad head arguments {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HeadOutput:
    """Attributes: ``confidence (B, K)`` softmax; ``logits (B, K)``; ``R (B, K, 3, 3)`` rotations."""

    confidence: torch.Tensor
    logits: torch.Tensor
    R: torch.Tensor


class PoseHead(nn.Module):
    """``code (B, input_dim) -> HeadOutput`` with K hypotheses (see the module docstring)."""

    def __init__(self, config: PoseHeadConfig) -> None:
        super().__init__()
        self.config = config
        d, w = config.input_dim, config.width
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(w + d if i else d, w), nn.BatchNorm1d(w), nn.ReLU()) for i in range(4)
        )
        self.reduce = nn.Sequential(nn.Linear(w, 64), nn.ReLU())
        self.out = nn.Linear(64, config.num_hypotheses * (1 + REPRESENTATIONS[config.representation]))

    def forward(self, code: torch.Tensor) -> HeadOutput:
        if code.ndim != 2 or code.shape[1] != self.config.input_dim:
            raise ValueError(f"code must be (B, {self.config.input_dim}), got {tuple(code.shape)}")
        h = code
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, code], dim=1) if i else h)
        raw = self.out(self.reduce(h))  # (B, K * (1 + D))
        K, D = self.config.num_hypotheses, REPRESENTATIONS[self.config.representation]
        logits, params = raw[:, :K], raw[:, K:].reshape(-1, K, D)
        if self.config.representation == "6d-pose":
            R = rotation_6d_to_matrix(params)
        else:
            q = params / params.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            R = quaternion_to_matrix(q)
        return HeadOutput(confidence=torch.softmax(logits, dim=1), logits=logits, R=R)
