"""Reading pickles without running code from them.

``pickle.load`` calls whatever a file names, so a pickle from elsewhere (the original's validation
sets, rotation files and ``.npy`` weights) is read with :class:`ArraysOnlyUnpickler`: it rebuilds
NumPy arrays and scalars inside Python's own containers, numbers and strings, and refuses any other
global with :class:`ForbiddenPickle` (nothing named by the file is imported or called).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
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


class ForbiddenPickle(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (NumPy arrays and plain containers)."""


class ArraysOnlyUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that rebuilds only NumPy arrays, scalars and dtypes (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        target = _SAFE_GLOBALS.get((module, name))
        if target is None:
            raise ForbiddenPickle(
                f"it pickles {module}.{name}; only NumPy arrays, numbers, strings, lists and dicts are read"
            )
        return getattr(import_module(target[0]), target[1])


def load_arrays_only(file: IO[bytes], encoding: str = "latin1") -> Any:
    """Unpickle ``file`` with :class:`ArraysOnlyUnpickler` (``latin1``: Python 2 pickles too)."""
    return ArraysOnlyUnpickler(file, encoding=encoding).load()
