"""The circuit breaker of one target: pure state, driven by call results and an injected time.

A *target* is a gRPC target string that runs call (a WorkflowEndpoint or a FailureHook). Its
breaker moves CLOSED → OPEN → HALF_OPEN → CLOSED:

* It counts **availability** failures only (:func:`classify`): the status codes of
  :attr:`BreakerSettings.trip_codes` (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED by
  default) and calls that never reached the server (a connection or TLS failure, as the
  dispatcher reports it). An answer of the server, even an error (any other code, a
  ``StepError`` marked non-retryable, a history mismatch), shows that the target is up: it
  counts as a success.
* It counts failures across **distinct runs**, so one run's repeated failures never trip it.
  It opens when either rule holds:

  1. availability failures from ``distinct_runs`` (5) different runs with no success between
     them; or
  2. over the last ``window_seconds`` (10 s), at least ``min_calls`` (20) calls of which a share
     of at least ``failure_ratio`` (50 %) failed, from at least ``distinct_runs`` different runs
     (this one catches an endpoint that fails half its calls while the other half succeed).

* OPEN lasts a cooldown: ``cooldown_seconds`` (2 s), doubled on each re-trip, capped at
  ``max_cooldown_seconds`` (5 min). A trip is a re-trip when it comes from HALF_OPEN or within
  ``reset_after_seconds`` (60 s) of the last close (a flapping target's cooldown keeps growing).
* HALF_OPEN lets ``half_open_probes`` (1) real calls through at a time as probes: a probe that
  succeeds closes the breaker, one that fails re-opens it.

Operator pauses and endpoint-declared cooldowns are kept here too (:class:`Pause`): while one is
in force the target admits nothing, whatever the breaker's state. Nothing here does I/O or reads
a clock: every method takes ``now`` (epoch microseconds, as everywhere in the engine).
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = [
    "DEFAULT_TRIP_CODES",
    "MAX_TARGET_COOLDOWN_US",
    "Breaker",
    "BreakerSettings",
    "BreakerSettingsError",
    "BreakerState",
    "CallKind",
    "CallResult",
    "Pause",
    "PauseSource",
    "classify",
]

_US = 1_000_000

# Canonical gRPC codes (grpc.StatusCode values), numeric: the engine imports no gRPC.
OK = 0
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14

#: The longest whole-target cooldown an endpoint may ask for (``StepError.target_cooldown``).
MAX_TARGET_COOLDOWN_US = 24 * 3600 * _US

#: The status codes that count as availability failures unless the config says otherwise.
DEFAULT_TRIP_CODES = frozenset({UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED})


class BreakerState(enum.IntEnum):
    """A breaker's state (values of ``failhook.v1.BreakerState``)."""

    CLOSED = 1
    OPEN = 2
    HALF_OPEN = 3


class CallKind(enum.Enum):
    """What a call's result means to the breaker."""

    SUCCESS = "success"  # the target answered (an application error included)
    AVAILABILITY = "availability"  # the target could not serve the call: counted


class PauseSource(enum.IntEnum):
    """Who paused a target (values of ``failhook.v1.PauseSource``)."""

    OPERATOR = 1  # PauseTarget
    ENDPOINT = 2  # a step error's ``target_cooldown``


