"""The original repository's formats, written independently from its description (``Model.py``,
``utils/tools.py``, ``train.py`` of shbe-aau/multi-pose-estimation), for tests of our compatibility."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def original_state_dict(K: int, code: int = 128, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the names and shapes of the original's ``Model`` (``Model.py``: l01..l04 and
    l1 of width 128, l2 128 -> 64, l3 64 -> K * 7, batch norms bn01..bn04, bn1, bn2), random values."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"l01": (128, code), "l02": (128, code + 128), "l03": (128, 256), "l04": (128, 256),
              "l1": (128, 256), "l2": (64, 128), "l3": (K * 7, 64)}
    state = {}
    for name, (out, inp) in shapes.items():
        state[f"{name}.weight"] = torch.randn(out, inp, generator=g) / inp**0.5
        state[f"{name}.bias"] = torch.randn(out, generator=g) * 0.1
    for name, n in [("bn01", 128), ("bn02", 128), ("bn03", 128), ("bn04", 128), ("bn1", 128), ("bn2", 64)]:
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(n, generator=g)
        state[f"{name}.bias"] = 0.1 * torch.randn(n, generator=g)
        state[f"{name}.running_mean"] = 0.1 * torch.randn(n, generator=g)
        state[f"{name}.running_var"] = 1 + torch.rand(n, generator=g)
        state[f"{name}.num_batches_tracked"] = torch.tensor(7)
    return state


def original_forward(state: dict[str, torch.Tensor], x0: torch.Tensor, K: int) -> torch.Tensor:
    """The original's forward pass in eval mode, written from its description, on a raw state dict:
    ``(B, 128) -> (B, K * 7)`` = softmax confidences then K 6D vectors."""
    def lin(name, x):
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    def bn(name, x):
        s = {k: state[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
        return (x - s["running_mean"]) / torch.sqrt(s["running_var"] + 1e-5) * s["weight"] + s["bias"]

    x1 = F.relu(bn("bn01", lin("l01", x0)))
    x2 = F.relu(bn("bn02", lin("l02", torch.cat([x0, x1], 1))))
    x3 = F.relu(bn("bn03", lin("l03", torch.cat([x1, x2], 1))))
    x4 = F.relu(bn("bn04", lin("l04", torch.cat([x2, x3], 1))))
    x = F.relu(bn("bn1", lin("l1", torch.cat([x3, x4], 1))))
    x = F.relu(bn("bn2", lin("l2", x)))
    y = lin("l3", x)
    return torch.cat([torch.softmax(y[:, :K], 1), y[:, K:]], 1)


def ortho6d_columns(v: np.ndarray) -> np.ndarray:
    """The original's 6D decoding (Zhou et al.): Gram-Schmidt vectors stacked as *columns*."""
    x = v[:3] / np.linalg.norm(v[:3])
    z = np.cross(x, v[3:])
    z /= np.linalg.norm(z)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)
