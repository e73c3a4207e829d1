"""Validation of requests, field by field; every failure names the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from failhook.v1 import run_pb2
from failhook_orchestrator import wire
from failhook_orchestrator.engine import limits
from failhook_orchestrator.engine.policy import RetryPolicy

from .errors import invalid_argument

__all__ = [
    "Limits",
    "duration_seconds",
    "enum_filter",
    "resolve_policy",
    "validate_headers",
    "validate_id",
    "validate_run_id",
    "validate_target",
    "validate_timestamp",
    "validate_workflow",
]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")
_RESERVED_HEADERS = frozenset({"content-type", "user-agent", "te", "host", "connection", "transfer-encoding"})
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8 * 1024
MAX_TARGET = 512


class Limits:
    """Request limits the server enforces (the payload limit is configurable)."""

    def __init__(self, max_payload_bytes: int = 1024 * 1024) -> None:
        self.max_payload_bytes = max_payload_bytes

    def payload(self, field: str, payload: bytes) -> bytes:
        """A run payload within the limit (StartRun's and ResumeRun's alike)."""
        if len(payload) > self.max_payload_bytes:
            raise invalid_argument(field, f"is {len(payload)} bytes; the limit is {self.max_payload_bytes}")
        return payload


def validate_workflow(field: str, value: str) -> str:
    """A workflow name: 1-128 characters of letters, digits and ``._:/-``."""
    if not value:
        raise invalid_argument(field, "is required")
    if not limits.WORKFLOW_NAME.fullmatch(value):
        raise invalid_argument(field, f"{value[:140]!r} is not a workflow name ({limits.WORKFLOW_NAME_RULE})")
    return value


def validate_run_id(field: str, value: str, *, required: bool) -> str:
    """A run id: 1-128 characters of letters, digits and ``._:-``."""
    if not value:
        if required:
            raise invalid_argument(field, "is required")
        return value
    if not _RUN_ID.fullmatch(value):
        raise invalid_argument(field, f"{value[:140]!r} is not a run id (1-128 letters, digits and '._:-')")
    return value


def validate_id(field: str, value: str) -> str:
    """A required opaque id (dead letter ids)."""
    return validate_run_id(field, value, required=True)


def validate_target(field: str, value: str, *, required: bool) -> str:
    """A gRPC target: ``host:port``, ``dns:[//authority/]host:port``, ``ipv4:``/``ipv6:`` or ``unix:``."""
    if not value:
        if required:
            raise invalid_argument(field, "is required")
        return value
    if len(value) > MAX_TARGET or any(c.isspace() or not c.isprintable() for c in value):
        raise invalid_argument(
            field, f"{value[:80]!r} is not a gRPC target (no spaces or control characters such as NUL)"
        )
    if value.startswith(("unix:", "unix-abstract:")):
        if value.split(":", 1)[1].strip("/"):
            return value
        raise invalid_argument(field, f"{value!r} names no socket path")
    rest = value
    for prefix in ("dns:///", "ipv4:", "ipv6:"):
        if rest.startswith(prefix):
            rest = rest[len(prefix) :]
            break
    else:
        if rest.startswith("dns://"):
            rest = rest[len("dns://") :].partition("/")[2]
    match = _HOST_PORT.fullmatch(rest)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise invalid_argument(
            field, f"{value!r} is not a gRPC target (expected host:port, dns:///host:port or unix:path)"
        )
    return value


def enum_filter(field: str, values: Iterable[int], known: frozenset[int]) -> tuple[int, ...]:
    """A filter on an enum: the distinct values, sorted; empty (no filter) if it holds the
    UNSPECIFIED 0, which the contract defines as "any"; INVALID_ARGUMENT for unknown values."""
    chosen = set(values)
    if bad := sorted(chosen - known - {0}):
        raise invalid_argument(field, f"holds unknown values {bad} (known: {sorted(known)})")
    return () if 0 in chosen else tuple(sorted(chosen))


def validate_timestamp(field: str, ts: Timestamp) -> int:
    """A filter's Timestamp in epoch microseconds; INVALID_ARGUMENT outside 0001..9999 or bad nanos."""
    if not wire.timestamp_in_range(ts):
        raise invalid_argument(
            field,
            f"({ts.seconds}s, {ts.nanos}ns) is not a valid timestamp"
            " (0001-01-01 to 9999-12-31, nanos in 0..999999999)",
        )
    return wire.timestamp_to_micros(ts)


def validate_headers(field: str, headers: Mapping[str, str]) -> dict[str, str]:
    """Headers forwarded as gRPC metadata: lowercase keys, printable ASCII values, bounded size."""
    if len(headers) > MAX_HEADERS:
        raise invalid_argument(field, f"has {len(headers)} entries; at most {MAX_HEADERS} are allowed")
    total = 0
    for key, value in headers.items():
        if (
            not limits.HEADER_NAME.fullmatch(key)
            or key.startswith("grpc-")
            or key.endswith("-bin")
            or key in _RESERVED_HEADERS
        ):
            raise invalid_argument(
                f"{field}[{key[:40]!r}]",
                "keys must be lowercase letters, digits and '-_.', not reserved, not 'grpc-*' nor '*-bin'",
            )
        if not _HEADER_VALUE.fullmatch(value):
            raise invalid_argument(f"{field}[{key!r}]", "values must be printable ASCII")
        total += len(key) + len(value)
    if total > MAX_HEADER_BYTES:
        raise invalid_argument(field, f"hold {total} bytes; at most {MAX_HEADER_BYTES} are allowed")
    return dict(headers)


_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")
_LABEL_VALUE = re.compile(r"[\x20-\x7e]{0,256}")
#: The most labels a run carries (the limits are documented on ``StartRunRequest.labels``).
MAX_LABELS = 32


def validate_labels(field: str, labels: Mapping[str, str]) -> dict[str, str]:
    """Run labels, or a label filter: at most 32, keys ``[a-z0-9][a-z0-9._/-]{0,62}``, values of at
    most 256 printable ASCII characters."""
    if len(labels) > MAX_LABELS:
        raise invalid_argument(field, f"has {len(labels)} entries; at most {MAX_LABELS} are allowed")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise invalid_argument(
                f"{field}[{key[:40]!r}]",
                "keys must be 1 to 63 lowercase letters, digits and '._/-', starting with a letter or digit",
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise invalid_argument(
                f"{field}[{key!r}]", "values must be at most 256 printable ASCII characters"
            )
    return dict(labels)


#: Largest ``seconds`` a ``google.protobuf.Duration`` may hold (10,000 years).
_DURATION_SECONDS = 315_576_000_000
#: Request policy fields by the engine's name of them (the config file uses the engine's names).
_POLICY_FIELDS = {"non_retryable_codes": "non_retryable_status_codes"}


def duration_seconds(field: str, d: Duration, *, maximum: float) -> float:
    """A request's Duration in seconds: non-negative, well-formed and at most ``maximum``."""
    if d.seconds < 0 or d.nanos < 0:
        raise invalid_argument(field, "must not be negative")
    if d.nanos >= 1_000_000_000 or d.seconds > _DURATION_SECONDS:
        raise invalid_argument(field, "is not a valid duration (seconds or nanos out of range)")
    seconds = d.seconds + d.nanos / 1e9
    if seconds > maximum:
        raise invalid_argument(field, f"is {seconds:g}s; at most {maximum:g}s is allowed")
    return seconds


def execution_timeout_us(field: str, d: Duration) -> int:
    """A run's execution timeout in microseconds: more than 0, at most 3660 days."""
    if d.seconds < 0 or d.nanos < 0 or (d.seconds == 0 and d.nanos == 0):
        raise invalid_argument(field, "must be more than 0 (leave it unset for the server's default)")
    return round(duration_seconds(field, d, maximum=limits.MAX_EXECUTION_TIMEOUT_SECONDS) * 1_000_000)


def resolve_policy(field: str, policy: run_pb2.RetryPolicy | None, default: RetryPolicy) -> RetryPolicy:
    """The complete policy: the request's fields over the server's defaults, checked by the
    rules the config file obeys too (:func:`~failhook_orchestrator.engine.limits.check_policy`)."""
    if policy is None:
        return default
    values: dict[str, object] = {}
    if policy.HasField("max_attempts"):
        values["max_attempts"] = policy.max_attempts
    backoff, timeout = limits.MAX_BACKOFF_SECONDS, limits.MAX_ATTEMPT_TIMEOUT_SECONDS
    if policy.HasField("initial_backoff"):
        values["initial_backoff"] = duration_seconds(
            f"{field}.initial_backoff", policy.initial_backoff, maximum=backoff
        )
    if policy.HasField("max_backoff"):
        values["max_backoff"] = duration_seconds(f"{field}.max_backoff", policy.max_backoff, maximum=backoff)
    if policy.HasField("attempt_timeout"):
        values["attempt_timeout"] = duration_seconds(
            f"{field}.attempt_timeout", policy.attempt_timeout, maximum=timeout
        )
    if policy.HasField("backoff_multiplier"):
        values["backoff_multiplier"] = policy.backoff_multiplier
    if policy.HasField("jitter"):
        values["jitter"] = policy.jitter
    if policy.HasField("non_retryable_status_codes"):
        values["non_retryable_codes"] = frozenset(policy.non_retryable_status_codes.codes)
    try:
        return limits.check_policy(replace(default, **values))  # type: ignore[arg-type]
    except limits.PolicyViolation as violation:
        name = _POLICY_FIELDS.get(violation.field, violation.field)
        raise invalid_argument(f"{field}.{name}", violation.message) from None
