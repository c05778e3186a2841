"""The experiment configuration: one table (:data:`SCHEMA`) owns every key's type, default and meaning.

Files are INI, read with :mod:`configparser` like the original research code, so existing
``experiment_template.cfg`` files run unchanged::

    [Training]
    NUM_ITER: 201
    LEARNING_RATE: 1e-3

Reading rules:

- section and key names match case-insensitively; keys are stored upper-case, as the originals write them;
- ``KEY: value`` or ``KEY = value``; a value may continue on indented lines (joined, then JSON-parsed
  where the key takes a list); full-line ``#`` / ``;`` comments; a key set twice is an error;
- an empty value means "unset" only for keys marked optional; every other key must hold a valid value;
- a key missing from the file takes its default (every key has one, so old files stay valid);
- an unknown section or key is an error that suggests the closest known name: a typo never silently
  falls back to a default. Keys the original used that multipose does not need are accepted with a warning;
- nothing is ``eval``-ed; lists are ``json.loads``-ed.

Every error is a :class:`multipose.errors.ConfigError` with a one-line message::

    exp.cfg: [Training] NUM_ITER = 'ten': expected an int >= 1
    exp.cfg: [Training] NUM_ITR: unknown key; did you mean NUM_ITER?

Overrides (``SECTION.KEY=VALUE``, e.g. ``--set Training.NUM_ITER=5`` on the command line) replace file
values before parsing, so each is parsed with its key's type and its errors name the ``--set`` argument.

Usage::

    cfg = load_config("experiment.cfg", overrides=["Training.NUM_ITER=5"])
    cfg.Training.NUM_ITER        # 5, also cfg["Training"]["NUM_ITER"]
    cfg.Rendering.T              # None (auto) or (x, y, z) in mm
    num_hypotheses(cfg)          # K
    loss_parameters(cfg)         # LossParameters(depth_max, pose_max, gamma)

Check a file from the shell (prints the resolved configuration, every key, or one ``error:`` line)::

    python -m multipose.config experiment.cfg --set Training.NUM_ITER=5
"""

from __future__ import annotations

import ast
import configparser
import difflib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from multipose.errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DEPTH_MAX",
    "DEFAULT_RADIUS_MM",
    "HARD_POOLS",
    "WEIGHT_INIT_NAMES",
    "DEPRECATED",
    "ENCODER_FILE",
    "SCHEMA",
    "SECTIONS",
    "Config",
    "Key",
    "LossParameters",
    "Section",
    "VIEW_SAMPLING_METHODS",
    "ViewSampling",
    "ENCODER_INPUT_SIZES",
    "check_crop_size",
    "crop_size",
    "encoder_weights_path",
    "default_config",
    "encoder_arch",
    "load_config",
    "load_config_text",
    "loss_parameters",
    "num_hypotheses",
    "render_distance",
    "resolve_device",
    "schema_markdown",
    "view_sampling",
    "write_resolved_config",
]

#: ``[Loss_parameters] DEPTH_MAX`` when neither it nor ``[Training] LOSS_PARAMS`` sets it (mm).
DEFAULT_DEPTH_MAX = 30.0
#: ``[Training] WEIGHT_INIT_NAME`` values: the original's ``Model.init_weights`` names
#: (:data:`multipose.models.head.WEIGHT_INITS` implements them).
WEIGHT_INIT_NAMES = (
    "kaiming_uniform_leakyrelu_fanout",
    "kaiming_normal_leakyrelu_fanout",
    "kaiming_uniform_leakyrelu_fanin",
    "kaiming_uniform_relu_fanout",
    "orthogonal",
)


# --------------------------------------------------------------------------------------------------
# Value types: parse INI text to a Python value and format it back (format -> parse is the identity).
# --------------------------------------------------------------------------------------------------


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

    ``max_len=1`` for the CAD model paths: multipose trains one object per run. Empty strings in a list
    are dropped (the originals wrote ``[""]`` for "none"); an empty result is ``None`` where
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
            raise _Invalid(f"got {len(paths)} paths; multipose trains one object per run")
        if not paths and not self.allow_empty:
            raise _Invalid()
        return paths or None

    def format(self, value: tuple[str, ...]) -> str:
        if len(value) == 1 and not value[0].startswith("["):
            return value[0]
        return json.dumps(list(value))


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


@dataclass(frozen=True)
class TranslationType:
    """``auto`` -> None; ``[x, y, z]`` or ``[[x, y, z]]`` (one triple per model path) -> (x, y, z)."""

    summary: str = "auto, or JSON [x, y, z] / [[x, y, z]] in mm, z > 0"
    expected: str = "auto, or [x, y, z] or [[x, y, z]] in mm with z > 0"

    def parse(self, text: str) -> tuple[float, float, float] | None:
        if text.lower() == "auto":
            return None
        if not text.startswith("["):
            raise _Invalid()
        value = _json(text)
        if isinstance(value, list) and value and isinstance(value[0], list):
            if len(value) != 1:
                raise _Invalid(
                    f"got {len(value)} triples; one per MODEL_PATH_DATA entry, and multipose trains "
                    "one object per run"
                )
            value = value[0]
        t = _triple(value)
        if t[2] <= 0:
            raise _Invalid("z must be > 0: the object must be in front of the camera")
        return t

    def format(self, value: tuple[float, float, float] | None) -> str:
        return "auto" if value is None else json.dumps(list(value))


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


#: ``[Training] VIEW_SAMPLING`` methods: the original's distributions of rotations
#: (:mod:`multipose.data.sampling` implements and documents each).
VIEW_SAMPLING_METHODS = (
    "sundermeyer-random",
    "sphere",
    "sphere-simple",
    "sphere-fixed",
    "sphere-wolfram",
    "sphere-wolfram-fixed",
    "tless",
    "tless-simple",
    "fixed",
    "viewsphere-aug",
    "viewsphere-aug-no-conv",
    "mixed",
    "quat",
)
#: ``[Training] HARD_POOL`` policies of ``-hard`` sampling (:mod:`multipose.data.sampling`).
HARD_POOLS = ("replace", "accumulate")
#: Methods of the original that depend on data it did not distribute.
_VIEW_SAMPLING_REFUSED = {
    "viewsphere": "the original's viewsphere reads its data/view-sphere.p, which it does not distribute; "
    "give that file itself as VIEW_SAMPLING (a .p path), or use viewsphere-aug",
}
_VIEW_SAMPLING_FILES = (".npy", ".p", ".pkl", ".pickle")
_VIEW_SAMPLING_SUFFIXES = ("-hard", "-reuse")


@dataclass(frozen=True)
class ViewSampling:
    """``[Training] VIEW_SAMPLING`` split into its parts.

    ``base``: one of :data:`VIEW_SAMPLING_METHODS`, or a path to a file of rotations
    (``.npy``/``.p``/``.pkl``/``.pickle``); ``hard``: the ``-hard`` suffix; ``reuse``: the ``-reuse`` suffix.
    """

    base: str
    hard: bool = False
    reuse: bool = False

    @property
    def is_file(self) -> bool:
        """Whether ``base`` is a rotation file rather than a method."""
        return self.base not in VIEW_SAMPLING_METHODS


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


# --------------------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One INI key: where it lives, its type, its default (as INI text) and what it means."""

    section: str
    name: str
    type: ValueType
    default: str
    meaning: str
    optional: bool = False  # an empty value means "unset" (None)

    @property
    def expected(self) -> str:
        return self.type.expected + (", or empty (unset)" if self.optional else "")

    def parse(self, text: str) -> Any:
        """Parse INI text (raises :class:`_Invalid`)."""
        text = text.strip()
        if self.optional and not text:
            return None
        return self.type.parse(text)

    def format(self, value: Any) -> str:
        return "" if value is None and self.optional else self.type.format(value)


