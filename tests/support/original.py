"""The original repository's formats, written independently from its description (``Model.py``,
``utils/tools.py``, ``train.py`` of shbe-aau/multi-pose-estimation), for tests of our compatibility."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def original_state_dict(K: int, code: int = 128, seed: int = 0, num_objects: int = 1,
                        classify: bool = False) -> dict[str, torch.Tensor]:
    """A state dict with the names and shapes of the original's ``Model`` (``Model.py``: l01..l04 and
    l1 of width 128, l2 128 -> 64, l3 64 -> N * K * 7, batch norms bn01..bn04, bn1, bn2; with ``classify`` its
    final version's classifier c1 (code -> 128), bnc1, c2 (128 -> 64), bnc2, c3 (64 -> N)), random values."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"l01": (128, code), "l02": (128, code + 128), "l03": (128, 256), "l04": (128, 256),
              "l1": (128, 256), "l2": (64, 128), "l3": (num_objects * K * 7, 64)}
    norms = [("bn01", 128), ("bn02", 128), ("bn03", 128), ("bn04", 128), ("bn1", 128), ("bn2", 64)]
    if classify:
        shapes |= {"c1": (128, code), "c2": (64, 128), "c3": (num_objects, 64)}
        norms += [("bnc1", 128), ("bnc2", 64)]
    state = {}
    for name, (out, inp) in shapes.items():
        state[f"{name}.weight"] = torch.randn(out, inp, generator=g) / inp**0.5
        state[f"{name}.bias"] = torch.randn(out, generator=g) * 0.1
    for name, n in norms:
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(n, generator=g)
        state[f"{name}.bias"] = 0.1 * torch.randn(n, generator=g)
        state[f"{name}.running_mean"] = 0.1 * torch.randn(n, generator=g)
        state[f"{name}.running_var"] = 1 + torch.rand(n, generator=g)
        state[f"{name}.num_batches_tracked"] = torch.tensor(7)
    return state


def _lin(state: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def _bn(state: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    s = {k: state[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    return (x - s["running_mean"]) / torch.sqrt(s["running_var"] + 1e-5) * s["weight"] + s["bias"]


def _original_raw(state: dict[str, torch.Tensor], x0: torch.Tensor) -> torch.Tensor:
    """The original's ``l3`` output in eval mode: the dense trunk of ``Model.py``, from its description."""
    x1 = F.relu(_bn(state, "bn01", _lin(state, "l01", x0)))
    x2 = F.relu(_bn(state, "bn02", _lin(state, "l02", torch.cat([x0, x1], 1))))
    x3 = F.relu(_bn(state, "bn03", _lin(state, "l03", torch.cat([x1, x2], 1))))
    x4 = F.relu(_bn(state, "bn04", _lin(state, "l04", torch.cat([x2, x3], 1))))
    x = F.relu(_bn(state, "bn1", _lin(state, "l1", torch.cat([x3, x4], 1))))
    return _lin(state, "l3", F.relu(_bn(state, "bn2", _lin(state, "l2", x))))


def original_forward(state: dict[str, torch.Tensor], x0: torch.Tensor, K: int) -> torch.Tensor:
    """The original's forward pass in eval mode, written from its description, on a raw state dict:
    ``(B, 128) -> (B, K * 7)`` = softmax confidences then K 6D vectors."""
    y = _original_raw(state, x0)
    return torch.cat([torch.softmax(y[:, :K], 1), y[:, K:]], 1)


def original_multi_object_forward(state: dict[str, torch.Tensor], x0: torch.Tensor, K: int, N: int) -> torch.Tensor:
    """The final version's forward of N objects in eval mode, from its description: ``(B, 128) -> (B, [N +]
    N * K * 7)``: the classifier's softmax when it has one, then N * K confidences (softmax within each
    object's K), then the N objects' K 6D vectors (object-major)."""
    y = _original_raw(state, x0)
    confs = torch.softmax(y[:, : N * K].reshape(-1, N, K), dim=2).reshape(-1, N * K)
    out = torch.cat([confs, y[:, N * K:]], 1)
    if "c3.weight" in state:
        c = F.relu(_bn(state, "bnc1", _lin(state, "c1", x0)))
        classes = _lin(state, "c3", F.relu(_bn(state, "bnc2", _lin(state, "c2", c))))
        out = torch.cat([torch.softmax(classes, 1), out], 1)
    return out


def ortho6d_columns(v: np.ndarray) -> np.ndarray:
    """The original's 6D decoding (Zhou et al.): Gram-Schmidt vectors stacked as *columns*."""
    x = v[:3] / np.linalg.norm(v[:3])
    z = np.cross(x, v[3:])
    z /= np.linalg.norm(z)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)
