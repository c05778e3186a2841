"""Backgrounds behind the rendered object: real images (e.g. VOC2012) or procedural ones.

``[Dataset] BACKGROUND_IMAGES`` is a folder of JPEG/PNG images (``*.jpg, *.jpeg, *.png``, any case;
a VOC2012 root with ``JPEGImages/`` inside works too) or ``procedural`` (also when empty).

Image folders are read once per run (at most ``NOOF_BG_IMGS`` images, the AAE's cap): each image gets
one random square crop (a side of 50-100% of its shorter side), resized to the crop size, and is kept
in memory as uint8; every sample then picks one at random and flips it horizontally half the time.
Files are chosen from a fixed shuffle of the sorted file list, so the training pool and the
validation pool (``part="held-out"``, taken from the other end) are disjoint whenever the folder holds
more than both need. Unreadable files are skipped and counted in one warning; a folder without any
readable image is a :class:`multipose.infra.errors.DataError`.

Procedural backgrounds (no files needed) are drawn per batch: a random colour gradient, a few random
ellipses and rectangles, low-frequency colour texture and pixel noise.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from multipose.infra.errors import DataError
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "READ_ERRORS",
    "BackgroundSource",
    "ImageBackgrounds",
    "ProceduralBackgrounds",
    "chosen_background_files",
    "find_background_files",
    "load_background_images",
    "read_background_crop",
]

#: File endings read as background images (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: What reading a broken or non-image file raises (such files are skipped with a warning).
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)
#: Seed of the fixed shuffle that splits a folder into training and held-out backgrounds.
_SPLIT_SEED = 20180908


class BackgroundSource(Protocol):
    """Anything that draws backgrounds."""

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        """``n`` backgrounds ``(n, 3, S, S)`` float32 in ``[0, 1]`` on ``device``; randomness from
        the CPU ``generator``."""
        ...


def find_background_files(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (or in ``folder/JPEGImages``, the VOC2012 layout), sorted.

    Raises :class:`DataError` if the folder does not exist or holds no JPEG/PNG file.
    """
    root = Path(folder)
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"background folder {root} {state}; set [Dataset] BACKGROUND_IMAGES to a folder of "
            "JPEG/PNG images (e.g. VOC2012/JPEGImages) or to procedural"
        )
    candidates = [root]
    for name in ("JPEGImages", "jpegimages"):
        if (root / name).is_dir():
            candidates.insert(0, root / name)
            break
    for where in candidates:
        files = sorted(p for p in where.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if files:
            return files
    raise DataError(
        f"background folder {root} holds no .jpg/.jpeg/.png images (nor does {root / 'JPEGImages'}); "
        "point [Dataset] BACKGROUND_IMAGES at a folder of images (e.g. VOC2012/JPEGImages) or set it to procedural"
    )


def chosen_background_files(
    folder: str | os.PathLike, max_images: int, part: Literal["train", "held-out"] = "train"
) -> list[Path]:
    """The files a run reads from ``folder``: the first ``max_images`` of a fixed shuffle of
    :func:`find_background_files` (``part="held-out"``: of the reversed shuffle)."""
    files = find_background_files(folder)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(_SPLIT_SEED)).tolist()
    if part == "held-out":
        order = order[::-1]
    return [files[i] for i in order[:max_images]]


def read_background_crop(path: Path, size: int, u: np.ndarray) -> np.ndarray:
    """One random square crop of an image file, resized: ``(size, size, 3)`` uint8 RGB.

    ``u``: three numbers in [0, 1) choosing the crop's side (50-100% of the shorter side) and position.
    """
    with Image.open(path) as im:
        im.draft("RGB", (2 * size, 2 * size))  # JPEG: decode at a reduced scale, much faster
        rgb = im.convert("RGB")
        w, h = rgb.size
        side = max(1.0, min(w, h) * (0.5 + 0.5 * float(u[0])))
        x0 = float(u[1]) * (w - side)
        y0 = float(u[2]) * (h - side)
        crop = rgb.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + side, y0 + side),
                         reducing_gap=2.0)
        return np.asarray(crop, dtype=np.uint8)