class BreakerSettingsError(ValueError):
    """A breaker setting cannot be used; ``key`` is its full config key (e.g. ``breaker.ratio``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Tuning of the circuit breakers (``[breaker]`` in the config file).

    Attributes:
        enabled: Off: every call is admitted and nothing is counted, endpoint cooldowns are
            ignored (the behaviour without breakers). Operator pauses still apply.
        trip_codes: Status codes counted as availability failures.
        trip_on_connection_failure: Count calls that never reached the server (connection or
            TLS failures) whatever their code.
        distinct_runs: Runs with availability failures, and no success between, that open it.
        failure_ratio: Share of failed calls in the window that opens it (0 < ratio <= 1).
        min_calls: Calls the window needs before the ratio counts.
        window_seconds: Length of the sliding window of the ratio rule.
        cooldown_seconds: How long the first trip keeps it OPEN.
        max_cooldown_seconds: Cap of the cooldown, which doubles on each re-trip.
        reset_after_seconds: How long it must stay CLOSED for the next trip to start from
            ``cooldown_seconds`` again.
        half_open_probes: Calls let through at a time while HALF_OPEN.
        release_rate: Runs released per second when the paced release starts.
        release_growth: Factor applied to the release rate after each second without failure.
        max_release_rate: Cap of the release rate.
    """

    enabled: bool = True
    trip_codes: frozenset[int] = DEFAULT_TRIP_CODES
    trip_on_connection_failure: bool = True
    distinct_runs: int = 5
    failure_ratio: float = 0.5
    min_calls: int = 20
    window_seconds: float = 10.0
    cooldown_seconds: float = 2.0
    max_cooldown_seconds: float = 300.0
    reset_after_seconds: float = 60.0
    half_open_probes: int = 1
    release_rate: float = 10.0
    release_growth: float = 2.0
    max_release_rate: float = 1000.0

    def check(self, section: str = "breaker") -> BreakerSettings:
        """Raise :class:`BreakerSettingsError` naming the first bad key; return self when valid.

        Args:
            section: The config section the settings came from, used in the key names
                (``breaker`` or ``targets."host:port".breaker``).
        """

        def bad(key: str, message: str) -> BreakerSettingsError:
            return BreakerSettingsError(f"{section}.{key}", message)

        for code in self.trip_codes:
            if not 0 < code <= 16:
                raise bad("trip_codes", f"{code} is not a gRPC error code (1..16)")
        for name in ("distinct_runs", "min_calls", "half_open_probes"):
            value = getattr(self, name)
            if value < 1:
                raise bad(name, f"must be at least 1, got {value}")
        if not 0 < self.failure_ratio <= 1:
            raise bad("failure_ratio", f"must be in (0, 1], got {self.failure_ratio}")
        for name in ("window_seconds", "cooldown_seconds", "release_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise bad(name, f"must be a positive number, got {value}")
        if not (math.isfinite(self.reset_after_seconds) and self.reset_after_seconds >= 0):
            raise bad("reset_after_seconds", f"must not be negative, got {self.reset_after_seconds}")
        top = self.max_cooldown_seconds
        if not (math.isfinite(top) and top >= self.cooldown_seconds):
            base = self.cooldown_seconds
            raise bad("max_cooldown_seconds", f"must be at least cooldown_seconds ({base}), got {top}")
        if not (math.isfinite(self.release_growth) and self.release_growth >= 1):
            raise bad("release_growth", f"must be at least 1, got {self.release_growth}")
        if not (math.isfinite(self.max_release_rate) and self.max_release_rate >= self.release_rate):
            raise bad(
                "max_release_rate",
                f"must be at least release_rate ({self.release_rate}), got {self.max_release_rate}",
            )
        return self

    def with_overrides(self, values: Mapping[str, Any], section: str) -> BreakerSettings:
        """Return these settings with ``values`` (already typed) replacing fields, checked."""
        known = {f.name for f in fields(self)}
        for key in values:
            if key not in known:
                names = ", ".join(sorted(known))
                raise BreakerSettingsError(f"{section}.{key}", f"unknown setting (known: {names})")
        return replace(self, **values).check(section)


@dataclass(frozen=True, slots=True)
class CallResult:
    """One finished call to a target, as the run driver reports it.

    Attributes:
        status_code: The call's gRPC status code (0 = OK).
        message: The status message (kept as the target's last error).
        connection_failure: The call never reached the server (connect or TLS handshake failed).
        non_retryable: The endpoint marked its error as final (an application error).
        protocol_error: The answer broke the protocol (an application error).
        target_cooldown_us: The endpoint asked that the whole target be paused this long.
    """

    status_code: int = OK
    message: str = ""
    connection_failure: bool = False
    non_retryable: bool = False
    protocol_error: bool = False
    target_cooldown_us: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.status_code == OK and not self.connection_failure


def classify(result: CallResult, settings: BreakerSettings) -> CallKind:
    """Tell whether a call's result is an availability failure the breaker counts."""
    if result.ok or result.non_retryable or result.protocol_error:
        return CallKind.SUCCESS
    if result.connection_failure and settings.trip_on_connection_failure:
        return CallKind.AVAILABILITY
    if result.status_code in settings.trip_codes:
        return CallKind.AVAILABILITY
    return CallKind.SUCCESS


@dataclass(frozen=True, slots=True)
class Pause:
    """A pause of a whole target: by an operator, or asked for by the endpoint.

    Attributes:
        source: Who paused it.
        by: The operator's identity, or the target for an endpoint cooldown.
        reason: Why (the operator's text, or the endpoint's error message).
        since: When it started.
        until: When it ends by itself; None: until ResumeTarget.
    """

    source: PauseSource
    by: str
    reason: str
    since: int
    until: int | None = None

    def over(self, now: int) -> bool:
        """Whether the pause has ended by itself at ``now``."""
        return self.until is not None and now >= self.until


@dataclass(slots=True)
class _Window:
    """Calls of the last ``length_us``: counts, and the runs behind the failures."""

    length_us: int
    calls: deque[tuple[int, str, bool]] = field(default_factory=deque)  # (time, run id, failed)
    failures: int = 0
    failing_runs: Counter[str] = field(default_factory=Counter)

    def add(self, now: int, run_id: str, failed: bool) -> None:
        self.calls.append((now, run_id, failed))
        if failed:
            self.failures += 1
            self.failing_runs[run_id] += 1
        self.prune(now)

    def prune(self, now: int) -> None:
        while self.calls and self.calls[0][0] <= now - self.length_us:
            _time, run_id, failed = self.calls.popleft()
            if failed:
                self.failures -= 1
                self.failing_runs[run_id] -= 1
                if not self.failing_runs[run_id]:
                    del self.failing_runs[run_id]

    def clear(self) -> None:
        self.calls.clear()
        self.failures = 0
        self.failing_runs.clear()


class Breaker:
    """The breaker of one target.

    The caller asks :meth:`allows` before a call (which may move OPEN to HALF_OPEN and take a
    probe slot) and reports every call it made with :meth:`record`, or :meth:`abandon` when an
    admitted call did not happen. State changes are returned (and kept in :attr:`transitions`
    until drained) so that the caller can log and count them.
    """

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self.state = BreakerState.CLOSED
        self.pause: Pause | None = None
        self.consecutive_failures = 0  # availability failures since the last success
        self.failing_runs: dict[str, None] = {}  # distinct runs behind them, in order
        self.last_error = ""
        self.last_status_code = 0
        self.last_error_time: int | None = None
        self.last_success_time: int | None = None
        self.opened_at: int | None = None
        self.next_probe_time: int | None = None
        self.closed_at: int | None = None
        self.trips = 0  # every trip since this process started
        self.streak = 0  # trips in a row (re-trips), which double the cooldown
        self.probes: set[str] = set()  # runs whose probe call is admitted and not yet reported
        self.transitions: list[tuple[BreakerState, BreakerState, str]] = []
        self._window = _Window(int(settings.window_seconds * _US))

    # -- the questions the caller asks ---------------------------------------------------------

    @property
    def cooldown_us(self) -> int:
        """The cooldown the current (or next) trip lasts."""
        s = self.settings
        exponent = max(0, self.streak - 1)
        seconds = min(s.max_cooldown_seconds, s.cooldown_seconds * 2.0 ** min(exponent, 64))
        return int(seconds * _US)

    def paused(self, now: int) -> Pause | None:
        """The pause in force at ``now``; an expired one is dropped."""
        if self.pause is not None and self.pause.over(now):
            self.transitions.append((self.state, self.state, f"the pause by {self.pause.by} is over"))
            self.pause = None
        return self.pause

    def advance(self, now: int) -> None:
        """Move OPEN to HALF_OPEN once the cooldown is over."""
        if (
            self.state is BreakerState.OPEN
            and self.next_probe_time is not None
            and now >= self.next_probe_time
        ):
            self._move(BreakerState.HALF_OPEN, "cooldown over: probing")

    def can_probe(self, now: int) -> bool:
        """Whether a probe slot is free (HALF_OPEN only)."""
        self.advance(now)
        return self.state is BreakerState.HALF_OPEN and len(self.probes) < self.settings.half_open_probes

    def allows(self, run_id: str, now: int) -> bool | None:
        """Ask to call the target for ``run_id``: True (go), None (go as a probe), False (park).

        A probe takes a slot until :meth:`record` or :meth:`abandon` reports the call.
        """
        if self.paused(now) is not None:
            return False
        if not self.settings.enabled:
            return True
        self.advance(now)
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and (
            run_id in self.probes or len(self.probes) < self.settings.half_open_probes
        ):
            self.probes.add(run_id)
            return None
        return False

    # -- what the caller reports ---------------------------------------------------------------

    def record(self, run_id: str, result: CallResult, now: int) -> CallKind:
        """Count one finished call; may trip, close or re-open the breaker."""
        kind = classify(result, self.settings)
        was_probe = run_id in self.probes
        self.probes.discard(run_id)
        if result.ok:
            self.last_success_time = now
        else:  # any failed call, counted or not, is the last error an operator sees
            self.last_error = result.message
            self.last_status_code = result.status_code
            self.last_error_time = now
        if not self.settings.enabled:
            return kind  # as without breakers: the endpoint's retry_after alone is honoured
        if result.target_cooldown_us is not None and result.target_cooldown_us > 0:
            cooldown = min(result.target_cooldown_us, MAX_TARGET_COOLDOWN_US)
            self.declare_cooldown(now + cooldown, result.message, now)
        self.advance(now)
        if kind is CallKind.SUCCESS:
            self.consecutive_failures = 0
            self.failing_runs.clear()
            self._window.add(now, run_id, failed=False)
            if self.state is BreakerState.HALF_OPEN and was_probe:
                self._close(now, "a probe succeeded")
            return kind
        self.consecutive_failures += 1
        self.failing_runs[run_id] = None
        self._window.add(now, run_id, failed=True)
        if self.state is BreakerState.HALF_OPEN and was_probe:
            self._trip(now, f"a probe failed: {result.message}")
        elif self.state is BreakerState.CLOSED:
            reason = self._trip_rule()
            if reason is not None:
                self._trip(now, f"{reason}; last error: {result.message}")
        return kind

    def probe_first(self, now: int, why: str) -> None:
        """Start HALF_OPEN: runs parked by this target's open breaker were restored (a restart, or
        a dead replica's runs), so the target was down when last seen: probe before releasing."""
        if self.settings.enabled and self.state is BreakerState.CLOSED:
            self.opened_at = self.next_probe_time = now
            self._move(BreakerState.HALF_OPEN, why)

    def abandon(self, run_id: str) -> None:
        """An admitted call did not happen (the run was canceled or parked meanwhile)."""
        self.probes.discard(run_id)

    def declare_cooldown(self, until: int, reason: str, now: int) -> None:
        """Pause the whole target until ``until`` (the endpoint asked); operator pauses win."""
        current = self.paused(now)
        if current is not None and current.source is PauseSource.OPERATOR:
            return
        if current is not None and current.until is not None and current.until >= until:
            return
        self.pause = Pause(PauseSource.ENDPOINT, "endpoint", reason, current.since if current else now, until)

    def pause_by_operator(self, by: str, reason: str, until: int | None, now: int) -> None:
        """Pause the target (PauseTarget); replaces any pause in force."""
        self.pause = Pause(PauseSource.OPERATOR, by, reason, now, until)

    def resume(self, now: int, why: str) -> None:
        """Lift any pause and close the breaker (ResumeTarget)."""
        self.pause = None
        if self.state is not BreakerState.CLOSED:
            self._close(now, why)

    def drain_transitions(self) -> list[tuple[BreakerState, BreakerState, str]]:
        """The state changes since the last call: (from, to, why)."""
        moves, self.transitions = self.transitions, []
        return moves

    # -- the rules -----------------------------------------------------------------------------

    def _trip_rule(self) -> str | None:
        s = self.settings
        if len(self.failing_runs) >= s.distinct_runs:
            runs = len(self.failing_runs)
            return f"availability failures from {runs} distinct runs with no success between"
        window = self._window
        calls = len(window.calls)
        if (
            calls >= s.min_calls
            and window.failures >= s.failure_ratio * calls
            and len(window.failing_runs) >= s.distinct_runs
        ):
            return (
                f"{window.failures} of {calls} calls failed in {s.window_seconds:g}s "
                f"from {len(window.failing_runs)} distinct runs"
            )
        return None

    def _trip(self, now: int, why: str) -> None:
        s = self.settings
        recent_close = self.closed_at is not None and now - self.closed_at < s.reset_after_seconds * _US
        retrip = self.state is BreakerState.HALF_OPEN or recent_close
        self.streak = self.streak + 1 if retrip else 1
        self.trips += 1
        self.opened_at = now
        self.next_probe_time = now + self.cooldown_us
        self.probes.clear()
        self._move(BreakerState.OPEN, why)

    def _close(self, now: int, why: str) -> None:
        self.closed_at = now
        self.opened_at = self.next_probe_time = None
        self.consecutive_failures = 0
        self.failing_runs.clear()
        self._window.clear()
        self.probes.clear()
        self._move(BreakerState.CLOSED, why)

    def _move(self, to: BreakerState, why: str) -> None:
        self.transitions.append((self.state, to, why))
        self.state = to
