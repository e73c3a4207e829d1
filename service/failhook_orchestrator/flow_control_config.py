"""Flow control's part of the config file: limits per target and per flow-control key.

::

    [targets."payments.internal:50052"]   # calls to this target (steps and hooks)
    max_in_flight = 20
    max_rate = 50.0                      # calls per second, on average
    burst = 10                           # at most this many back to back (default 1)

    [flow_control."tenant-acme"]          # runs started with flow_control_key = "tenant-acme"
    max_in_flight = 5
    max_rate = 10.0

Each limit is optional; a key that no table names is unlimited. :func:`parse_flow_control`
takes the parsed TOML document and raises :class:`FlowControlConfigError` (a ``ValueError``
whose message starts with the full key, e.g. ``targets."a:1".max_rate: ...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .engine.flow_control import FlowLimits

__all__ = ["LIMIT_KEYS", "FlowControlConfig", "FlowControlConfigError", "parse_flow_control"]

SECTION = "flow_control"
#: The keys of a limits table (also allowed in ``[targets."host:port"]``).
LIMIT_KEYS = ("max_in_flight", "max_rate", "burst")
#: Keys of ``[targets."…"]`` tables that belong to other parts of the config.
_OTHER_TARGET_KEYS = ("server_name", "ca", "breaker")


class FlowControlConfigError(ValueError):
    """A flow-control limit cannot be used; the message starts with its full key."""


@dataclass(frozen=True, slots=True)
class FlowControlConfig:
    """The configured limits by target and by flow-control key."""

    targets: Mapping[str, FlowLimits] = field(default_factory=dict)
    keys: Mapping[str, FlowLimits] = field(default_factory=dict)


def _limits(where: str, table: Mapping[str, Any], *, others: tuple[str, ...] = ()) -> FlowLimits | None:
    unknown = sorted(set(table) - set(LIMIT_KEYS) - set(others))
    if unknown:
        raise FlowControlConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(LIMIT_KEYS)})")
    if not any(k in table for k in LIMIT_KEYS):
        return None
    in_flight, rate, burst = table.get("max_in_flight"), table.get("max_rate"), table.get("burst", 1)
    if in_flight is not None and (
        isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1
    ):
        raise FlowControlConfigError(
            f"{where}.max_in_flight: must be a whole number of at least 1, got {in_flight!r}"
        )
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0
    ):
        raise FlowControlConfigError(
            f"{where}.max_rate: must be a number of calls per second above 0, got {rate!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise FlowControlConfigError(f"{where}.burst: must be a whole number of at least 1, got {burst!r}")
    return FlowLimits(max_in_flight=in_flight, max_rate=None if rate is None else float(rate), burst=burst)


def parse_flow_control(document: Mapping[str, Any]) -> FlowControlConfig:
    """The limits of a parsed config file (its ``targets`` and ``flow_control`` tables)."""
    targets: dict[str, FlowLimits] = {}
    for target, table in (document.get("targets") or {}).items():
        if isinstance(table, Mapping) and (
            lim := _limits(f'targets."{target}"', table, others=_OTHER_TARGET_KEYS)
        ):
            targets[str(target)] = lim
    keys: dict[str, FlowLimits] = {}
    section = document.get(SECTION) or {}
    if not isinstance(section, Mapping):
        raise FlowControlConfigError(f"{SECTION}: must be a table of keys")
    for key, table in section.items():
        if not isinstance(table, Mapping):
            raise FlowControlConfigError(f'{SECTION}."{key}": must be a table')
        if (lim := _limits(f'{SECTION}."{key}"', table)) is not None:
            keys[str(key)] = lim
    return FlowControlConfig(targets=targets, keys=keys)
