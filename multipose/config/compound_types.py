"""INI value types of the config keys that hold several numbers or a structured string: translations, view
lists, intrinsics, ranges, int lists, object ids and ``VIEW_SAMPLING`` (the scalar types:
:mod:`multipose.config.types`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multipose.config.types import _finite_number, _freeze, _Invalid, _json, _num, _triple
from multipose.core.settings import VIEW_SAMPLING_METHODS, ViewSampling

#: Methods of the original that depend on data it did not distribute.
_VIEW_SAMPLING_REFUSED = {
    "viewsphere": "the original's viewsphere reads its data/view-sphere.p, which it does not distribute; "
    "give that file itself as VIEW_SAMPLING (a .p path), or use viewsphere-aug",
}
_VIEW_SAMPLING_FILES = (".npy", ".p", ".pkl", ".pickle")
_VIEW_SAMPLING_SUFFIXES = ("-hard", "-reuse")


@dataclass(frozen=True)
class TranslationType:
    """``auto`` -> None; ``[x, y, z]`` or ``[[x, y, z]]`` -> (x, y, z); ``[[x, y, z], ...]`` (one triple per object,
    as the original's final version) -> a tuple of N triples."""

    summary: str = "auto, or JSON [x, y, z] / [[x, y, z], ...] (one per object) in mm, z > 0"
    expected: str = "auto, or [x, y, z], or [[x, y, z], ...] with one triple per object, in mm with z > 0"

    def parse(self, text: str) -> tuple[float, float, float] | tuple[tuple[float, float, float], ...] | None:
        if text.lower() == "auto":
            return None
        if not text.startswith("["):
            raise _Invalid()
        value = _json(text)
        triples = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
        parsed = tuple(_triple(v) for v in triples)
        if any(t[2] <= 0 for t in parsed):
            raise _Invalid("z must be > 0: the object must be in front of the camera")
        return parsed[0] if len(parsed) == 1 else parsed

    def format(self, value: tuple | None) -> str:
        if value is None:
            return "auto"
        return json.dumps([list(v) for v in value]) if isinstance(value[0], tuple) else json.dumps(list(value))


@dataclass(frozen=True)
class ViewsType:
    """K as an int, or the original's JSON list whose *length* is K (its values are ignored)."""

    summary: str = "int >= 1, or non-empty JSON list (its length is K)"
    expected: str = "an int >= 1 or a non-empty JSON list whose length is the number of hypotheses K"

    def parse(self, text: str) -> int | tuple[Any, ...]:
        if not text.startswith("["):
            try:
                k = int(text)
            except ValueError:
                raise _Invalid() from None
            if k < 1:
                raise _Invalid()
            return k
        value = _json(text)
        if not isinstance(value, list) or not value:
            raise _Invalid("the list is empty")
        return _freeze(value)

    def format(self, value: int | tuple[Any, ...]) -> str:
        return str(value) if isinstance(value, int) else json.dumps(value)


@dataclass(frozen=True)
class EulerListType:
    summary: str = "JSON list of [x, y, z] Euler angles (degrees)"
    expected: str = "a non-empty JSON list of [x, y, z] Euler angles in degrees, e.g. [[0, 0, 0], [90, 0, 0]]"

    def parse(self, text: str) -> tuple[tuple[float, float, float], ...]:
        value = _json(text)
        if not isinstance(value, list) or not value:
            raise _Invalid()
        return tuple(_triple(v) for v in value)

    def format(self, value: tuple[tuple[float, float, float], ...]) -> str:
        return json.dumps([list(v) for v in value])


@dataclass(frozen=True)
class IntrinsicsType:
    """Pinhole intrinsics: a JSON list of 9 numbers (row-major) or a 3x3 nested list, stored as a
    tuple of 9 floats; fx, fy > 0 and the last row ``[0, 0, 1]``."""

    summary: str = "JSON 3x3 matrix (9 numbers, row-major), fx, fy > 0, last row [0, 0, 1]"
    expected: str = (
        "a JSON list of 9 numbers [fx, 0, cx, 0, fy, cy, 0, 0, 1] (or a 3x3 nested list) with "
        "fx, fy > 0 and last row [0, 0, 1]"
    )

    def parse(self, text: str) -> tuple[float, ...]:
        value = _json(text)
        if isinstance(value, list) and len(value) == 3 and all(isinstance(r, list) for r in value):
            value = [x for row in value for x in row] if all(len(r) == 3 for r in value) else None
        if not isinstance(value, list) or len(value) != 9:
            raise _Invalid("need 9 numbers")
        k = tuple(_finite_number(v) for v in value)
        if k[0] <= 0 or k[4] <= 0:
            raise _Invalid("the focal lengths fx, fy must be > 0")
        if k[6:] != (0.0, 0.0, 1.0):
            raise _Invalid("the last row must be [0, 0, 1]")
        return k

    def format(self, value: tuple[float, ...]) -> str:
        return json.dumps(list(value))


@dataclass(frozen=True)
class FloatRangeType:
    """A JSON pair ``[low, high]`` of floats with ``low <= high``, inside ``[min, max]`` when given."""

    min: float | None = None
    max: float | None = None

    @property
    def summary(self) -> str:
        if self.min is not None and self.max is not None:
            return f"JSON [low, high], {_num(self.min)} <= low <= high <= {_num(self.max)}"
        if self.min is not None:
            return f"JSON [low, high], {_num(self.min)} <= low <= high"
        return "JSON [low, high], low <= high"

    @property
    def expected(self) -> str:
        return "a " + self.summary.replace("JSON [low, high],", "JSON list [low, high] with")

    def parse(self, text: str) -> tuple[float, float]:
        value = _json(text)
        if not isinstance(value, list) or len(value) != 2:
            raise _Invalid("need two numbers")
        low, high = (_finite_number(v) for v in value)
        if low > high:
            raise _Invalid("low is above high")
        if (self.min is not None and low < self.min) or (self.max is not None and high > self.max):
            raise _Invalid()
        return (low, high)

    def format(self, value: tuple[float, float]) -> str:
        return json.dumps(list(value))


@dataclass(frozen=True)
class IntListType:
    """A JSON list of exactly ``length`` ints >= ``min``, stored as a tuple."""

    length: int
    min: int = 1

    @property
    def summary(self) -> str:
        return f"JSON list of {self.length} ints >= {self.min}"

    @property
    def expected(self) -> str:
        return f"a JSON list of {self.length} ints >= {self.min}"

    def parse(self, text: str) -> tuple[int, ...]:
        value = _json(text)
        if not isinstance(value, list) or len(value) != self.length:
            raise _Invalid(f"need {self.length} numbers")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < self.min for v in value):
            raise _Invalid()
        return tuple(value)

    def format(self, value: tuple[int, ...]) -> str:
        return json.dumps(list(value))


