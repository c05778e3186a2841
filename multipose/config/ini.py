"""Reading INI text into raw ``(section, key) -> text`` values: our files and the original's, names
matched case-insensitively with suggestions for typos, and the Augmented Autoencoder's training config
(``aae_encoder_test.cfg``) read as an encoder-pretraining config."""

from __future__ import annotations

import ast
import configparser
import json
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from multipose.config.core import _canonical_section, _one_line, _suggest
from multipose.config.schema import _KEYS, _SECTION_KEYS, DEPRECATED, SCHEMA, SECTIONS, Key
from multipose.config.types import _Invalid
from multipose.core.settings import ENCODER_INPUT_SIZES
from multipose.infra.errors import ConfigError


def _bad_value(where: str, key: Key, text: str, detail: str = "") -> ConfigError:
    msg = f"{where}: [{key.section}] {key.name} = '{_one_line(text)}': expected {key.expected}"
    return ConfigError(msg + (f" ({detail})" if detail else ""))


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


