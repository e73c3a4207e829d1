"""The circuit breakers' part of the config file: ``[breaker]`` and ``[targets."host:port".breaker]``.

::

    [breaker]                      # defaults for every target
    enabled = true
    trip_codes = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"]
    distinct_runs = 5
    cooldown_seconds = 2.0

    [targets."payments.internal:50052".breaker]   # this target only; the rest from [breaker]
    distinct_runs = 10
    max_cooldown_seconds = 60.0

The keys are the fields of :class:`~failhook_orchestrator.engine.breaker.BreakerSettings`;
durations are seconds, ``trip_codes`` are gRPC status code names or numbers. A per-target table
starts from the ``[breaker]`` values. :func:`parse_breaker_config` takes the parsed TOML document
and raises :class:`~failhook_orchestrator.engine.breaker.BreakerSettingsError` (a ``ValueError``
whose message starts with the full key, e.g. ``targets."a:1".breaker.distinct_runs: ...``) for
an unknown key or a bad value, so that the config loader can report it as a configuration error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .engine.breaker import BreakerSettings, BreakerSettingsError
from .engine.limits import ERROR_CODES, STATUS_CODE_NAMES

__all__ = ["SECTION", "TARGET_KEY", "BreakerConfig", "parse_breaker_config"]

SECTION = "breaker"
"""The top-level table of the defaults."""
TARGET_KEY = "breaker"
"""The sub-table of ``[targets."host:port"]`` that overrides them for one target."""

#: Error code names (``limits.STATUS_CODE_NAMES`` without OK) by name.
_CODES = {name: code for code, name in enumerate(STATUS_CODE_NAMES) if code in ERROR_CODES}
_KINDS = {f.name: f.type for f in fields(BreakerSettings)}


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The breaker settings of the config file.

    Attributes:
        settings: The ``[breaker]`` settings (the defaults where absent).
        overrides: The complete settings of each target that has a ``breaker`` table.
    """

    settings: BreakerSettings = field(default_factory=BreakerSettings)
    overrides: Mapping[str, BreakerSettings] = field(default_factory=dict)


def parse_breaker_config(document: Mapping[str, Any]) -> BreakerConfig:
    """Read ``[breaker]`` and every ``[targets."host:port".breaker]`` of a parsed config file.

    Args:
        document: The whole TOML document (other sections are left alone).

    Returns:
        The settings, checked.

    Raises:
        BreakerSettingsError: An unknown key or a bad value; the message names the key.
    """
    settings = _section(document.get(SECTION, {}), SECTION, BreakerSettings())
    overrides: dict[str, BreakerSettings] = {}
    targets = document.get("targets", {})
    if isinstance(targets, Mapping):
        for name, table in targets.items():
            if isinstance(table, Mapping) and TARGET_KEY in table:
                where = f'targets."{name}".{TARGET_KEY}'
                overrides[str(name)] = _section(table[TARGET_KEY], where, settings)
    return BreakerConfig(settings.check(SECTION), overrides)


def _section(table: Any, where: str, base: BreakerSettings) -> BreakerSettings:
    if not isinstance(table, Mapping):
        raise BreakerSettingsError(where, f"must be a table, got {type(table).__name__}")
    values = {str(key): _value(f"{where}.{key}", str(key), value) for key, value in table.items()}
    return base.with_overrides(values, where)


def _value(key: str, name: str, value: Any) -> Any:
    kind = _KINDS.get(name)
    if kind is None:
        return value  # with_overrides names the unknown key
    if kind == "bool":
        if not isinstance(value, bool):
            raise BreakerSettingsError(key, f"must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise BreakerSettingsError(key, f"must be a whole number, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BreakerSettingsError(key, f"must be a number, got {value!r}")
        return float(value)
    return _codes(key, value)


def _codes(key: str, value: Any) -> frozenset[int]:
    if not isinstance(value, list):
        raise BreakerSettingsError(
            key, f'must be a list of status codes, e.g. ["UNAVAILABLE"], got {value!r}'
        )
    codes = set()
    for item in value:
        if isinstance(item, str) and item.strip().upper() in _CODES:
            codes.add(_CODES[item.strip().upper()])
        elif isinstance(item, int) and not isinstance(item, bool):
            codes.add(item)  # checked to be 1..16 by BreakerSettings.check
        else:
            raise BreakerSettingsError(key, f"{item!r} is not a gRPC status code name or number")
    return frozenset(codes)