_INT_GE1 = IntType(min=1)
_FLOAT_GT0 = FloatType(min=0.0, min_inclusive=False)
_PROB = FloatType(min=0.0, max=1.0)

#: Every key multipose reads, in the order written by :meth:`Config.to_ini`.
SCHEMA: tuple[Key, ...] = (
    # [Dataset]
    Key("Dataset", "MODEL_PATH_DATA", PathListType(max_len=1), "./data/cad-files/tless_like_2fold.ply",
        "CAD model (PLY/OBJ, mm) rendered for the training images."),
    Key("Dataset", "MODEL_PATH_LOSS", PathListType(max_len=1, allow_empty=True), "",
        "CAD model rendered by the loss (decimated to LOSS_MESH_FACES); empty: same as MODEL_PATH_DATA.",
        optional=True),
    Key("Dataset", "VALID_DATA_PATH", PathListType(allow_empty=True), "",
        "Validation set file(s): original pickle or generate_dataset.py .npz; empty: generated into the run folder.",
        optional=True),
    Key("Dataset", "ENCODER_WEIGHTS", EncoderWeightsType(), "auto",
        "Frozen encoder weights: .npy (original AAE weights dict), .pt, or auto."),
    Key("Dataset", "BACKGROUND_IMAGES", BackgroundType(), "procedural",
        "Folder of JPEG/PNG background images, or procedural (empty means procedural)."),
    Key("Dataset", "CACHE_DIR", PathType(), "./cache",
        "Where decimated meshes and rendered view caches are stored."),
    Key("Dataset", "CROP_SIZE", IntType(min=8), "",
        "Side of the synthetic training crops (pixels); empty: the encoder's input size (aae 128, small 64; "
        "with ARCH auto, the size stored in a multipose .pt).",
        optional=True),
    Key("Dataset", "K", IntrinsicsType(), "[1075.65, 0, 360, 0, 1073.9, 270, 0, 0, 1]",
        "Base camera intrinsics (OpenCV) of the training renders; crops are cut from its image plane."),
    Key("Dataset", "RADIUS", _FLOAT_GT0, "",
        "Camera distance (mm) of the training renders (the object sits at t = [0, 0, RADIUS]); empty: the z of "
        "an explicit [Rendering] T, as the original, else the AAE's 700.", optional=True),
    Key("Dataset", "PAD_FACTOR", FloatType(min=1.0), "1.2",
        "Side of the square crop window relative to the larger side of the object's 2D box."),
    Key("Dataset", "NOOF_TRAINING_IMGS", IntType(min=0), "10000",
        "Clean views rendered once into the view cache (the training pool); 0: render every batch."),
    Key("Dataset", "NOOF_BG_IMGS", _INT_GE1, "15000", "Most background images loaded from BACKGROUND_IMAGES."),
    Key("Dataset", "NOOF_VALID_IMGS", _INT_GE1, "256",
        "Size of the validation set generated when VALID_DATA_PATH is empty."),
    Key("Dataset", "VIEW_SEED", IntType(min=0, max=2**32 - 1), "0",
        "Seed of the view cache's poses, crop offsets and lights (runs with any RANDOM_SEED share it)."),
    # [Rendering]
    Key("Rendering", "SHADER", ChoiceType(("hard-depth", "soft-depth")), "hard-depth",
        "Depth shader of the loss renderer."),
    Key("Rendering", "FACES_PER_PIXEL", _INT_GE1, "1", "Faces kept per pixel by the rasterizer."),
    Key("Rendering", "NORMALIZE_VERTICES", BoolType(), "false",
        "As the original's data generator: centre the model on its vertex mean and scale it so that its "
        "largest absolute coordinate is 100 mm."),
    Key("Rendering", "IMAGE_SIZE", IntType(min=8), "64",
        "Side of the loss renderer's square depth maps (pixels)."),
    Key("Rendering", "T", TranslationType(), "auto",
        "Object translation for the loss renders (mm); auto: from T_FILL, FOV and the model's size."),
    Key("Rendering", "T_FILL", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.6",
        "With T auto, the fraction of the loss view's width the model's bounding sphere fills."),
    Key("Rendering", "FOV", FloatType(min=0.0, max=180.0, min_inclusive=False, max_inclusive=False), "15.0",
        "Vertical field of view of the loss camera (degrees; the original's renderer used 15)."),
    Key("Rendering", "VIEWS", ViewsType(), "1",
        "Number of pose hypotheses K: an int, or a list whose length is K (the original's form)."),
    Key("Rendering", "LOSS_MESH_FACES", IntType(min=0), "800",
        "Face count of the decimated loss mesh (0 = full mesh)."),
    Key("Rendering", "LOSS_VIEWPOINTS", EulerListType(), "[[0, 0, 0]]",
        "Viewpoint rotations (Euler, degrees) of the multi-view loss; the depth term is averaged over them."),
    Key("Rendering", "DEPTH_GRADIENT", ChoiceType(("auto", "torch", "pytorch3d")), "auto",
        "Depth gradients: torch (recomputed from pix_to_face), pytorch3d (its backward), auto (per device)."),
    # [Training]
    Key("Training", "NUM_ITER", _INT_GE1, "100", "Number of epochs."),
    Key("Training", "NUM_SAMPLES", _INT_GE1, "1000", "Training samples per epoch."),
    Key("Training", "BATCH_SIZE", _INT_GE1, "32", "Training batch size."),
    Key("Training", "LEARNING_RATE", _FLOAT_GT0, "1e-3",
        "Adam learning rate, constant as the original (unless LR_STEP_EPOCHS, or LOW/HIGH, are set)."),
    Key("Training", "LEARNING_RATE_LOW", _FLOAT_GT0, "",
        "With LEARNING_RATE_HIGH: the original's one-cycle policy over NUM_ITER epochs, stepped per epoch: "
        "LOW -> HIGH -> LOW over the first 90 % of the epochs, then down to LOW x 0.01.", optional=True),
    Key("Training", "LEARNING_RATE_HIGH", _FLOAT_GT0, "",
        "With LEARNING_RATE_LOW: the peak of the one-cycle policy.", optional=True),
    Key("Training", "LR_STEP_EPOCHS", _INT_GE1, "",
        "Step schedule (not in the original): LEARNING_RATE times LR_STEP_GAMMA every LR_STEP_EPOCHS epochs; "
        "empty: constant.", optional=True),
    Key("Training", "LR_STEP_GAMMA", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.5",
        "Factor applied to the learning rate every LR_STEP_EPOCHS epochs (step schedule)."),
    Key("Training", "KEEP_CHECKPOINTS", _INT_GE1, "3",
        "Newest epoch checkpoints kept in OUTPUT_PATH/models (model-best.pt is kept too)."),
    Key("Training", "NUM_SAVED_IMAGES", IntType(min=0), "4",
        "With SAVE_IMAGES: validation samples (and hardest samples) drawn per epoch."),
    Key("Training", "LOSS", ChoiceType(("vsd-union", "vsd-union-var-gamma")), "vsd-union",
        "Multi-pose loss: gamma = 1/K (vsd-union) or gamma from GAMMA / LOSS_PARAMS (var-gamma)."),
    Key("Training", "LOSS_PARAMS", _FLOAT_GT0, "",
        "Original form: depth clamp in mm for vsd-union, gamma for vsd-union-var-gamma.", optional=True),
    Key("Training", "VIEW_SAMPLING", ViewSamplingType(), "sundermeyer-random",
        "How training rotations are drawn: one of the original's methods (docs/data.md, Synthetic training data) "
        "or a rotation file."),
    Key("Training", "HARD_MINING_RATIO", FloatType(min=0.0, max=1.0), "0.3",
        "With -hard sampling: the worst int(ratio x batch) samples of each batch (by loss) are kept for "
        "re-use (the original's 0.3)."),
    Key("Training", "HARD_SAMPLE_RATIO", FloatType(min=0.0, max=1.0), "0.2",
        "With -hard sampling: probability that a sample is a kept hard one, while any are left (the original's 0.2)."),
    Key("Training", "HARD_POOL", ChoiceType(HARD_POOLS), "replace",
        "With -hard sampling: replace (the original's: each batch's hard samples replace the pool, emptied every "
        "epoch) or accumulate (they join it, up to 10,000, across epochs)."),
    Key("Training", "OUTPUT_PATH", PathType(), "./output/default",
        "Run folder: config, checkpoints, metrics, images."),
    Key("Training", "RANDOM_SEED", IntType(min=0, max=2**32 - 1), "10", "Seed for torch, NumPy and Python."),
    Key("Training", "POSE_REPRESENTATION", ChoiceType(("6d-pose", "quat")), "6d-pose",
        "Rotation parametrisation of the pose head's output."),
    Key("Training", "WEIGHT_INIT_NAME", ChoiceType(WEIGHT_INIT_NAMES), "",
        "Initialisation of the pose head's linear weights (torch.nn.init, as the original's names); empty: "
        "PyTorch's default.", optional=True),
    Key("Training", "INIT_CHECKPOINT", PathType(), "",
        "Start a new run from the head weights of this checkpoint (ours, or a models/model-epochN.pt of the "
        "original's train.py); empty: a fresh head.", optional=True),
    Key("Training", "SAVE_IMAGES", BoolType(), "true", "Save example input and depth images while training."),
    Key("Training", "EARLY_STOPPING", BoolType(), "false",
        "Stop when the moving average of the validation loss stops improving (STOPPING_WINDOW, STOPPING_TIME_LIMIT)."),
    Key("Training", "STOPPING_WINDOW", _INT_GE1, "10",
        "Early stopping: length (epochs) of the moving average of validation losses, as the original."),
    Key("Training", "STOPPING_TIME_LIMIT", IntType(min=0), "10",
        "Early stopping: epochs without a new lowest moving average before training stops (the original's patience)."),
    Key("Training", "MAX_HOURS", _FLOAT_GT0, "",
        "Stop training after the epoch that passes this many hours of training (not in the original); empty: no limit.",
        optional=True),
    Key("Training", "MAX_REL_OFFSET", FloatType(min=0.0, max=1.0, max_inclusive=False), "0.2",
        "Random crop offset relative to the object's bounding box."),
    Key("Training", "AUGMENT_IMGS", BoolType(), "true", "Augment the training images."),
    Key("Training", "DEVICE", ChoiceType(("auto", "cpu", "cuda")), "auto",
        "Device: auto uses CUDA when available, else the CPU."),
    # [Augmentation] (the AAE's imgaug set, applied in this order; each op on a sample with its PROB)
    Key("Augmentation", "AFFINE_PROB", _PROB, "0.5", "Probability of a random zoom about the crop centre."),
    Key("Augmentation", "AFFINE_SCALE", FloatRangeType(min=0.1), "[1.0, 1.2]", "Zoom factor range."),
    Key("Augmentation", "DROPOUT_PROB", _PROB, "0.2",
        "Probability of coarse dropout: cells of a coarse grid set to black."),
    Key("Augmentation", "DROPOUT_RATE", FloatRangeType(min=0.0, max=1.0), "[0.2, 0.2]",
        "Fraction of the grid cells dropped."),
    Key("Augmentation", "DROPOUT_SIZE", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.05",
        "Dropout grid resolution relative to the crop (imgaug size_percent; 0.05: 6x6 cells at 128 px)."),
    Key("Augmentation", "CUTOUT_PROB", _PROB, "0.4",
        "Probability of a cut-out: one square filled with a random grey, colour or white."),
    Key("Augmentation", "CUTOUT_SIZE", FloatRangeType(min=0.0, max=1.0), "[0.2, 0.2]",
        "Side of the cut-out square relative to the crop."),
    Key("Augmentation", "BLUR_PROB", _PROB, "0.5", "Probability of a Gaussian blur."),
    Key("Augmentation", "BLUR_SIGMA", FloatRangeType(min=0.0), "[0.0, 1.2]", "Blur sigma range (pixels)."),
    Key("Augmentation", "ADD_PROB", _PROB, "0.5",
        "Probability of adding a brightness offset (per channel for 30% of those samples)."),
    Key("Augmentation", "ADD_RANGE", FloatRangeType(min=-1.0, max=1.0), "[-0.098, 0.098]",
        "Brightness offset range (intensities in [0, 1]; the AAE's +-25 of 255)."),
    Key("Augmentation", "INVERT_PROB", _PROB, "0.3",
        "Probability of colour inversion (then each channel is inverted with probability 0.2)."),
    Key("Augmentation", "MULTIPLY_PROB", _PROB, "0.5",
        "Probability of each of two brightness multiplications (the first per channel half the time)."),
    Key("Augmentation", "MULTIPLY_RANGE", FloatRangeType(min=0.0), "[0.6, 1.4]", "Brightness factor range."),
    Key("Augmentation", "CONTRAST_PROB", _PROB, "0.5",
        "Probability of a contrast change about mid-grey (per channel for 30% of those samples)."),
    Key("Augmentation", "CONTRAST_RANGE", FloatRangeType(min=0.0), "[0.5, 2.2]", "Contrast factor range."),
    Key("Augmentation", "SQUARE_OCCLUSION_PROB", _PROB, "0.0",
        "Training crops: probability of square occluders cut out of the object, showing the background (the "
        "original's DatasetGeneratorSquareOcc: 0.7); 0: off."),
    Key("Augmentation", "SQUARE_OCCLUSION_GRID", _INT_GE1, "3",
        "Square occluders: cells per side of the coarse grid (imgaug's 3 x 3 at 128 px)."),
    Key("Augmentation", "SQUARE_OCCLUSION_RATE", _PROB, "0.4", "Square occluders: probability that a cell is cut."),
    Key("Augmentation", "SQUARE_OCCLUSION_MAX", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.25",
        "Square occluders: a draw must cut less than this share of the object's pixels (else it is drawn again)."),
    # [Encoder] (architecture presets and their numbers: multipose/models/encoder.py)
    Key("Encoder", "ARCH", ChoiceType(("auto", "aae", "small")), "auto",
        "Encoder: aae (original, 128 px), small (CPU preset, 64 px); auto: a .pt's own, aae for .npy, else small."),
    Key("Encoder", "CHANNELS", IntListType(length=4), "",
        "Channels of the 4 stride-2 convolutions; empty: ARCH's (aae [128, 256, 512, 512], small [32, 64, 128, 128]).",
        optional=True),
    Key("Encoder", "LATENT_SIZE", _INT_GE1, "", "Size of the encoder's code; empty: ARCH's (128).", optional=True),
    Key("Encoder", "BATCH_NORMALIZATION", BoolType(), "",
        "Batch norm after each convolution's ReLU; empty: ARCH's (true).", optional=True),
    Key("Encoder", "BOOTSTRAP_RATIO", _INT_GE1, "4",
        "Pretraining loss: squared error averaged over the worst 1/BOOTSTRAP_RATIO of each image (1: plain MSE)."),
    # Encoder pretraining (train_encoder.py; names and meaning of the AAE's [Training] section)
    Key("Encoder", "NUM_ITER", _INT_GE1, "1500",
        "Pretraining iterations (batches); the AAE trained 40000 on a GPU, 1500 take ~14 min on a 2-core CPU."),
    Key("Encoder", "BATCH_SIZE", IntType(min=2), "64", "Pretraining batch size (>= 2 for batch norm)."),
    Key("Encoder", "LEARNING_RATE", _FLOAT_GT0, "2e-4", "Adam learning rate of pretraining (constant)."),
    Key("Encoder", "SAVE_INTERVAL", _INT_GE1, "100",
        "Pretraining: checkpoint, loss curve and reconstruction preview every SAVE_INTERVAL iterations (and "
        "at the end)."),
    Key("Encoder", "LOG_INTERVAL", _INT_GE1, "10",
        "Pretraining: mean loss of every LOG_INTERVAL iterations written to OUTPUT_PATH/encoder/train-loss.csv."),
    # [Loss_parameters]
    Key("Loss_parameters", "DEPTH_MAX", _FLOAT_GT0, "",
        f"Depth error clamp d_max (mm); empty: LOSS_PARAMS for vsd-union, else {_num(DEFAULT_DEPTH_MAX)}.",
        optional=True),
    Key("Loss_parameters", "POSE_MAX", _FLOAT_GT0, "40.0",
        "Angle (degrees) beyond which two hypotheses no longer pay the diversity penalty."),
    Key("Loss_parameters", "DEPTH_NORMALIZATION", ChoiceType(("union", "image")), "union",
        "Depth term's denominator: the union of both silhouettes (the authors' corrected code), or every "
        "pixel of the image (the paper-era code; the depth term then shrinks with the object's share of "
        "the image, so the diversity term weighs relatively more)."),
    Key("Loss_parameters", "GAMMA", FloatType(min=0.0), "",
        "Confidence weight gamma; empty: 1/K (vsd-union) or LOSS_PARAMS (vsd-union-var-gamma).",
        optional=True),
    # [Evaluation]
    Key("Evaluation", "BATCH_SIZE", _INT_GE1, "50", "Evaluation batch size."),
    Key("Evaluation", "SAVE_IMAGES", BoolType(), "true",
        "Save evaluation figures (recall curves, rotation-error histogram, examples)."),
    Key("Evaluation", "TEST_DATA_PATH", PathType(), "",
        "Test set: empty (synthetic samples like the validation set's), a dataset file (.npz or the original's "
        "pickle) or a BOP split folder (e.g. tless/test_primesense).", optional=True),
    Key("Evaluation", "AFTER_TRAINING", BoolType(), "true",
        "train.py evaluates models/model-best.pt when training ends (results in OUTPUT_PATH/evaluation)."),
    Key("Evaluation", "NUM_SAMPLES", _INT_GE1, "100",
        "Test samples generated when TEST_DATA_PATH is empty; for a file or BOP folder, at most this many "
        "(evenly spaced)."),
    Key("Evaluation", "OBJ_ID", _INT_GE1, "",
        "BOP object id to evaluate (needed with a BOP folder, e.g. 10 for T-LESS obj_000010).", optional=True),
    Key("Evaluation", "MODELS_INFO", PathType(), "",
        "BOP models_info.json giving the object's symmetries (symmetry-aware rotation error); empty: looked for "
        "beside a BOP folder (models*/models_info.json), else none.", optional=True),
    Key("Evaluation", "MIN_VISIB_FRACT", FloatType(min=0.0, max=1.0), "0.1",
        "BOP: ground-truth instances with a smaller visible fraction are skipped (BOP's 0.1)."),
    Key("Evaluation", "VSD_DELTA", _FLOAT_GT0, "15.0", "VSD visibility tolerance delta (mm)."),
    Key("Evaluation", "VSD_TAU", _FLOAT_GT0, "20.0", "VSD misalignment tolerance tau (mm)."),
    Key("Evaluation", "VSD_THRESHOLD", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.3",
        "A pose is correct when its VSD error is below this (the recall's threshold)."),
    Key("Evaluation", "VSD_MESH_FACES", IntType(min=0), "0",
        "Faces of the mesh rendered for VSD (quadric decimation, cached in CACHE_DIR); 0: the full MODEL_PATH_DATA."),
    Key("Evaluation", "CODEBOOK_BASELINE", BoolType(), "false",
        "Also evaluate the AAE codebook baseline (nearest code among clean renders; evaluate.py --baseline codebook)."),
    Key("Evaluation", "CODEBOOK_VIEWS", _INT_GE1, "2562",
        "Codebook: at least this many viewpoints on the sphere, the vertices of a refined icosahedron as in "
        "the AAE (12, 42, 162, 642, 2562, ...)."),
    Key("Evaluation", "CODEBOOK_INPLANE", _INT_GE1, "36",
        "Codebook: in-plane rotations per viewpoint (the AAE's 36: 2562 x 36 = 92,232 entries)."),
    Key("Evaluation", "NUM_EXAMPLES", IntType(min=0), "8",
        "With SAVE_IMAGES: test samples drawn in examples.png (input, GT depth, top hypothesis)."),
    # [Sampling]
    Key("Sampling", "NUM_SAMPLES", _INT_GE1, "2000", "Points on the sphere for the loss landscape."),
    Key("Sampling", "REFERENCE_NUM", IntType(min=0), "500",
        "Index of the reference pose (modulo the number of samples)."),
    Key("Sampling", "INPLANE_STEPS", _INT_GE1, "1", "In-plane rotations per sphere point."),
    Key("Sampling", "BATCH_SIZE", _INT_GE1, "64", "Batch size of the landscape renders."),
)

