"""Batched image augmentation: the AAE's imgaug pipeline, on the device, with kornia.

The Augmented Autoencoder (``aae_encoder_test.cfg``, ``[Augmentation] CODE``) used, in this order::

    Sometimes(0.5, Affine(scale=(1.0, 1.2)))
    Sometimes(0.5, SomeOf(2, [CoarseDropout(p=0.2, size_percent=0.05), Cutout(...), ...]))
    Sometimes(0.5, GaussianBlur(1.2 * np.random.rand()))
    Sometimes(0.5, Add((-25, 25), per_channel=0.3))
    Sometimes(0.3, Invert(0.2, per_channel=True))
    Sometimes(0.5, Multiply((0.6, 1.4), per_channel=0.5))
    Sometimes(0.5, Multiply((0.6, 1.4)))
    Sometimes(0.5, ContrastNormalization((0.5, 2.2), per_channel=0.3))

:class:`AugmentSettings` holds each op's probability and range (``[Augmentation]`` in the config).
Random parameters are drawn first from a CPU :class:`torch.Generator` (:func:`sample_params`), then
applied deterministically (:func:`apply_params`), so a batch can be replayed and a seeded run is
reproducible on any device (kornia's own random augmentations use the global RNG; we use only its
deterministic functions). Values stay in ``[0, 1]`` (clamped after every op, as imgaug's uint8 does).
Ops a sample does not get have neutral parameters; the geometric and blur ops run only on the
samples that get them.

Differences from imgaug, on purpose: the blur sigma is drawn per sample (the original drew one sigma
when it parsed its config); the dropout/cut-out choice is two independent ops (the original picked 2
of 5 occluders, CoarseSaltAndPepper and CoarseSalt included, for half the images).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.enhance import adjust_brightness
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

from multipose.infra.records import TensorRecord

logger = logging.getLogger(__name__)

__all__ = ["AugmentParams", "AugmentSettings", "Augmenter", "apply_params", "sample_params"]

#: imgaug per-channel fractions and inner probabilities of the original pipeline.
ADD_PER_CHANNEL = 0.3
INVERT_PER_CHANNEL = 0.2
MULTIPLY_PER_CHANNEL = 0.5
CONTRAST_PER_CHANNEL = 0.3
CUTOUT_COLOUR_PER_CHANNEL = 0.5
CUTOUT_WHITE = 0.5


@dataclass(frozen=True)
class AugmentSettings:
    """Probability and range of each op (``[Augmentation]``; defaults = the AAE's)."""

    affine_prob: float = 0.5
    affine_scale: tuple[float, float] = (1.0, 1.2)
    dropout_prob: float = 0.2
    dropout_rate: tuple[float, float] = (0.2, 0.2)
    dropout_size: float = 0.05
    cutout_prob: float = 0.4
    cutout_size: tuple[float, float] = (0.2, 0.2)
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    add_prob: float = 0.5
    add_range: tuple[float, float] = (-0.098, 0.098)
    invert_prob: float = 0.3
    multiply_prob: float = 0.5
    multiply_range: tuple[float, float] = (0.6, 1.4)
    contrast_prob: float = 0.5
    contrast_range: tuple[float, float] = (0.5, 2.2)


@dataclass(frozen=True)
class AugmentParams(TensorRecord):
    """Drawn parameters for a batch of ``B`` images of side ``S`` (CPU or any device).

    Attributes:
        scale: ``(B,)`` zoom about the image centre (1 = none).
        dropout: ``(B, G, G)`` bool, the coarse grid cells set to black.
        cutout: ``(B, 4)`` square ``[x0, y0, x1, y1]`` in pixels (empty when ``x1 <= x0``).
        cutout_fill: ``(B, 3)`` fill colour.
        sigma: ``(B,)`` blur sigma in pixels (0 = none).
        add: ``(B, 3)`` brightness offsets.
        invert: ``(B, 3)`` bool, channels inverted.
        multiply: ``(B, 3)`` product of both brightness factors.
        contrast: ``(B, 3)`` contrast factors about 0.5.
    """

    scale: torch.Tensor
    dropout: torch.Tensor
    cutout: torch.Tensor
    cutout_fill: torch.Tensor
    sigma: torch.Tensor
    add: torch.Tensor
    invert: torch.Tensor
    multiply: torch.Tensor
    contrast: torch.Tensor


def _uniform(g: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=g)


def _per_channel(g: torch.Generator, B: int, low: float, high: float, fraction: float) -> torch.Tensor:
    """``(B, 3)``: one value per sample, or (for ``fraction`` of the samples) one per channel."""
    shared = _uniform(g, (B, 1), low, high).expand(B, 3)
    separate = _uniform(g, (B, 3), low, high)
    return torch.where(torch.rand(B, 1, generator=g) < fraction, separate, shared)


def sample_params(settings: AugmentSettings, batch: int, size: int, generator: torch.Generator) -> AugmentParams:
    """Draw every op's parameters for ``batch`` images of side ``size`` (on the CPU).

    The number of draws does not depend on the values drawn, so one seed always gives one stream.
    """
    s, g, B, S = settings, generator, batch, size

    def happens(p: float) -> torch.Tensor:
        return torch.rand(B, generator=g) < p

    on = happens(s.affine_prob)
    scale = torch.where(on, _uniform(g, (B,), *s.affine_scale), torch.ones(B))

    grid = max(1, round(S * s.dropout_size))
    on = happens(s.dropout_prob)
    rate = _uniform(g, (B, 1, 1), *s.dropout_rate)
    dropout = (torch.rand(B, grid, grid, generator=g) < rate) & on[:, None, None]

    on = happens(s.cutout_prob)
    side = _uniform(g, (B,), *s.cutout_size) * S
    centre = torch.rand(B, 2, generator=g) * S
    cutout = torch.cat([centre - side[:, None] / 2, centre + side[:, None] / 2], dim=1)
    cutout = torch.where(on[:, None], cutout, torch.zeros(B, 4))
    colour = _per_channel(g, B, 0.0, 1.0, CUTOUT_COLOUR_PER_CHANNEL)
    cutout_fill = torch.where(torch.rand(B, 1, generator=g) < CUTOUT_WHITE, torch.ones(B, 3), colour)

    on = happens(s.blur_prob)
    sigma = torch.where(on, _uniform(g, (B,), *s.blur_sigma), torch.zeros(B))

    on = happens(s.add_prob)
    add = torch.where(on[:, None], _per_channel(g, B, *s.add_range, ADD_PER_CHANNEL), torch.zeros(B, 3))

    on = happens(s.invert_prob)
    invert = (torch.rand(B, 3, generator=g) < INVERT_PER_CHANNEL) & on[:, None]

    on1, on2 = happens(s.multiply_prob), happens(s.multiply_prob)
    m1 = torch.where(on1[:, None], _per_channel(g, B, *s.multiply_range, MULTIPLY_PER_CHANNEL), torch.ones(B, 3))
    m2 = torch.where(on2[:, None], _uniform(g, (B, 1), *s.multiply_range).expand(B, 3), torch.ones(B, 3))

    on = happens(s.contrast_prob)
    contrast = torch.where(
        on[:, None], _per_channel(g, B, *s.contrast_range, CONTRAST_PER_CHANNEL), torch.ones(B, 3)
    )
    return AugmentParams(
        scale=scale, dropout=dropout, cutout=cutout, cutout_fill=cutout_fill, sigma=sigma, add=add,
        invert=invert, multiply=m1 * m2, contrast=contrast,
    )


def apply_params(images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Augment ``images (B, 3, S, S)`` float in [0, 1] with drawn ``params``; returns a new tensor
    ``(B, 3, S, S)`` in [0, 1] on the images' device. Deterministic."""
    B, C, S, _ = images.shape
    p = params.to(images.device)
    x = images.clone()

    # zoom about the centre (imgaug Affine(scale): bilinear, black outside)
    zoom = torch.nonzero(p.scale != 1.0).flatten()
    if zoom.numel():
        n = zoom.numel()
        centre = torch.full((n, 2), (S - 1) / 2.0, device=x.device, dtype=x.dtype)
        M = get_rotation_matrix2d(centre, torch.zeros(n, device=x.device, dtype=x.dtype),
                                  p.scale[zoom, None].expand(n, 2).to(x.dtype))
        x[zoom] = warp_affine(x[zoom], M, (S, S), mode="bilinear", padding_mode="zeros", align_corners=True)

    # coarse dropout: grid cells to black
    drop = F.interpolate(p.dropout[:, None].float(), size=(S, S), mode="nearest")
    x = x * (1.0 - drop)

    # cut-out: one filled square (pixel centres inside [x0, x1) x [y0, y1))
    coords = torch.arange(S, device=x.device, dtype=x.dtype) + 0.5
    in_x = (coords[None] >= p.cutout[:, 0:1]) & (coords[None] < p.cutout[:, 2:3])
    in_y = (coords[None] >= p.cutout[:, 1:2]) & (coords[None] < p.cutout[:, 3:4])
    box = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    x = torch.where(box, p.cutout_fill[:, :, None, None].to(x.dtype), x)

    # Gaussian blur
    blur = torch.nonzero(p.sigma > 0.05).flatten()  # below 0.05 px the kernel is a delta
    if blur.numel():
        radius = max(1, math.ceil(3.0 * float(p.sigma[blur].max())))
        sigma = p.sigma[blur, None].expand(-1, 2).to(x.dtype)
        x[blur] = gaussian_blur2d(x[blur], (2 * radius + 1, 2 * radius + 1), sigma, border_type="reflect")

    # brightness offset, inversion, brightness factors, contrast about mid-grey
    x = adjust_brightness(x, p.add.to(x.dtype), clip_output=True)
    x = torch.where(p.invert[:, :, None, None], 1.0 - x, x)
    x = (x * p.multiply[:, :, None, None]).clamp(0.0, 1.0)
    contrast = p.contrast[:, :, None, None]
    x = torch.where(contrast != 1.0, (0.5 + contrast * (x - 0.5)).clamp(0.0, 1.0), x)  # 1: exactly x
    return x


class Augmenter:
    """``augmenter(images, generator)``: :func:`sample_params` then :func:`apply_params`."""

    def __init__(self, settings: AugmentSettings | None = None) -> None:
        self.settings = settings or AugmentSettings()

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(B, 3, S, S)`` in [0, 1] -> augmented ``(B, 3, S, S)`` in [0, 1]."""
        params = sample_params(self.settings, images.shape[0], images.shape[-1], generator)
        return apply_params(images, params)
