"""The Augmented-Autoencoder (AAE) encoder: image ``(B, 3, S, S)`` in [0, 1] -> code ``(B, D)``.

Architecture (Sundermeyer et al., "Implicit 3D Orientation Learning for 6D Object Detection from RGB
Images", ECCV 2018; TensorFlow code ``DLR-RM/AugmentedAutoencoder``, ``auto_pose/ae/encoder.py``):

1. per-image min-max normalisation of the input (as the multi-pose original's pipeline did before
   its frozen encoder), safe on a flat image (:func:`minmax_normalize`);
2. ``len(channels)`` blocks of: ``kernel_size x kernel_size`` convolution with stride 2 and
   TensorFlow ``SAME`` padding (:func:`same_padding`: for an even input and a 5x5 kernel, 1 pixel
   left/top and 2 right/bottom), then ReLU, then batch norm (TF's ``eps = 1e-3``) -- ReLU *before*
   batch norm, as the original;
3. flatten in **NHWC** order (height, width, channel; channel fastest), like ``tf.layers.flatten``, so
   a TensorFlow dense kernel maps onto :attr:`Encoder.dense` without reordering;
4. a dense layer to the ``latent_size`` code (no activation).

The raw code feeds the decoder during pretraining; the pose head and the codebook use the
L2-normalised code (:func:`l2_normalize`, :meth:`Encoder.encode`).

Presets (:data:`PRESETS`, config ``[Encoder] ARCH``): ``aae`` is the original (128 px, channels
128-256-512-512, latent 128, kernel 5); ``small`` is the CPU preset (64 px, 32-64-128-128, latent 128,
kernel 5; ``benchmarks/codebook.py`` measures both). The architecture lives in a frozen
:class:`EncoderConfig` that checkpoints store, so a model is always rebuilt from its arguments, never
from tensor shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from multipose.core.settings import ENCODER_INPUT_SIZES

__all__ = [
    "BATCH_NORM_EPS",
    "PRESETS",
    "Encoder",
    "EncoderConfig",
    "encoder_config",
    "l2_normalize",
    "minmax_normalize",
    "nhwc_flatten",
    "same_padding",
]

#: Batch-norm epsilon of TensorFlow's ``tf.layers.batch_normalization`` (PyTorch's default is 1e-5);
#: the original weights only reproduce their codes with this value.
BATCH_NORM_EPS = 1e-3


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture arguments of :class:`Encoder` and its mirrored :class:`~multipose.models.Decoder`.

    ``image_size``: side S of the square RGB input, a multiple of ``2 ** len(channels)``;
    ``channels``: output channels of the stride-2 convolutions, first to last;
    ``latent_size``: size D of the code; ``kernel_size``: side of every convolution kernel;
    ``batch_norm``: batch norm after each convolution's ReLU (the original AAE config could turn it
    off: ``[Network] BATCH_NORMALIZATION``); ``normalize_input``: min-max normalise each input image.
    """

    image_size: int = 128
    channels: tuple[int, ...] = (128, 256, 512, 512)
    latent_size: int = 128
    kernel_size: int = 5
    batch_norm: bool = True
    normalize_input: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        ints = {"image_size": self.image_size, "latent_size": self.latent_size, "kernel_size": self.kernel_size}
        for name, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EncoderConfig.{name} must be an int >= 1, got {value!r}")
        if not self.channels or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.channels
        ):
            raise ValueError(f"EncoderConfig.channels must be a non-empty list of ints >= 1, got {self.channels!r}")
        factor = 2 ** len(self.channels)
        if self.image_size % factor:
            raise ValueError(
                f"EncoderConfig.image_size must be a multiple of 2**{len(self.channels)} = {factor} "
                f"(one halving per convolution), got {self.image_size}"
            )

    @property
    def feature_size(self) -> int:
        """Side of the last convolution's output: ``image_size / 2 ** len(channels)``."""
        return self.image_size // 2 ** len(self.channels)

    @property
    def flat_features(self) -> int:
        """Inputs of the dense layer: ``feature_size ** 2 * channels[-1]``."""
        return self.feature_size**2 * self.channels[-1]

    def describe(self) -> str:
        """One line for messages, e.g. ``image 64, channels 32-64-128-128, latent 128, kernel 5, batch norm``."""
        return (
            f"image {self.image_size}, channels {'-'.join(map(str, self.channels))}, latent {self.latent_size}, "
            f"kernel {self.kernel_size}, {'batch norm' if self.batch_norm else 'no batch norm'}"
            + ("" if self.normalize_input else ", no input normalisation")
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (``channels`` as a list), for checkpoints; :meth:`from_dict` reads it back."""
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EncoderConfig:
        """Inverse of :meth:`to_dict`; unknown names or invalid values raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown encoder argument(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        kwargs = dict(values)
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
        return cls(**kwargs)


#: Named architectures (config ``[Encoder] ARCH``).
PRESETS: Mapping[str, EncoderConfig] = MappingProxyType(
    {
        "aae": EncoderConfig(
            image_size=ENCODER_INPUT_SIZES["aae"], channels=(128, 256, 512, 512), latent_size=128, kernel_size=5
        ),
        "small": EncoderConfig(
            image_size=ENCODER_INPUT_SIZES["small"], channels=(32, 64, 128, 128), latent_size=128, kernel_size=5
        ),
    }
)


def encoder_config(arch: str, **overrides: Any) -> EncoderConfig:
    """A preset of :data:`PRESETS` with some arguments replaced (``None`` values are ignored).

    ``encoder_config("small", latent_size=64)``; an unknown ``arch`` raises ``ValueError``.
    """
    try:
        base = PRESETS[arch]
    except KeyError:
        raise ValueError(f"unknown encoder architecture {arch!r}; known: {', '.join(PRESETS)}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``padding='SAME'`` along one axis: ``(before, after)`` pixels.

    Output size ``ceil(size / stride)``; total padding ``max((out - 1) * stride + kernel - size, 0)``,
    the odd pixel going *after* (right/bottom). E.g. ``(128, 5, 2) -> (1, 2)``, ``(127, 5, 2) -> (2, 2)``,
    ``(64, 5, 1) -> (2, 2)``, ``(8, 4, 1) -> (1, 2)``.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def minmax_normalize(images: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image min-max normalisation over all pixels and channels: ``(B, *) -> (B, *)``.

    ``(x - min) / max(max - min, eps)``: an image spanning any range maps to [0, 1]; a flat image
    (max = min) maps to zeros instead of NaN.
    """
    flat = images.flatten(1)
    low = flat.amin(dim=1).view(-1, *([1] * (images.dim() - 1)))
    high = flat.amax(dim=1).view(-1, *([1] * (images.dim() - 1)))
    return (images - low) / (high - low).clamp_min(eps)


def l2_normalize(codes: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit-length codes along the last axis: ``(*, D) -> (*, D)`` (a zero code stays zero)."""
    return F.normalize(codes, p=2.0, dim=-1, eps=eps)


def nhwc_flatten(features: torch.Tensor) -> torch.Tensor:
    """Flatten feature maps in TensorFlow's NHWC order: ``(B, C, H, W) -> (B, H * W * C)``.

    Element ``(c, h, w)`` lands at index ``(h * W + w) * C + c``, as ``tf.layers.flatten`` on NHWC.
    """
    return features.permute(0, 2, 3, 1).flatten(1)


class Encoder(nn.Module):
    """AAE encoder: ``(B, 3, S, S) -> (B, D)`` raw codes (see the module docstring).

    Submodules: ``convs[i]`` (:class:`torch.nn.Conv2d`, no built-in padding), ``norms[i]``
    (:class:`torch.nn.BatchNorm2d` with ``eps = 1e-3``, or :class:`torch.nn.Identity` without batch
    norm), ``dense`` (:class:`torch.nn.Linear`, ``flat_features -> latent_size``, NHWC inputs).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        in_channels = (3, *config.channels[:-1])
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, config.kernel_size, stride=2)
            for cin, cout in zip(in_channels, config.channels, strict=True)
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(c, eps=BATCH_NORM_EPS) if config.batch_norm else nn.Identity() for c in config.channels
        )
        self.dense = nn.Linear(config.flat_features, config.latent_size)
        sizes = [config.image_size // 2**i for i in range(len(config.channels))]
        # F.pad order for the last two axes: (left, right, top, bottom).
        self._pads = tuple(same_padding(s, config.kernel_size, 2) * 2 for s in sizes)

    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The last block's output: ``(B, 3, S, S) -> (B, channels[-1], S / 2**n, S / 2**n)``."""
        size = self.config.image_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
            raise ValueError(
                f"expected images of shape (B, 3, {size}, {size}) for this encoder, got {tuple(images.shape)}"
            )
        x = minmax_normalize(images) if self.config.normalize_input else images
        for conv, norm, pad in zip(self.convs, self.norms, self._pads, strict=True):
            x = norm(F.relu(conv(F.pad(x, pad))))
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw (not normalised) codes: ``(B, 3, S, S) -> (B, D)``."""
        return self.dense(nhwc_flatten(self.feature_maps(images)))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised codes, the pose head's and the codebook's input: ``(B, 3, S, S) -> (B, D)``."""
        return l2_normalize(self(images))

    def extra_repr(self) -> str:
        return self.config.describe()