#: Section names, in file order.
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in SCHEMA))

_KEYS: Mapping[tuple[str, str], Key] = MappingProxyType({(k.section, k.name): k for k in SCHEMA})
_SECTION_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {s: tuple(k.name for k in SCHEMA if k.section == s) for s in SECTIONS}
)

#: Keys of the original repository that multipose accepts and ignores (with a warning).
DEPRECATED: Mapping[tuple[str, str], str] = MappingProxyType({
    ("Dataset", "TRAIN_DATA_PATH"): "training images are rendered on the fly",
})


# --------------------------------------------------------------------------------------------------
# The Config object
# --------------------------------------------------------------------------------------------------


def _suggest(word: str, candidates: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


class Section(Mapping[str, Any]):
    """The values of one INI section: ``section.KEY`` or ``section["KEY"]``; read-only."""

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    @property
    def name(self) -> str:
        return self._name

    def _missing(self, key: str) -> str:
        hint = _suggest(key, list(self._values))
        return f"[{self._name}] has no key {key}" + (f"; did you mean {hint}?" if hint else "")

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key.upper()]
        except (KeyError, AttributeError):
            raise KeyError(self._missing(str(key))) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(self._missing(name)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Config is immutable; use overrides (--set SECTION.KEY=VALUE) instead")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a Config is immutable")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Section, (self._name, self._values))

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {self._values!r})"


