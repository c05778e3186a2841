"""Loading a configuration: raw INI values, ``--set`` overrides, parsing with the schema's types and
the checks that involve several keys."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multipose.config.core import Config, _one_line
from multipose.config.derived import check_objects, loss_parameters, resolve_device
from multipose.config.ini import _bad_value, _lookup, _read_ini
from multipose.config.schema import SCHEMA, SECTIONS
from multipose.config.types import _Invalid
from multipose.infra.errors import ConfigError

logger = logging.getLogger(__name__)


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
    if low is not None and high is not None and low > high:
        raise ConfigError(
            f"{cfg.origin('Training', 'LEARNING_RATE_LOW')}: [Training] LEARNING_RATE_LOW = "
            f"'{cfg._shown('Training', 'LEARNING_RATE_LOW')}': expected at most [Training] "
            f"LEARNING_RATE_HIGH = '{cfg._shown('Training', 'LEARNING_RATE_HIGH')}'"
        )
    loss_parameters(cfg)
    check_objects(cfg)
    if check_device and cfg.Training.DEVICE == "cuda":
        resolve_device(cfg)


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """Read, validate and resolve an INI config file, then apply ``SECTION.KEY=VALUE`` overrides.

    Raises :class:`~multipose.infra.errors.ConfigError` (one-line message naming file, section, key and value)
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


