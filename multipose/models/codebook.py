"""The AAE codebook: read a rotation from a code by nearest-neighbour search (the pose-head baseline).

Sundermeyer et al. (ECCV 2018) encode clean renders of the object at M rotations once; a test code
gets the rotation of the most cosine-similar codebook code. The AAE used 2,562 viewpoints on a sphere
x 36 in-plane rotations = 92,232 entries; :func:`codebook_rotations` builds that grid the same way
(the vertices of a refined icosahedron, :func:`~multipose.core.geometry.icosphere_points`).

Memory: :attr:`Codebook.nbytes` = ``M * D * 4 + M * 9 * 4`` bytes (float32 codes and rotations; 47.2 MB
+ 3.3 MB for M = 92,232, D = 128). A lookup of B codes is one ``(B, D) @ (D, M)`` product plus top-k,
so it also holds a ``(B, M)`` similarity matrix (``4 * B * M`` bytes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from multipose.core.geometry import camera_rotation_from_sphere_point, icosphere_points
from multipose.infra.atomic import atomic_torch_save
from multipose.models.encoder import l2_normalize
from multipose.models.weights import ModelFileError, read_torch_file

__all__ = ["CODEBOOK_FORMAT", "Codebook", "CodebookMatch", "build_codebook", "codebook_rotations"]

#: ``format`` tag of saved codebooks.
CODEBOOK_FORMAT = "multipose-codebook"
_CODEBOOK_VERSION = 1


def codebook_rotations(num_views: int = 2562, num_inplane: int = 36) -> torch.Tensor:
    """The AAE's rotation grid: cameras on at least ``num_views`` sphere points, each rolled by
    ``num_inplane`` in-plane angles ``360 * j / num_inplane`` degrees: ``() -> (V * num_inplane, 3, 3)``
    float32.

    ``V`` is the number of :func:`~multipose.core.geometry.icosphere_points` (the smallest refined
    icosahedron with at least ``num_views`` vertices: 2,562 for the AAE's 2,562);
    the rotations are model-to-camera (:func:`~multipose.core.geometry.camera_rotation_from_sphere_point`),
    entry ``v * num_inplane + j`` is view ``v`` at in-plane angle ``j``.
    """
    if num_views < 1 or num_inplane < 1:
        raise ValueError(f"need num_views >= 1 and num_inplane >= 1, got {num_views}, {num_inplane}")
    points = torch.from_numpy(icosphere_points(num_views))
    views = points.shape[0]
    angles = torch.arange(num_inplane, dtype=torch.float64) * (360.0 / num_inplane)
    R = camera_rotation_from_sphere_point(
        points.repeat_interleave(num_inplane, dim=0), angles.repeat(views)
    )
    return R.to(torch.float32)


@dataclass(frozen=True)
class CodebookMatch:
    """The ``k`` best codebook entries per query, best first.

    ``rotations``: ``(B, k, 3, 3)``; ``similarity``: cosine similarity ``(B, k)`` in [-1, 1];
    ``index``: codebook rows ``(B, k)`` (int64).
    """

    rotations: torch.Tensor
    similarity: torch.Tensor
    index: torch.Tensor


class Codebook(nn.Module):
    """Unit codes ``(M, D)`` of clean renders and their rotations ``(M, 3, 3)``, as buffers.

    ``Codebook(codes, rotations)`` L2-normalises ``codes`` (``normalize=False``: they already are, as
    when loading) and stores both as float32 (move it with ``.to(device)``). ``codebook(codes)``
    returns the best rotation per query ``(B, D) -> (B, 3, 3)``; :meth:`lookup` returns the top-k
    with similarities.
    """

    codes: torch.Tensor
    rotations: torch.Tensor

    def __init__(self, codes: torch.Tensor, rotations: torch.Tensor, *, normalize: bool = True) -> None:
        super().__init__()
        if codes.dim() != 2 or codes.shape[0] < 1:
            raise ValueError(f"codes must have shape (M, D) with M >= 1, got {tuple(codes.shape)}")
        if rotations.shape != (codes.shape[0], 3, 3):
            raise ValueError(
                f"rotations must have shape ({codes.shape[0]}, 3, 3) to match codes, got {tuple(rotations.shape)}"
            )
        codes = codes.detach().to(torch.float32)
        self.register_buffer("codes", (l2_normalize(codes) if normalize else codes).contiguous())
        self.register_buffer("rotations", rotations.detach().to(torch.float32).contiguous())

    @property
    def num_entries(self) -> int:
        """M."""
        return self.codes.shape[0]

    @property
    def code_size(self) -> int:
        """D."""
        return self.codes.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes held: ``M * D * 4 + M * 9 * 4`` (float32 codes and rotations)."""
        return self.codes.nbytes + self.rotations.nbytes

    def similarity(self, codes: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each query to every entry: ``(B, D) -> (B, M)``."""
        if codes.dim() != 2 or codes.shape[1] != self.code_size:
            raise ValueError(f"expected codes of shape (B, {self.code_size}), got {tuple(codes.shape)}")
        return l2_normalize(codes.to(self.codes.dtype)) @ self.codes.T

    def lookup(self, codes: torch.Tensor, k: int = 1) -> CodebookMatch:
        """The ``k`` most similar entries per query: ``(B, D) -> CodebookMatch`` (``(B, k, ...)``)."""
        if not 1 <= k <= self.num_entries:
            raise ValueError(f"k must be in [1, {self.num_entries}], got {k}")
        sim = self.similarity(codes)
        if k == 1:
            best, index = sim.max(dim=1, keepdim=True)
        else:
            best, index = sim.topk(k, dim=1)
        return CodebookMatch(rotations=self.rotations[index], similarity=best, index=index)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """The rotation of the most similar entry: ``(B, D) -> (B, 3, 3)``."""
        return self.lookup(codes, k=1).rotations[:, 0]

    def extra_repr(self) -> str:
        return f"entries={self.num_entries}, code_size={self.code_size}, nbytes={self.nbytes}"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``{"format": "multipose-codebook", "version": 1, "codes", "rotations"}`` atomically (CPU)."""
        return atomic_torch_save(
            {"format": CODEBOOK_FORMAT, "version": _CODEBOOK_VERSION,
             "codes": self.codes.cpu(), "rotations": self.rotations.cpu()},
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Codebook:
        """Read a file written by :meth:`save` (on the CPU); problems raise :class:`ModelFileError`."""
        path = Path(path)
        payload = read_torch_file(path, "codebook file")
        if not isinstance(payload, dict) or payload.get("format") != CODEBOOK_FORMAT:
            raise ModelFileError(f"{path}: not a multipose codebook file (expected format '{CODEBOOK_FORMAT}')")
        if payload.get("version") != _CODEBOOK_VERSION:
            raise ModelFileError(f"{path}: codebook file version {payload.get('version')!r}; this multipose "
                                 f"reads version {_CODEBOOK_VERSION}")
        codes, rotations = payload.get("codes"), payload.get("rotations")
        for name, value in (("codes", codes), ("rotations", rotations)):
            if not isinstance(value, torch.Tensor):
                raise ModelFileError(f"{path}: missing tensor '{name}'")
        assert isinstance(codes, torch.Tensor) and isinstance(rotations, torch.Tensor)  # checked just above
        try:
            codebook = cls(codes, rotations, normalize=False)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        norms = codebook.codes.norm(dim=1)
        if not torch.isfinite(codebook.codes).all() or not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            raise ModelFileError(f"{path}: tensor 'codes' is not unit length (or not finite)")
        return codebook


def build_codebook(
    encode: Callable[[torch.Tensor], torch.Tensor], rotations: torch.Tensor, batch_size: int = 256
) -> Codebook:
    """Encode every rotation and store the codes: ``encode((b, 3, 3)) -> (b, D)``, ``rotations (M, 3, 3)``.

    ``encode`` renders clean views at the given rotations and runs the encoder (the caller owns
    rendering and device); it is called under ``torch.no_grad()`` on chunks of ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with torch.no_grad():
        codes = [encode(chunk).detach().to("cpu", torch.float32) for chunk in rotations.split(batch_size)]
    return Codebook(torch.cat(codes), rotations.cpu())
