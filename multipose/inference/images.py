"""Images and crops: a colour image read as RGB, and the square crops the encoder takes, cut around boxes (the AAE's
windows) -- the same for the evaluation's BOP images and for poses of users' own images."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from multipose.data.views import crop_square, crop_windows
from multipose.infra.errors import DataError

__all__ = ["crop_boxes", "read_rgb"]


def read_rgb(path: Path) -> np.ndarray:
    """A colour (or grey, 8/16-bit) test image as ``(H, W, 3)`` uint8 RGB; :class:`DataError` if unreadable."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot read this image")
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)



def crop_boxes(image: np.ndarray, boxes: torch.Tensor, size: int, pad_factor: float) -> torch.Tensor:
    """The encoder's crops of ``image (H, W, 3)`` uint8 RGB at ``boxes (B, 4)`` ``[u_min, v_min, u_max, v_max]``
    (pixel centres at integers): squares of side ``pad_factor * max(w, h)`` about each box's centre
    (:func:`~multipose.data.views.crop_windows`), resampled bilinearly to ``size`` pixels, 0 outside the image:
    ``(B, 3, size, size)`` float32 in [0, 1]."""
    windows = crop_windows(boxes.double(), torch.zeros(len(boxes), 2, dtype=torch.float64), pad_factor)
    crops = [crop_square(image, w.tolist(), size, cv2.INTER_LINEAR) for w in windows]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous().float() / 255.0
