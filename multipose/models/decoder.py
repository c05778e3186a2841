"""The AAE decoder, mirrored from the encoder: code ``(B, D)`` -> image ``(B, 3, S, S)`` in [0, 1].

As the original (``DLR-RM/AugmentedAutoencoder``, ``auto_pose/ae/decoder.py``, built with the encoder's
channel list reversed), for an :class:`~multipose.models.EncoderConfig` with ``n`` convolutions
(channels ``c_1..c_n``) and input side ``S``:

1. dense ``D -> (S / 2**n)**2 * c_n``, ReLU, batch norm (1-D, over those features), reshaped as
   **NHWC** ``(B, S/2**n, S/2**n, c_n)`` (TensorFlow's order) and permuted to ``(B, c_n, ., .)``;
2. for ``c`` in ``c_{n-1}, ..., c_1``: nearest-neighbour resize to twice the size
   (``tf.image.resize_nearest_neighbor``, which for a 2x upscale copies ``floor(i / 2)`` like
   PyTorch's ``nearest``), ``kernel_size`` convolution with stride 1 and ``SAME`` padding, ReLU,
   batch norm;
3. a last resize to ``S`` and convolution to 3 channels with a sigmoid.

So ``n`` upsample + convolution steps in all; for the ``aae`` preset 8 -> 16 -> 32 -> 64 -> 128 px with
512-256-128-3 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from multipose.models.encoder import BATCH_NORM_EPS, EncoderConfig, same_padding

__all__ = ["Decoder"]


class Decoder(nn.Module):
    """Mirror of :class:`~multipose.models.Encoder`: ``(B, D) -> (B, 3, S, S)`` in [0, 1].

    Submodules: ``dense`` (``D -> feature_size**2 * channels[-1]``, NHWC outputs), ``dense_norm``
    (:class:`torch.nn.BatchNorm1d` or :class:`torch.nn.Identity`), ``convs[i]`` (stride 1, no built-in
    padding; the last one outputs 3 channels), ``norms[i]`` (after every convolution but the last).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = tuple(reversed(config.channels)) + (3,)
        self.dense = nn.Linear(config.latent_size, config.flat_features)
        self.dense_norm = (
            nn.BatchNorm1d(config.flat_features, eps=BATCH_NORM_EPS) if config.batch_norm else nn.Identity()
        )
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, config.kernel_size) for cin, cout in zip(widths[:-1], widths[1:], strict=True)
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(c, eps=BATCH_NORM_EPS) if config.batch_norm else nn.Identity() for c in widths[1:-1]
        )
        self._sizes = tuple(config.feature_size * 2 ** (i + 1) for i in range(len(config.channels)))
        self._pads = tuple(same_padding(s, config.kernel_size, 1) * 2 for s in self._sizes)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructions: ``(B, D) -> (B, 3, S, S)`` in [0, 1]."""
        cfg = self.config
        if codes.dim() != 2 or codes.shape[1] != cfg.latent_size:
            raise ValueError(f"expected codes of shape (B, {cfg.latent_size}), got {tuple(codes.shape)}")
        x = self.dense_norm(F.relu(self.dense(codes)))
        x = x.view(-1, cfg.feature_size, cfg.feature_size, cfg.channels[-1]).permute(0, 3, 1, 2)
        last = len(self.convs) - 1
        for i, (conv, size, pad) in enumerate(zip(self.convs, self._sizes, self._pads, strict=True)):
            x = conv(F.pad(F.interpolate(x, size=(size, size), mode="nearest"), pad))
            x = torch.sigmoid(x) if i == last else self.norms[i](F.relu(x))
        return x

    def extra_repr(self) -> str:
        return self.config.describe()
