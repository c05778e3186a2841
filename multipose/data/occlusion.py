"""Square occluders on the object, as the original's ``DatasetGeneratorSquareOcc`` variant.

That generator, with probability 0.7 per sample, applied imgaug's ``CoarseDropout(p=0.4,
size_percent=0.01)`` to the object's mask: a coarse grid (at 128 px, imgaug's smallest, 3 x 3 cells)
whose cells are dropped with probability 0.4, scaled up to the crop, so that whole squares of about a
third of the crop are cut out of the object and show the background instead. It drew the grid again
until less than 25 % of the object's pixels were cut.

:func:`square_occlusions` does the same for a batch, with ``[Augmentation] SQUARE_OCCLUSION_PROB``
(0 = off, the default; the original's variant used 0.7), ``SQUARE_OCCLUSION_GRID`` (3),
``SQUARE_OCCLUSION_RATE`` (0.4) and ``SQUARE_OCCLUSION_MAX`` (0.25); it makes at most
:data:`MAX_TRIES` draws per sample (the original looped until one fitted) and leaves a sample
unoccluded when none fits. Draws use the given CPU generator, so a batch replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["MAX_TRIES", "OcclusionSettings", "square_occlusions"]

#: Grids drawn per sample before giving up on occluding it (P(all fail) is tiny for the defaults).
MAX_TRIES = 16


@dataclass(frozen=True)
class OcclusionSettings:
    """``prob``: share of samples occluded; ``grid``: cells per side; ``rate``: probability that a
    cell is dropped; ``max_fraction``: a draw must cut less than this share of the object's pixels."""

    prob: float = 0.0
    grid: int = 3
    rate: float = 0.4
    max_fraction: float = 0.25


def square_occlusions(mask: torch.Tensor, settings: OcclusionSettings, generator: torch.Generator) -> torch.Tensor:
    """Where each sample's object is cut: ``mask (B, S, S) bool -> (B, S, S) bool`` (True: an object
    pixel that shows the background instead), on ``mask``'s device; all False when ``prob`` is 0."""
    B, S = mask.shape[0], mask.shape[-1]
    cut = torch.zeros_like(mask)
    if settings.prob <= 0 or B == 0:
        return cut
    g, T = settings.grid, MAX_TRIES
    chosen = torch.rand(B, generator=generator) < settings.prob
    cells = torch.rand(B, T, g, g, generator=generator) < settings.rate
    squares = F.interpolate(cells.float(), size=(S, S), mode="nearest").bool().to(mask.device)  # (B, T, S, S)
    area = mask.sum(dim=(1, 2)).clamp_min(1)
    share = (squares & mask[:, None]).sum(dim=(2, 3)) / area[:, None]  # (B, T)
    fits = share < settings.max_fraction
    first = fits.float().argmax(dim=1)  # the first draw that fits
    usable = chosen.to(mask.device) & fits.any(dim=1) & (mask.sum(dim=(1, 2)) > 0)
    picked = squares[torch.arange(B, device=mask.device), first]
    return torch.where(usable[:, None, None], picked & mask, cut)
