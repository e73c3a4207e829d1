"""Validation of requests, field by field; every failure names the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from google.protobuf.duration_pb2 import Duration

from failhook.v1 import run_pb2
from failhook_orchestrator.engine.policy import RetryPolicy

from .errors import invalid_argument

__all__ = [
    "Limits",
    "resolve_policy",
    "validate_headers",
    "validate_id",
    "validate_run_id",
    "validate_target",
    "validate_workflow",
]

_WORKFLOW = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_HEADER_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
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


def validate_workflow(field: str, value: str) -> str:
    """A workflow name: 1-128 characters of letters, digits and ``._:/-``."""
    if not value:
        raise invalid_argument(field, "is required")
    if not _WORKFLOW.fullmatch(value):
        raise invalid_argument(
            field,
            f"{value[:140]!r} is not a workflow name (1-128 letters, digits and '._:/-', alphanumeric first)",
        )
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
    if len(value) > MAX_TARGET or any(c.isspace() for c in value):
        raise invalid_argument(field, f"{value[:80]!r} is not a gRPC target")
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


def validate_headers(field: str, headers: Mapping[str, str]) -> dict[str, str]:
    """Headers forwarded as gRPC metadata: lowercase keys, printable ASCII values, bounded size."""
    if len(headers) > MAX_HEADERS:
        raise invalid_argument(field, f"has {len(headers)} entries; at most {MAX_HEADERS} are allowed")
    total = 0
    for key, value in headers.items():
        if (
            not _HEADER_KEY.fullmatch(key)
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


def _seconds(field: str, d: Duration) -> float:
    if d.seconds < 0 or d.nanos < 0:
        raise invalid_argument(field, "must not be negative")
    if d.nanos >= 1_000_000_000:
        raise invalid_argument(field, "is not a valid duration (nanos out of range)")
    return d.seconds + d.nanos / 1e9


def resolve_policy(field: str, policy: run_pb2.RetryPolicy | None, default: RetryPolicy) -> RetryPolicy:
    """The complete policy: the request's fields over the server's defaults, checked for sanity."""
    if policy is None:
        return default
    max_attempts = default.max_attempts
    if policy.HasField("max_attempts"):
        max_attempts = policy.max_attempts
        if not 1 <= max_attempts <= 100:
            raise invalid_argument(f"{field}.max_attempts", f"must be between 1 and 100, got {max_attempts}")
    initial = (
        _seconds(f"{field}.initial_backoff", policy.initial_backoff)
        if policy.HasField("initial_backoff")
        else default.initial_backoff
    )
    maximum = (
        _seconds(f"{field}.max_backoff", policy.max_backoff)
        if policy.HasField("max_backoff")
        else default.max_backoff
    )
    if maximum < initial:
        raise invalid_argument(
            f"{field}.max_backoff", f"({maximum}s) must not be less than initial_backoff ({initial}s)"
        )
    multiplier = default.backoff_multiplier
    if policy.HasField("backoff_multiplier"):
        multiplier = policy.backoff_multiplier
        if not math.isfinite(multiplier) or multiplier < 1:
            raise invalid_argument(f"{field}.backoff_multiplier", f"must be at least 1, got {multiplier}")
    jitter = default.jitter
    if policy.HasField("jitter"):
        jitter = policy.jitter
        if not 0 <= jitter <= 1:
            raise invalid_argument(f"{field}.jitter", f"must be between 0 and 1, got {jitter}")
    timeout = default.attempt_timeout
    if policy.HasField("attempt_timeout"):
        timeout = _seconds(f"{field}.attempt_timeout", policy.attempt_timeout)
        if not 0 < timeout <= 3600:
            raise invalid_argument(f"{field}.attempt_timeout", "must be positive and at most 1h")
    codes = default.non_retryable_codes
    if policy.HasField("non_retryable_status_codes"):
        listed = policy.non_retryable_status_codes.codes
        bad = [c for c in listed if not 1 <= c <= 16]
        if bad:
            raise invalid_argument(
                f"{field}.non_retryable_status_codes", f"{bad} are not gRPC error codes (1-16)"
            )
        codes = frozenset(listed)
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=initial,
        backoff_multiplier=multiplier,
        max_backoff=maximum,
        jitter=jitter,
        attempt_timeout=timeout,
        non_retryable_codes=codes,
    )