@dataclass(frozen=True)
class ObjectIdsType:
    """BOP object ids: an int >= 1, or a JSON list of N (one per object of a head, list order = object index),
    stored as an int for one object and a tuple of N ints for several; ``all`` (every object of ``[Evaluation]
    CHECKPOINTS``) stays ``"all"``."""

    summary: str = "int >= 1, JSON list of ints >= 1 (one per object), or all"
    expected: str = "an object id >= 1, a JSON list of ids >= 1 with one per object (e.g. [5, 10, 17]), or all"

    def parse(self, text: str) -> int | tuple[int, ...] | str:
        if text.lower() == "all":
            return "all"
        value = _json(text) if text.startswith("[") else text
        if not isinstance(value, list):
            try:
                value = [int(value)]
            except ValueError:
                raise _Invalid() from None
        if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
            raise _Invalid()
        if len(set(value)) != len(value):
            raise _Invalid("an id appears twice")
        return value[0] if len(value) == 1 else tuple(value)

    def format(self, value: int | tuple[int, ...] | str) -> str:
        return json.dumps(list(value)) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class CheckpointMapType:
    """A JSON object of BOP object id -> a ``train.py`` run folder or a checkpoint file in one, stored as a tuple of
    ``(id, path)`` pairs in increasing id."""

    summary: str = 'JSON object {"obj_id": run folder or checkpoint}'
    expected: str = 'a JSON object of object id -> run folder or checkpoint, e.g. {"1": "output/obj01", "2": ...}'

    def parse(self, text: str) -> tuple[tuple[int, str], ...] | None:
        if not text:
            return None
        value = _json(text)
        if not isinstance(value, dict) or not value:
            raise _Invalid()
        try:
            pairs = sorted((int(k), v) for k, v in value.items())
        except ValueError:
            raise _Invalid("its keys must be object ids") from None
        if len({k for k, _ in pairs}) != len(pairs):
            raise _Invalid("an object id appears twice")
        if any(k < 1 or not isinstance(v, str) or not v for k, v in pairs):
            raise _Invalid("ids >= 1, each with a path")
        return tuple(pairs)

    def format(self, value: tuple[tuple[int, str], ...] | None) -> str:
        return "" if value is None else json.dumps({str(k): v for k, v in value})


def _parse_view_sampling(text: str) -> ViewSampling:
    base, found = text, set()
    while True:
        suffix = next((s for s in _VIEW_SAMPLING_SUFFIXES if base.lower().endswith(s)), None)
        if suffix is None or suffix in found:
            break
        found.add(suffix)
        base = base[: -len(suffix)]
    if base.lower() in VIEW_SAMPLING_METHODS:
        base = base.lower()
    elif base.lower() in _VIEW_SAMPLING_REFUSED:
        raise _Invalid(_VIEW_SAMPLING_REFUSED[base.lower()])
    elif not base.lower().endswith(_VIEW_SAMPLING_FILES) or Path(base).name.lower() in _VIEW_SAMPLING_FILES:
        raise _Invalid()
    return ViewSampling(base, hard="-hard" in found, reuse="-reuse" in found)


@dataclass(frozen=True)
class ViewSamplingType:
    summary: str = (
        ", ".join(VIEW_SAMPLING_METHODS) + ", or a .npy/.p/.pkl/.pickle path; optional suffixes -hard, -reuse"
    )
    expected: str = (
        "one of " + ", ".join(VIEW_SAMPLING_METHODS) + " or a path to a .npy/.p/.pkl/.pickle file of "
        "rotations, optionally followed by -hard and/or -reuse (e.g. sundermeyer-random-hard)"
    )

    def parse(self, text: str) -> str:
        vs = _parse_view_sampling(text)
        return vs.base + ("-hard" if vs.hard else "") + ("-reuse" if vs.reuse else "")

    def format(self, value: str) -> str:
        return value
