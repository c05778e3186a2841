"""Tensor records: frozen dataclasses of tensors that share a first dimension (one row per sample), with the
row selection, device moves, concatenation and shape checks written once.

A record lists the fields that are not per row in ``SHARED`` (kept as they are: metadata, a symmetry group);
every other field is a tensor ``(N, ...)`` or None (absent)::

    @dataclass(frozen=True)
    class Views(TensorRecord):
        rgb: torch.Tensor   # (N, 3, S, S)
        R: torch.Tensor     # (N, 3, 3)

    views.take(torch.tensor([0, 2]))     # rows 0 and 2
    Views.cat([a, b]); views.to("cuda")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, ClassVar, TypeVar

import torch

__all__ = ["TensorRecord"]

R = TypeVar("R", bound="TensorRecord")


class TensorRecord:
    """Base of the tensor records (see the module docstring); subclasses are dataclasses."""

    #: Fields that are not per row: kept as they are by :meth:`take` and :meth:`cat` (taken from the first part).
    SHARED: ClassVar[frozenset[str]] = frozenset()

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def _is_row(self, name: str, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and name not in self.SHARED

    def __len__(self) -> int:
        return next(int(v.shape[0]) for k, v in self._values().items() if self._is_row(k, v))

    def take(self: R, index: torch.Tensor | slice) -> R:
        """The rows at ``index`` (a ``(n,)`` tensor of row numbers or a slice)."""
        def pick(value: torch.Tensor) -> torch.Tensor:
            return value[index] if isinstance(index, slice) else value[index.to(value.device)]

        return type(self)(**{k: pick(v) if self._is_row(k, v) else v for k, v in self._values().items()})

    def to(self: R, device: torch.device | str) -> R:
        """Every tensor on ``device``."""
        return type(self)(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self._values().items()})

    @classmethod
    def cat(cls: type[R], parts: Sequence[R]) -> R:
        """The rows of ``parts`` one after the other (the fields in ``SHARED`` from the first part)."""
        first = parts[0]._values()
        return cls(**{k: torch.cat([getattr(p, k) for p in parts]) if parts[0]._is_row(k, v) else v
                      for k, v in first.items()})

    def check_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Raise ValueError naming the first field (of ``shapes``, None skipped) whose shape is not the one given."""
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != tuple(shape):
                raise ValueError(f"{name} must be {tuple(shape)}, got {tuple(value.shape)}")
