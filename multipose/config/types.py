"""INI value types of the configuration: each parses a key's text to a Python value and formats it
back (format -> parse is the identity); a bad value raises :class:`_Invalid` with what was expected."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Protocol


class _Invalid(ValueError):
    """Raised by a value type's ``parse``; ``detail`` (optional) says what exactly is wrong."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class ValueType(Protocol):
    """What every value type provides."""

    @property
    def summary(self) -> str:
        """Short description for the reference table, e.g. ``int >= 1``."""
        ...

    @property
    def expected(self) -> str:
        """The phrase after "expected" in an error, e.g. ``an int >= 1``."""
        ...

    def parse(self, text: str) -> Any:
        """Parse stripped INI text; raise :class:`_Invalid` when it is not valid."""
        ...

    def format(self, value: Any) -> str:
        """Write ``value`` as INI text that :meth:`parse` reads back to an equal value."""
        ...


def _num(x: float) -> str:
    return f"{x:g}"


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ": the list closes before its last line" if exc.msg == "Extra data" else ""
        raise _Invalid(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} of the value{hint}"
        ) from None


def _finite_number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise _Invalid(f"{json.dumps(x)} is not a finite number")
    return float(x)


def _triple(x: Any) -> tuple[float, float, float]:
    if not isinstance(x, list) or len(x) != 3:
        raise _Invalid(f"{json.dumps(x)} is not a list of 3 numbers")
    a, b, c = (_finite_number(v) for v in x)
    return (a, b, c)


def _freeze(x: Any) -> Any:
    """JSON value -> immutable value (lists become tuples)."""
    if isinstance(x, list):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, dict):
        raise _Invalid("JSON objects are not allowed here")
    return x


@dataclass(frozen=True)
class IntType:
    min: int | None = None
    max: int | None = None

    @property
    def summary(self) -> str:
        if self.min is not None and self.max is not None:
            return f"int in [{self.min}, {self.max}]"
        if self.min is not None:
            return f"int >= {self.min}"
        return "int"

    @property
    def expected(self) -> str:
        return "an " + self.summary

    def parse(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _Invalid() from None
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise _Invalid()
        return value

    def format(self, value: int) -> str:
        return str(value)


@dataclass(frozen=True)
class FloatType:
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    @property
    def summary(self) -> str:
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            left = "[" if self.min_inclusive else "("
            right = "]" if self.max_inclusive else ")"
            return f"float in {left}{_num(lo)}, {_num(hi)}{right}"
        if lo is not None:
            return f"float {'>=' if self.min_inclusive else '>'} {_num(lo)}"
        if hi is not None:
            return f"float {'<=' if self.max_inclusive else '<'} {_num(hi)}"
        return "float"

    @property
    def expected(self) -> str:
        return "a " + self.summary

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _Invalid() from None
        if not math.isfinite(value):
            raise _Invalid("not a finite number")
        lo, hi = self.min, self.max
        if lo is not None and (value < lo or (value == lo and not self.min_inclusive)):
            raise _Invalid()
        if hi is not None and (value > hi or (value == hi and not self.max_inclusive)):
            raise _Invalid()
        return value

    def format(self, value: float) -> str:
        return repr(value)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True)
class BoolType:
    summary: str = "bool (true/false, yes/no, on/off, 1/0)"
    expected: str = "a bool: true/false, yes/no, on/off or 1/0"

    def parse(self, text: str) -> bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise _Invalid()

    def format(self, value: bool) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class ChoiceType:
    choices: tuple[str, ...]

    @property
    def summary(self) -> str:
        return "one of " + ", ".join(self.choices)

    @property
    def expected(self) -> str:
        return self.summary

    def parse(self, text: str) -> str:
        low = text.lower()
        if low not in self.choices:
            raise _Invalid()
        return low

    def format(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class PathType:
    """A file or folder path, stored as the string written (relative to the working directory)."""

    summary: str = "path"
    expected: str = "a path"

    def parse(self, text: str) -> str:
        if not text:
            raise _Invalid()
        return text

    def format(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class PathListType:
    """A path or a JSON list of paths, stored as a tuple of strings.

    ``max_len``: the most paths allowed (None: any number). Empty strings in a list are dropped (the
    originals wrote ``[""]`` for "none"); an empty result is ``None`` where
    ``allow_empty``, else an error.
    """

    max_len: int | None = None
    allow_empty: bool = False

    @property
    def summary(self) -> str:
        return "path, or JSON list of one path" if self.max_len == 1 else "path, or JSON list of paths"

    @property
    def expected(self) -> str:
        if self.max_len == 1:
            return 'a path or a JSON list of one path, e.g. ["./data/obj_10.ply"]'
        return 'a path or a JSON list of paths, e.g. ["./data/a.p", "./data/b.p"]'

    def parse(self, text: str) -> tuple[str, ...] | None:
        if text.startswith("["):
            items = _json(text)
            if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
                raise _Invalid("the list must hold strings")
            paths = tuple(p.strip() for p in items if p.strip())
        else:
            paths = (text,) if text else ()
        if self.max_len is not None and len(paths) > self.max_len:
            raise _Invalid(f"got {len(paths)} paths, at most {self.max_len} allowed")
        if not paths and not self.allow_empty:
            raise _Invalid()
        return paths or None

    def format(self, value: tuple[str, ...]) -> str:
        if len(value) == 1 and not value[0].startswith("["):
            return value[0]
        return json.dumps(list(value))


@dataclass(frozen=True)
class ModelPathType:
    """The CAD model of each object: a path, or the original's JSON list of N paths (one per object, list
    order = object index), stored as a string for one object and a tuple of N strings for several;
    ``allow_empty``: empty (or ``[""]``) is None."""

    allow_empty: bool = False
    summary: str = "path, or JSON list of paths (one per object)"
    expected: str = 'a path or a JSON list of paths, one per object, e.g. ["./data/obj_10.ply"]'

    def parse(self, text: str) -> str | tuple[str, ...] | None:
        paths = PathListType(allow_empty=self.allow_empty).parse(text)
        if not paths:
            return None
        return paths[0] if len(paths) == 1 else paths

    def format(self, value: str | tuple[str, ...]) -> str:
        if isinstance(value, tuple):
            return json.dumps(list(value))
        return json.dumps([value]) if value.startswith("[") else value  # a path that looks like a list


@dataclass(frozen=True)
class EncoderWeightsType:
    summary: str = "auto, or a .npy / .pt / .pth path"
    expected: str = "auto, or a path to a .npy (original AAE weights) or .pt/.pth file"

    def parse(self, text: str) -> str:
        if text.lower() == "auto":
            return "auto"
        if not text.lower().endswith((".npy", ".pt", ".pth")):
            raise _Invalid()
        return text

    def format(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class BackgroundType:
    summary: str = "folder, or procedural"
    expected: str = "a folder of JPEG/PNG images, or procedural (or empty)"

    def parse(self, text: str) -> str:
        return "procedural" if text.lower() in ("", "procedural") else text

    def format(self, value: str) -> str:
        return value