def load_background_images(
    folder: str | os.PathLike,
    size: int,
    max_images: int,
    seed: int = 0,
    part: Literal["train", "held-out"] = "train",
    progress: bool = True,
) -> torch.Tensor:
    """Read up to ``max_images`` backgrounds from ``folder``: ``(N, 3, size, size)`` uint8 (CPU).

    ``part="train"`` takes files from the front of a fixed shuffle of the folder, ``"held-out"``
    from its back (for validation sets). ``seed`` chooses the crops. Unreadable files are skipped
    (one warning with the count); if none can be read a :class:`DataError` names the folder.
    """
    chosen = chosen_background_files(folder, max_images, part)
    u = torch.rand(len(chosen), 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    images, failed = [], []
    for path, ui in zip(
        progress_bar(chosen, desc="loading backgrounds", unit="img", disable=not progress, leave=False), u, strict=True
    ):
        try:
            images.append(read_background_crop(path, size, ui))
        except READ_ERRORS as exc:
            failed.append((path, exc))
    if failed:
        logger.warning(
            "skipped %d of %d background files that could not be read (first: %s: %s)",
            len(failed), len(chosen), failed[0][0].name, str(failed[0][1])[:100],
        )
    if not images:
        raise DataError(
            f"background folder {folder}: none of its {len(chosen)} image files could be read "
            f"(first: {failed[0][0].name}); replace them with valid JPEG/PNG files or set "
            "[Dataset] BACKGROUND_IMAGES to procedural"
        )
    logger.info("loaded %d background images from %s (%d px crops)", len(images), folder, size)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


class ImageBackgrounds:
    """Backgrounds drawn from loaded images: ``images (N, 3, S, S)`` uint8 (kept on ``device``)."""

    def __init__(self, images: torch.Tensor, device: torch.device | str = "cpu") -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8 or images.shape[0] == 0:
            raise ValueError(f"images must be non-empty (N, 3, S, S) uint8, got {tuple(images.shape)} {images.dtype}")
        self.images = images.to(device)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        """``(n, 3, S, S)`` float32 in [0, 1]: random images, each flipped horizontally with p = 0.5."""
        index = torch.randint(0, len(self), (n,), generator=generator)
        flip = (torch.rand(n, generator=generator) < 0.5).to(device)
        bg = self.images[index.to(self.images.device)].to(device).float() / 255.0
        return torch.where(flip[:, None, None, None], bg.flip(-1), bg)


class ProceduralBackgrounds:
    """Random backgrounds made on the fly (no files): gradients, shapes, texture and noise.

    Args:
        size: side ``S`` in pixels.
        num_shapes: ellipses/rectangles per image.
    """

    def __init__(self, size: int, num_shapes: int = 6) -> None:
        self.size = int(size)
        self.num_shapes = int(num_shapes)

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        """``(n, 3, S, S)`` float32 in [0, 1] on ``device``; every random number is drawn from
        ``generator`` (CPU) first, the images are then made on ``device``."""
        S, M, g = self.size, self.num_shapes, generator

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=g).to(device)

        c0, c1, angle = rand(n, 3, 1, 1), rand(n, 3, 1, 1), rand(n, 1, 1, 1) * (2 * math.pi)
        cx, cy, rx, ry = rand(n, M, 1, 1), rand(n, M, 1, 1), rand(n, M, 1, 1), rand(n, M, 1, 1)
        is_ellipse, present, colours = rand(n, M, 1, 1) < 0.5, rand(n, M, 1, 1) < 0.8, rand(n, M, 3)
        coarse = torch.randn(n, 3, max(2, S // 16), max(2, S // 16), generator=g).to(device)
        noise = torch.randn(n, 3, S, S, generator=g).to(device)
        strength = rand(n, 2, 1, 1)

        line = torch.linspace(0.0, 1.0, S, device=device)
        xs, ys = line.view(1, 1, 1, S), line.view(1, 1, S, 1)
        # 1. a linear gradient between two random colours in a random direction
        ramp = xs * angle.cos() + ys * angle.sin()  # (n, 1, S, S)
        lo = angle.cos().clamp(max=0) + angle.sin().clamp(max=0)  # ramp's min and max over the square
        hi = angle.cos().clamp(min=0) + angle.sin().clamp(min=0)
        image = c0 + (c1 - c0) * (ramp - lo) / (hi - lo).clamp_min(1e-6)
        # 2. up to M ellipses and rectangles, painted in order (the last covering shape wins)
        dx = (xs - cx) / (0.05 + 0.3 * rx)  # (n, M, 1, S)
        dy = (ys - cy) / (0.05 + 0.3 * ry)  # (n, M, S, 1)
        inside = torch.where(is_ellipse, dx * dx + dy * dy <= 1.0, (dx.abs() <= 1.0) & (dy.abs() <= 1.0))
        inside &= present
        order = torch.arange(1, M + 1, device=device, dtype=torch.uint8).view(1, M, 1, 1)
        top = (inside * order).amax(dim=1)  # (n, S, S): 1 + index of the top shape, 0 = none
        palette = torch.cat([torch.zeros(n, 1, 3, device=device), colours], dim=1)  # (n, M + 1, 3)
        painted = torch.gather(palette, 1, top.long().flatten(1)[..., None].expand(-1, -1, 3))
        painted = painted.view(n, S, S, 3).permute(0, 3, 1, 2)
        image = torch.where((top > 0)[:, None], painted, image)
        # 3. low-frequency colour texture and fine noise, of random strengths
        texture = F.interpolate(coarse, size=(S, S), mode="bilinear", align_corners=False)
        image = image + 0.12 * strength[:, :1] * texture + 0.06 * strength[:, 1:] * noise
        return image.clamp(0.0, 1.0)
