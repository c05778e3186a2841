"""The :class:`Config` object: validated, immutable sections of values, with where each was set."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from multipose.config.schema import _KEYS, _SECTION_KEYS, SECTIONS


def _one_line(text: str, limit: int = 100) -> str:
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."




def _canonical_section(name: str) -> str | None:
    low = name.strip().lower()
    return next((s for s in SECTIONS if s.lower() == low), None)




def _suggest(word: str, candidates: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


class Section(Mapping[str, Any]):
    """The values of one INI section: ``section.KEY`` or ``section["KEY"]``; read-only."""

    __slots__ = ("_name", "_values")
    _name: str
    _values: dict[str, Any]

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
    # The slots' types (set once with object.__setattr__; without these, reads would go to __getattr__'s Section).
    _sections: dict[str, Section]
    _source: Path | None
    _label: str
    _origins: Mapping[tuple[str, str], tuple[str, str]]

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

    def with_value(self, section: str, key: str, value: Any, origin: str) -> Config:
        """A copy with one value replaced by ``value`` (a parsed value of the key's type), recorded as set at
        ``origin`` (e.g. the file it was read from)."""
        spec = _KEYS[section, key]
        values = self.to_dict()
        values[section][key] = spec.parse(spec.format(value))  # the key's own type: no value it could not hold
        origins = {**self._origins, (section, key): (origin, spec.format(value))}
        return Config(values, self._source, self._label, origins)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {KEY: value}}`` of plain Python values (tuples, str, int, float, bool, None)."""
        return {s: dict(sec) for s, sec in self._sections.items()}

    def to_ini(self) -> str:
        """Every key of the schema with its resolved value; :func:`load_config_text` reads it back equal."""
        lines = [
            "# multipose configuration, fully resolved (every key, defaults included).",
            f"# Read from: {self._label}. Reference: multipose/config/schema.py (SCHEMA).",
        ]
        for section in SECTIONS:
            lines += ["", f"[{section}]"]
            for name in _SECTION_KEYS[section]:
                key = _KEYS[section, name]
                text = key.format(self._sections[section][name])
                lines.append(f"# {key.meaning}")
                lines.append(f"{name}: {text}" if text else f"{name}:")
        return "\n".join(lines) + "\n"
