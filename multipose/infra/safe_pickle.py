"""Reading pickles without running code from them.

``pickle.load`` calls whatever a file names, so a pickle from elsewhere (the original's validation
sets, rotation files and ``.npy`` weights) is read with :class:`ArraysOnlyUnpickler`: it rebuilds
NumPy arrays and scalars, and torch tensors (the original pickled some rotations as tensors; their
storage bytes are read with ``torch.load(weights_only=True)``, not torch's own unrestricted loader),
inside Python's own containers, numbers and strings, and refuses any other global with
:class:`ForbiddenPickle` (nothing else named by the file is imported or called).
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import IO, Any

__all__ = ["ArraysOnlyUnpickler", "ForbiddenPickle", "load_arrays_only"]

# (module, name) -> (module to import, name): everything NumPy needs to unpickle arrays, nothing else.
# Old files name ``numpy.core``; NumPy 2 moved it to ``numpy._core`` (importing the old name warns).
_SAFE_GLOBALS: Mapping[tuple[str, str], tuple[str, str]] = {
    **{(m, n): ("numpy._core.multiarray", n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
       for n in ("_reconstruct", "scalar")},
    **{(m, "_frombuffer"): ("numpy._core.numeric", "_frombuffer")
       for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # bytes in protocol-2 pickles
}


def _storage_from_bytes(data: bytes) -> Any:
    """What a pickled torch storage holds, read with ``weights_only=True`` (torch's own
    ``torch.storage._load_from_bytes`` reads it with ``weights_only=False``)."""
    import torch  # lazy: NumPy-only pickles need no torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor_v2(*args: Any) -> Any:
    from torch._utils import _rebuild_tensor_v2  # at call time: torch's private helper, looked up when used

    return _rebuild_tensor_v2(*args)


#: Globals answered with a function of ours (a safe version, or a plain container).
_SAFE_CALLABLES: Mapping[tuple[str, str], Callable[..., Any]] = {
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): OrderedDict,
}


class ForbiddenPickle(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (NumPy arrays and plain containers)."""


class ArraysOnlyUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that rebuilds only NumPy arrays, scalars and dtypes (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_CALLABLES:
            return _SAFE_CALLABLES[module, name]
        target = _SAFE_GLOBALS.get((module, name))
        if target is None:
            raise ForbiddenPickle(
                f"it pickles {module}.{name}; only NumPy arrays, tensors, numbers, strings, lists and dicts are read"
            )
        return getattr(import_module(target[0]), target[1])


def load_arrays_only(file: IO[bytes], encoding: str = "latin1") -> Any:
    """Unpickle ``file`` with :class:`ArraysOnlyUnpickler` (``latin1``: Python 2 pickles too)."""
    return ArraysOnlyUnpickler(file, encoding=encoding).load()
