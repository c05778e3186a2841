"""Encoder + decoder for AAE pretraining, and the bootstrapped L2 reconstruction loss.

The AAE learns to reconstruct the *clean* render of an object from an augmented crop of it
(Sundermeyer et al., ECCV 2018). The loop that feeds it lives in the training layer; this module only
holds the pure pieces: :class:`Autoencoder` (augmented image -> reconstruction and code) and
:func:`bootstrapped_l2_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from multipose.models.decoder import Decoder
from multipose.models.encoder import Encoder, EncoderConfig

__all__ = ["Autoencoder", "AutoencoderOutput", "bootstrapped_l2_loss"]


def bootstrapped_l2_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, bootstrap_ratio: int = 4
) -> torch.Tensor:
    """Mean squared error over the worst ``1 / bootstrap_ratio`` of each image's values:
    ``(B, C, H, W), (B, C, H, W) -> ()``.

    With ``e_b`` the ``N = C * H * W`` squared errors of image ``b`` and ``k = max(N // ratio, 1)``:
    ``loss = mean_b mean(top_k(e_b))``. As the AAE (``tf.nn.top_k`` on the flattened per-value errors;
    a "pixel" there is one channel value); ``bootstrap_ratio = 1`` is the plain mean squared error.
    Bootstrapping focuses the loss on the object's edges instead of the easy background.
    """
    if reconstruction.shape != target.shape or reconstruction.dim() < 2:
        raise ValueError(
            f"reconstruction and target must have the same shape (B, ...), got {tuple(reconstruction.shape)} "
            f"and {tuple(target.shape)}"
        )
    if isinstance(bootstrap_ratio, bool) or not isinstance(bootstrap_ratio, int) or bootstrap_ratio < 1:
        raise ValueError(f"bootstrap_ratio must be an int >= 1, got {bootstrap_ratio!r}")
    errors = (reconstruction - target).square().flatten(1)
    k = max(errors.shape[1] // bootstrap_ratio, 1)
    if k == errors.shape[1]:
        return errors.mean()
    return errors.topk(k, dim=1, sorted=False).values.mean()


@dataclass(frozen=True)
class AutoencoderOutput:
    """``reconstruction``: ``(B, 3, S, S)`` in [0, 1]; ``code``: ``(B, D)`` raw (not normalised) codes."""

    reconstruction: torch.Tensor
    code: torch.Tensor


class Autoencoder(nn.Module):
    """``encoder`` + mirrored ``decoder``: ``(B, 3, S, S) -> AutoencoderOutput``.

    Build a fresh one with ``Autoencoder.from_config(cfg)``, or wrap an existing encoder (its decoder
    then starts fresh). The pretraining loop keeps ``autoencoder.encoder`` as the pose pipeline's
    frozen encoder.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder | None = None) -> None:
        super().__init__()
        if decoder is not None and decoder.config != encoder.config:
            raise ValueError(
                f"decoder ({decoder.config.describe()}) does not mirror the encoder ({encoder.config.describe()})"
            )
        self.encoder = encoder
        self.decoder = decoder if decoder is not None else Decoder(encoder.config)

    @classmethod
    def from_config(cls, config: EncoderConfig) -> Autoencoder:
        """A freshly initialised encoder and decoder for ``config``."""
        return cls(Encoder(config), Decoder(config))

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    def forward(self, images: torch.Tensor) -> AutoencoderOutput:
        """``(B, 3, S, S) -> AutoencoderOutput(reconstruction (B, 3, S, S), code (B, D))``."""
        code = self.encoder(images)
        return AutoencoderOutput(reconstruction=self.decoder(code), code=code)