class Config(Mapping[str, Section]):
    """A validated, immutable configuration: ``cfg.Training.NUM_ITER`` or ``cfg["Training"]["NUM_ITER"]``.

    Holds every key of :data:`SCHEMA` (missing keys at their defaults). Build one with
    :func:`load_config`, :func:`load_config_text` or :func:`default_config`. Two configs are equal when
    all their values are (where they were read from does not matter).
    """

    __slots__ = ("_sections", "_source", "_label", "_origins")

    def __init__(
        self,
        values: Mapping[str, Mapping[str, Any]],
        source: Path | None = None,
        label: str = "<defaults>",
        origins: Mapping[tuple[str, str], tuple[str, str]] | None = None,
    ) -> None:
        """Internal: use the loaders. ``origins`` maps (section, key) -> (where set, raw text)."""
        object.__setattr__(self, "_sections", {s: Section(s, v) for s, v in values.items()})
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_origins", MappingProxyType(dict(origins or {})))

    @property
    def source(self) -> Path | None:
        """The file this config was read from (None for defaults or text)."""
        return self._source

    def origin(self, section: str, key: str) -> str:
        """Where a value was set: the ``--set`` argument, else the file (or ``<defaults>``)."""
        return self._origins.get((section, key), (self._label, ""))[0]

    def _shown(self, section: str, key: str) -> str:
        """The value as the user wrote it (for error messages), else its formatted value."""
        raw = self._origins.get((section, key))
        return _one_line(raw[1]) if raw else _KEYS[section, key].format(self._sections[section][key])

    def __getitem__(self, section: str) -> Section:
        try:
            return self._sections[_canonical_section(section) or section]
        except (KeyError, AttributeError):
            hint = _suggest(str(section), SECTIONS)
            raise KeyError(
                f"no section [{section}]" + (f"; did you mean [{hint}]?" if hint else "")
            ) from None

    def __getattr__(self, name: str) -> Section:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._sections[name]
        except KeyError:
            hint = _suggest(name, SECTIONS)
            raise AttributeError(
                f"no section [{name}]" + (f"; did you mean [{hint}]?" if hint else "")
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Config is immutable; use overrides (--set SECTION.KEY=VALUE) instead")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a Config is immutable")

    def __iter__(self) -> Iterator[str]:
        return iter(self._sections)

    def __len__(self) -> int:
        return len(self._sections)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Config, (self.to_dict(), self._source, self._label, dict(self._origins)))

    def __repr__(self) -> str:
        return f"Config(source={self._label!r}, {self.to_dict()!r})"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {KEY: value}}`` of plain Python values (tuples, str, int, float, bool, None)."""
        return {s: dict(sec) for s, sec in self._sections.items()}

    def to_ini(self) -> str:
        """Every key of the schema with its resolved value; :func:`load_config_text` reads it back equal."""
        lines = [
            "# multipose configuration, fully resolved (every key, defaults included).",
            f"# Read from: {self._label}. Reference: multipose/config.py (SCHEMA).",
        ]
        for section in SECTIONS:
            lines += ["", f"[{section}]"]
            for name in _SECTION_KEYS[section]:
                key = _KEYS[section, name]
                text = key.format(self._sections[section][name])
                lines.append(f"# {key.meaning}")
                lines.append(f"{name}: {text}" if text else f"{name}:")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 100) -> str:
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad_value(where: str, key: Key, text: str, detail: str = "") -> ConfigError:
    msg = f"{where}: [{key.section}] {key.name} = '{_one_line(text)}': expected {key.expected}"
    return ConfigError(msg + (f" ({detail})" if detail else ""))


def _canonical_section(name: str) -> str | None:
    low = name.strip().lower()
    return next((s for s in SECTIONS if s.lower() == low), None)


def _unknown_section(where: str, name: str) -> ConfigError:
    hint = _suggest(name, SECTIONS)
    tail = f"did you mean [{hint}]?" if hint else "known sections: " + ", ".join(f"[{s}]" for s in SECTIONS)
    return ConfigError(f"{where}: [{name}]: unknown section; {tail}")


def _unknown_key(where: str, section: str, name: str) -> ConfigError:
    elsewhere = [k.section for k in SCHEMA if k.name == name]
    close_here = _suggest(name, _SECTION_KEYS[section])
    if close_here:
        tail = f"did you mean {close_here}?"
    elif elsewhere:
        tail = f"did you mean [{elsewhere[0]}] {name}?"
    else:
        anywhere = _suggest(name, [k.name for k in SCHEMA])
        if anywhere:
            sec = next(k.section for k in SCHEMA if k.name == anywhere)
            tail = f"did you mean [{sec}] {anywhere}?"
        else:
            tail = f"known keys in [{section}]: " + ", ".join(_SECTION_KEYS[section])
    return ConfigError(f"{where}: [{section}] {name}: unknown key; {tail}")


def _lookup(where: str, section: str, name: str, notes: list[str]) -> tuple[str, str] | None:
    """(canonical section, KEY) of a known key; None for a deprecated one (noted in ``notes``)."""
    canonical = _canonical_section(section)
    if canonical is None:
        raise _unknown_section(where, section.strip())
    key = name.strip().upper()
    if (canonical, key) in DEPRECATED:
        notes.append(
            f"{where}: [{canonical}] {key} is not used by multipose ({DEPRECATED[canonical, key]}); remove it"
        )
        return None
    if (canonical, key) not in _KEYS:
        raise _unknown_key(where, canonical, key)
    return canonical, key


class _IniParser(configparser.ConfigParser):
    """Strict, no interpolation, keys upper-cased, and no magic ``[DEFAULT]`` section."""

    def __init__(self) -> None:
        super().__init__(interpolation=None, strict=True, default_section="\x00no-default-section")

    def optionxform(self, optionstr: str) -> str:
        return optionstr.upper()


def _read_ini(text: str, where: str, notes: list[str]) -> dict[tuple[str, str], str]:
    """INI text -> {(canonical section, KEY): raw value}; syntax, unknown and duplicate names raise.

    Deprecated keys are left out and noted in ``notes`` (logged once the whole config is valid).
    """
    parser = _IniParser()
    try:
        parser.read_string(text, source=where)
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"{where}:{exc.lineno}: [{exc.section}] {exc.option}: duplicate key; "
            "set each key once per section"
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(
            f"{where}:{exc.lineno}: [{exc.section}]: duplicate section; write each section once"
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"{where}:{exc.lineno}: '{_one_line(exc.line)}': a value before any [Section] header; "
            "expected a section header such as [Training] first"
        ) from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0]
        raise ConfigError(
            f"{where}:{lineno}: {_one_line(str(line))}: cannot parse this line; "
            "expected 'KEY: value', '[Section]' or a '#' comment (continuation lines are indented)"
        ) from None
    except configparser.Error as exc:
        raise ConfigError(f"{where}: {_one_line(str(exc), 300)}") from None

    if {s.lower() for s in parser.sections()} & _AAE_ONLY_SECTIONS:
        return _read_aae(parser, where, notes)
    raw: dict[tuple[str, str], str] = {}
    seen: dict[str, str] = {}
    for section in parser.sections():
        canonical = _canonical_section(section)
        if canonical is None:
            raise _unknown_section(where, section)
        if canonical in seen:
            raise ConfigError(
                f"{where}: [{section}]: duplicate section (also written [{seen[canonical]}]); "
                "write each section once"
            )
        seen[canonical] = section
        for name, value in parser.items(section, raw=True):
            found = _lookup(where, canonical, name, notes)
            if found is not None:
                raw[found] = value
    return raw


# --------------------------------------------------------------------------------------------------
# The Augmented Autoencoder's training config (aae_encoder_test.cfg), read as an encoder-pretraining config
# --------------------------------------------------------------------------------------------------

#: Sections only the AAE's config has; a file with one of them is read by :func:`_read_aae`.
_AAE_ONLY_SECTIONS = frozenset({"paths", "network", "embedding", "queue"})


def _aae_number_list(text: str) -> str:
    """A list of numbers that may hold arithmetic (the AAE's ``K: [1075.65, 0, 720/2, ...]``) as JSON,
    evaluated without executing anything: only numbers, + - * / and parentheses are allowed."""
    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        ops = {ast.Add: float.__add__, ast.Sub: float.__sub__, ast.Mult: float.__mul__, ast.Div: float.__truediv__}
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](float(value(node.left)), float(value(node.right)))
        raise _Invalid("only numbers and + - * / are allowed")

    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise _Invalid("not a list of numbers") from None
    if not isinstance(tree, (ast.List, ast.Tuple)):
        raise _Invalid("not a list of numbers")
    try:
        return json.dumps([value(e) for e in tree.elts])
    except ZeroDivisionError:
        raise _Invalid("division by zero") from None


def _aae_background_folder(text: str) -> str:
    """``BACKGROUND_IMAGES_GLOB`` (``/data/VOC2012/JPEGImages/*.jpg``) -> the folder it globs."""
    return os.path.dirname(text) if any(c in text for c in "*?[") else text


def _aae_required(expected: str) -> Callable[[str], None]:
    """A key whose only supported value is ``expected`` (compared case-insensitively, spaces ignored)."""
    def check(text: str) -> None:
        if text.replace(" ", "").lower() != expected.replace(" ", "").lower():
            raise _Invalid(f"multipose's encoder supports only {expected}")

    return check


#: (AAE section, KEY) -> (our section, KEY, value transform) for keys that carry over; a callable
#: alone checks a setting multipose cannot change; None: not used (listed in one note).
_AAE_KEYS: Mapping[tuple[str, str], Any] = MappingProxyType({
    ("Paths", "MODEL_PATH"): ("Dataset", "MODEL_PATH_DATA", str),
    ("Paths", "BACKGROUND_IMAGES_GLOB"): ("Dataset", "BACKGROUND_IMAGES", _aae_background_folder),
    ("Dataset", "MODEL"): None,
    ("Dataset", "H"): ("Dataset", "CROP_SIZE", str),
    ("Dataset", "W"): ("Dataset", "CROP_SIZE", str),
    ("Dataset", "C"): _aae_required("3"),
    ("Dataset", "RADIUS"): ("Dataset", "RADIUS", str),
    ("Dataset", "RENDER_DIMS"): None,
    ("Dataset", "K"): ("Dataset", "K", _aae_number_list),
    ("Dataset", "VERTEX_SCALE"): _aae_required("1"),
    ("Dataset", "ANTIALIASING"): None,
    ("Dataset", "PAD_FACTOR"): ("Dataset", "PAD_FACTOR", str),
    ("Dataset", "CLIP_NEAR"): None,
    ("Dataset", "CLIP_FAR"): None,
    ("Dataset", "NOOF_TRAINING_IMGS"): ("Dataset", "NOOF_TRAINING_IMGS", str),
    ("Dataset", "NOOF_BG_IMGS"): ("Dataset", "NOOF_BG_IMGS", str),
    ("Augmentation", "REALISTIC_OCCLUSION"): _aae_required("False"),
    ("Augmentation", "SQUARE_OCCLUSION"): _aae_required("False"),
    ("Augmentation", "MAX_REL_OFFSET"): ("Training", "MAX_REL_OFFSET", str),
    ("Augmentation", "CODE"): None,  # imgaug code: never executed; the [Augmentation] keys are its pipeline
    ("Embedding", "EMBED_BB"): None,
    ("Embedding", "MIN_N_VIEWS"): ("Evaluation", "CODEBOOK_VIEWS", str),
    ("Embedding", "NUM_CYCLO"): ("Evaluation", "CODEBOOK_INPLANE", str),
    ("Network", "BATCH_NORMALIZATION"): ("Encoder", "BATCH_NORMALIZATION", str),
    ("Network", "AUXILIARY_MASK"): _aae_required("False"),
    ("Network", "VARIATIONAL"): _aae_required("0"),
    ("Network", "LOSS"): _aae_required("L2"),
    ("Network", "BOOTSTRAP_RATIO"): ("Encoder", "BOOTSTRAP_RATIO", str),
    ("Network", "NORM_REGULARIZE"): _aae_required("0"),
    ("Network", "LATENT_SPACE_SIZE"): ("Encoder", "LATENT_SIZE", str),
    ("Network", "NUM_FILTER"): ("Encoder", "CHANNELS", str),
    ("Network", "STRIDES"): _aae_required("[2, 2, 2, 2]"),
    ("Network", "KERNEL_SIZE_ENCODER"): _aae_required("5"),
    ("Network", "KERNEL_SIZE_DECODER"): _aae_required("5"),
    ("Training", "OPTIMIZER"): _aae_required("Adam"),
    ("Training", "NUM_ITER"): ("Encoder", "NUM_ITER", str),
    ("Training", "BATCH_SIZE"): ("Encoder", "BATCH_SIZE", str),
    ("Training", "LEARNING_RATE"): ("Encoder", "LEARNING_RATE", str),
    ("Training", "SAVE_INTERVAL"): ("Encoder", "SAVE_INTERVAL", str),
    ("Queue", "OPENGL_RENDER_QUEUE_SIZE"): None,
    ("Queue", "NUM_THREADS"): None,
    ("Queue", "QUEUE_SIZE"): None,
})


def _read_aae(parser: configparser.ConfigParser, where: str, notes: list[str]) -> dict[tuple[str, str], str]:
    """The AAE's training config as multipose keys (:data:`_AAE_KEYS`): its [Training] is encoder
    pretraining ([Encoder] here), H x W the crop size (128: ``ARCH aae``, 64: ``small``); nothing in it
    is executed (its imgaug ``CODE`` is ignored: the [Augmentation] keys reproduce that pipeline)."""
    sections = {s.lower(): s for s in _AAE_KEYS_SECTIONS}
    raw: dict[tuple[str, str], str] = {}
    unused = []
    for section in parser.sections():
        canonical = sections.get(section.lower())
        if canonical is None:
            raise ConfigError(f"{where}: [{section}]: unknown section of an AAE config; known: "
                              + ", ".join(f"[{s}]" for s in _AAE_KEYS_SECTIONS))
        for name, text in parser.items(section, raw=True):
            key = name.strip().upper()
            if (canonical, key) not in _AAE_KEYS:
                raise ConfigError(f"{where}: [{canonical}] {key}: unknown key of an AAE config")
            rule = _AAE_KEYS[canonical, key]
            if rule is None:
                unused.append(f"[{canonical}] {key}")
                continue
            try:
                if callable(rule):
                    rule(text.strip())
                    continue
                target_section, target_key, transform = rule
                value = transform(text.strip())
            except _Invalid as exc:
                raise ConfigError(f"{where}: [{canonical}] {key} = '{_one_line(text)}': {exc.detail}") from None
            if (target_section, target_key) in raw and raw[target_section, target_key] != value:
                raise ConfigError(f"{where}: [Dataset] H and W differ ({raw[target_section, target_key]} and {value}); "
                                  "multipose's crops are square")
            raw[target_section, target_key] = value
    size = raw.get(("Dataset", "CROP_SIZE"))
    arch = {v: k for k, v in ENCODER_INPUT_SIZES.items()}.get(int(size)) if size and size.isdigit() else None
    if size is not None and arch is None:
        raise ConfigError(f"{where}: [Dataset] H = {size}: multipose's encoders take "
                          + " or ".join(f"{v} px ({k})" for k, v in ENCODER_INPUT_SIZES.items()))
    if arch is not None:
        raw["Encoder", "ARCH"] = arch
    if unused:
        notes.append(f"{where}: an Augmented Autoencoder config, read for encoder pretraining (train_encoder.py); "
                     f"not used by multipose: {', '.join(unused)}")
    return raw


_AAE_KEYS_SECTIONS = tuple(dict.fromkeys(section for section, _ in _AAE_KEYS))


def _apply_override(
    override: str,
    raw: dict[tuple[str, str], str],
    origins: dict[tuple[str, str], tuple[str, str]],
    notes: list[str],
) -> None:
    where = f"--set {override}"
    lhs, eq, value = override.partition("=")
    section, dot, name = lhs.partition(".")
    if not eq or not dot or not section.strip() or not name.strip():
        raise ConfigError(
            f"--set '{_one_line(override)}': expected SECTION.KEY=VALUE, e.g. --set Training.NUM_ITER=10"
        )
    found = _lookup(where, section, name, notes)
    if found is not None:
        raw[found] = value
        origins[found] = (where, value)


def _build(
    raw: Mapping[tuple[str, str], str],
    source: Path | None,
    label: str,
    origins: Mapping[tuple[str, str], tuple[str, str]],
    check_device: bool = True,
) -> Config:
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    full_origins = dict(origins)
    for key in SCHEMA:
        where = origins.get((key.section, key.name), (label, ""))[0]
        text = raw.get((key.section, key.name), key.default)
        if (key.section, key.name) in raw and (key.section, key.name) not in full_origins:
            full_origins[key.section, key.name] = (label, text)
        try:
            values[key.section][key.name] = key.parse(text)
        except _Invalid as exc:
            raise _bad_value(where, key, text, exc.detail) from None
    # MODEL_PATH_LOSS defaults to the training model.
    if values["Dataset"]["MODEL_PATH_LOSS"] is None:
        values["Dataset"]["MODEL_PATH_LOSS"] = values["Dataset"]["MODEL_PATH_DATA"]
    cfg = Config(values, source, label, full_origins)
    _validate(cfg, check_device)
    return cfg


def _validate(cfg: Config, check_device: bool = True) -> None:
    """Checks that involve several keys, so a bad file fails before any work."""
    low, high = cfg.Training.LEARNING_RATE_LOW, cfg.Training.LEARNING_RATE_HIGH
    if (low is None) != (high is None):
        have, missing = ("LEARNING_RATE_LOW", "LEARNING_RATE_HIGH") if high is None else (
            "LEARNING_RATE_HIGH", "LEARNING_RATE_LOW")
        raise ConfigError(
            f"{cfg.origin('Training', have)}: [Training] {have} = '{cfg._shown('Training', have)}': "
            f"expected [Training] {missing} to be set too (the one-cycle policy runs between LOW and "
            "HIGH), or neither"
        )
    if low is not None and cfg.Training.LR_STEP_EPOCHS is not None:
        raise ConfigError(
            f"{cfg.origin('Training', 'LR_STEP_EPOCHS')}: [Training] LR_STEP_EPOCHS = "
            f"'{cfg._shown('Training', 'LR_STEP_EPOCHS')}': expected it empty with LEARNING_RATE_LOW/HIGH "
            "(the one-cycle policy spans NUM_ITER epochs); remove one of the two schedules"
        )
    if low is not None and high is not None and low >= high:
        raise ConfigError(
            f"{cfg.origin('Training', 'LEARNING_RATE_LOW')}: [Training] LEARNING_RATE_LOW = "
            f"'{cfg._shown('Training', 'LEARNING_RATE_LOW')}': expected less than [Training] "
            f"LEARNING_RATE_HIGH = '{cfg._shown('Training', 'LEARNING_RATE_HIGH')}'"
        )
    loss_parameters(cfg)
    if check_device and cfg.Training.DEVICE == "cuda":
        resolve_device(cfg)


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """Read, validate and resolve an INI config file, then apply ``SECTION.KEY=VALUE`` overrides.

    Raises :class:`~multipose.errors.ConfigError` (one-line message naming file, section, key and value)
    for an unreadable file, INI syntax, unknown names, bad values or inconsistent keys.
    """
    label = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{label}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a folder, expected a config file (INI)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read config file ({exc.strerror or exc})") from None
    return load_config_text(text, source=Path(path), overrides=overrides, label=label)


def load_config_text(
    text: str,
    source: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    *,
    label: str | None = None,
    check_device: bool = True,
) -> Config:
    """Like :func:`load_config` for INI text (e.g. the config stored in a checkpoint).
    ``check_device=False`` accepts ``DEVICE: cuda`` on a machine without CUDA (a run folder's stored
    config, written where the run started: ``DEVICE`` may change when it resumes)."""
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'SECTION.KEY=VALUE' strings, not one string")
    where = label or (os.fspath(source) if source is not None else "<string>")
    notes: list[str] = []
    raw = _read_ini(text, where, notes)
    origins: dict[tuple[str, str], tuple[str, str]] = {}
    for override in overrides:
        _apply_override(override, raw, origins, notes)
    cfg = _build(raw, Path(source) if source is not None else None, where, origins, check_device)
    for note in notes:  # only now: a bad file gets its one error line, not warnings first
        logger.warning("%s", note)
    return cfg


def default_config() -> Config:
    """Every key at its default."""
    return _build({}, None, "<defaults>", {})


def write_resolved_config(cfg: Config, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/config.cfg`` (every key, resolved) atomically; returns its path."""
    from multipose.checkpoint import atomic_write_text  # lazy: checkpoint imports torch

    return atomic_write_text(Path(out_dir) / "config.cfg", cfg.to_ini())


# --------------------------------------------------------------------------------------------------
# Derived values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossParameters:
    """Constants of the multi-pose loss.

    ``depth_max``: depth-error clamp d_max (mm); ``pose_max``: angle (degrees) beyond which two
    hypotheses pay no diversity penalty; ``gamma``: weight of the confidence-independent term;
    ``depth_normalization``: ``"union"`` (sum over the silhouettes' union) or ``"image"`` (all pixels).
    """

    depth_max: float
    pose_max: float
    gamma: float
    depth_normalization: str = "union"


#: Input size (pixels) of each ``[Encoder] ARCH`` preset; :mod:`multipose.models.encoder` builds its
#: presets from it, so crops and encoder agree by construction.
ENCODER_INPUT_SIZES = MappingProxyType({"aae": 128, "small": 64})
#: File name of the pretrained encoder inside ``[Training] OUTPUT_PATH`` (``ENCODER_WEIGHTS: auto``).
ENCODER_FILE = "encoder.pt"


def encoder_weights_path(cfg: Config) -> Path:
    """``[Dataset] ENCODER_WEIGHTS`` as a path; ``auto`` is ``<[Training] OUTPUT_PATH>/encoder.pt``."""
    weights = cfg.Dataset.ENCODER_WEIGHTS
    return Path(cfg.Training.OUTPUT_PATH) / ENCODER_FILE if weights == "auto" else Path(weights)


def encoder_arch(cfg: Config) -> str:
    """``[Encoder] ARCH`` with ``auto`` resolved from ``ENCODER_WEIGHTS`` alone: ``aae`` for the
    original's ``.npy`` weights, else ``small`` (a ``.pt`` file's stored architecture is checked
    against this when it is loaded)."""
    arch = cfg.Encoder.ARCH
    if arch != "auto":
        return arch
    return "aae" if str(cfg.Dataset.ENCODER_WEIGHTS).lower().endswith(".npy") else "small"


def _stored_input_size(path: Path) -> int | None:
    """The input size recorded in a multipose encoder ``.pt``, or None when the file cannot tell (the
    encoder loader reports a broken file properly when the run loads it)."""
    import torch  # lazy: only when such a file exists

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return int(payload["encoder_config"]["image_size"])
    except Exception:  # noqa: BLE001 - garbage makes the unpickler raise anything; the loader reports it
        return None


def crop_size(cfg: Config) -> int:
    """Side of the training crops: ``[Dataset] CROP_SIZE``, or, when empty, the encoder's input size:
    with ``[Encoder] ARCH: auto`` and an existing multipose ``.pt`` in ``ENCODER_WEIGHTS`` (or
    ``<OUTPUT_PATH>/encoder.pt`` for ``auto``) the size stored in it, else the ARCH preset's."""
    size = cfg.Dataset.CROP_SIZE
    if size is not None:
        return int(size)
    weights = encoder_weights_path(cfg)
    if cfg.Encoder.ARCH == "auto" and weights.suffix.lower() in (".pt", ".pth") and weights.is_file():
        stored = _stored_input_size(weights)
        if stored is not None:
            return stored
    return ENCODER_INPUT_SIZES[encoder_arch(cfg)]


def check_crop_size(cfg: Config, encoder_size: int, encoder: str = "the encoder") -> None:
    """Raise :class:`ConfigError` unless the training crops (:func:`crop_size`) are ``encoder_size``
    pixels, the input size of ``encoder`` (a description for the message)."""
    size = crop_size(cfg)
    if size != encoder_size:
        shown = "empty: the encoder's size as the config tells it" if cfg.Dataset.CROP_SIZE is None else "set"
        raise ConfigError(
            f"{cfg.origin('Dataset', 'CROP_SIZE')}: [Dataset] CROP_SIZE = {size} ({shown}): expected the input size "
            f"{encoder_size} of {encoder}; set [Dataset] CROP_SIZE: {encoder_size}"
        )


def num_hypotheses(cfg: Config) -> int:
    """K, the number of pose hypotheses: ``[Rendering] VIEWS`` as an int, or the length of its list."""
    views = cfg.Rendering.VIEWS
    return views if isinstance(views, int) else len(views)


def _same_or_error(cfg: Config, a: tuple[str, str], b: tuple[str, str], what: str) -> None:
    va, vb = cfg[a[0]][a[1]], cfg[b[0]][b[1]]
    if va is not None and vb is not None and va != vb:
        raise ConfigError(
            f"{cfg.origin(*a)}: [{a[0]}] {a[1]} = '{cfg._shown(*a)}': expected the same value as "
            f"[{b[0]}] {b[1]} = '{cfg._shown(*b)}' (both set {what} for LOSS {cfg.Training.LOSS}); "
            "remove one"
        )


def loss_parameters(cfg: Config) -> LossParameters:
    """The loss constants, from ``[Loss_parameters]`` or the original's ``[Training] LOSS_PARAMS``.

    ``vsd-union``: depth_max = DEPTH_MAX or LOSS_PARAMS or 30; gamma = GAMMA or 1/K.
    ``vsd-union-var-gamma``: gamma = GAMMA or LOSS_PARAMS (one is required); depth_max = DEPTH_MAX or 30.
    LOSS_PARAMS and the key it stands for may both be set only to the same value.
    """
    tr, lp = cfg.Training, cfg.Loss_parameters
    if tr.LOSS == "vsd-union":
        _same_or_error(cfg, ("Training", "LOSS_PARAMS"), ("Loss_parameters", "DEPTH_MAX"),
                       "the depth clamp d_max in mm")
        depth_max = next(v for v in (lp.DEPTH_MAX, tr.LOSS_PARAMS, DEFAULT_DEPTH_MAX) if v is not None)
        gamma = lp.GAMMA if lp.GAMMA is not None else 1.0 / num_hypotheses(cfg)
    else:
        _same_or_error(cfg, ("Training", "LOSS_PARAMS"), ("Loss_parameters", "GAMMA"), "gamma")
        gamma = lp.GAMMA if lp.GAMMA is not None else tr.LOSS_PARAMS
        if gamma is None:
            raise ConfigError(
                f"{cfg.origin('Training', 'LOSS')}: [Training] LOSS = '{cfg._shown('Training', 'LOSS')}': "
                "expected [Loss_parameters] GAMMA (or the original's [Training] LOSS_PARAMS) to be set: "
                "this loss takes gamma from the config"
            )
        depth_max = lp.DEPTH_MAX if lp.DEPTH_MAX is not None else DEFAULT_DEPTH_MAX
    return LossParameters(depth_max=float(depth_max), pose_max=float(lp.POSE_MAX), gamma=float(gamma),
                          depth_normalization=lp.DEPTH_NORMALIZATION)


#: Camera distance (mm) of the training renders when neither ``RADIUS`` nor ``T`` is set (the AAE's).
DEFAULT_RADIUS_MM = 700.0


def render_distance(cfg: Config) -> float:
    """Camera distance (mm) of the training renders: ``[Dataset] RADIUS``; if empty, the z of an
    explicit ``[Rendering] T`` (the original rendered its training images at T's z), else 700."""
    if cfg.Dataset.RADIUS is not None:
        return float(cfg.Dataset.RADIUS)
    if cfg.Rendering.T is not None:
        return float(cfg.Rendering.T[2])
    return DEFAULT_RADIUS_MM


def view_sampling(cfg: Config) -> ViewSampling:
    """``[Training] VIEW_SAMPLING`` split into base and ``-hard`` / ``-reuse`` flags."""
    return _parse_view_sampling(cfg.Training.VIEW_SAMPLING)


def resolve_device(cfg: Config) -> torch.device:
    """``[Training] DEVICE`` as a :class:`torch.device`; ``auto`` picks CUDA when available.

    ``cuda`` without a usable GPU is a :class:`~multipose.errors.ConfigError`, not a crash later.
    """
    import torch  # lazy: checking a config file should not pay for importing torch

    name = cfg.Training.DEVICE
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{cfg.origin('Training', 'DEVICE')}: [Training] DEVICE = '{cfg._shown('Training', 'DEVICE')}': "
            "expected auto or cpu: PyTorch sees no CUDA GPU on this machine "
            "(DEVICE: auto uses one when present)"
        )
    return torch.device(name)


# --------------------------------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def schema_markdown() -> str:
    """A Markdown reference table of every key (generated from :data:`SCHEMA`)."""
    rows = [
        "| Section | Key | Type / allowed values | Default | Meaning |",
        "|---|---|---|---|---|",
    ]
    for key in SCHEMA:
        kind = key.type.summary + (", or empty" if key.optional else "")
        default = f"`{key.default}`" if key.default else "*(empty)*"
        rows.append(
            f"| {key.section} | `{key.name}` | {_md(kind)} | {_md(default)} | {_md(key.meaning)} |"
        )
    ignored = ", ".join(f"`[{s}] {k}`" for s, k in DEPRECATED)
    rows += [
        "",
        f"Accepted for compatibility with the original repository and ignored (with a warning): {ignored}.",
        "Relative paths are relative to the working directory.",
    ]
    return "\n".join(rows) + "\n"


def _main(argv: Sequence[str] | None = None) -> int:
    from multipose import cli  # lazy: cli imports this module

    parser = cli.make_parser(
        "Validate a multipose config file and print it fully resolved (every key, defaults included)."
    )
    parser.prog = "python -m multipose.config"

    def show(args: Any, cfg: Config) -> None:
        sys.stdout.write(cfg.to_ini())

    return cli.run(show, parser, argv)


if __name__ == "__main__":
    sys.exit(_main())
