"""Facts shared by the API's validation, the config file and the engine: one source for each.

The API (``api/validation.py``) and the configuration (``config.py``) check retry policies,
names and codes with the functions here, so a config file cannot set what a request could not,
and the bounds on durations and times keep every stored time convertible back to a
``google.protobuf.Timestamp`` (a run listing never fails on a stored value).

Nothing here imports gRPC or SQL: status codes are kept as numbers.

The last section bounds what an endpoint or a hook hands back (an untrusted answer): a name too
long for its column, a NUL byte that PostgreSQL's text and JSONB types refuse, a delay beyond
what a BIGINT of microseconds holds, or an output too large for a client to read back would
otherwise fail the write again at every retry. Names that identify steps are refused (the run
fails, non-retryable: cutting a name would break the replay); free text is cut and cleaned;
delays are capped. The same rules hold on SQLite and PostgreSQL (``docs/runbook.md``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from .model import HookState
from .policy import RetryPolicy
from .states import RunState

__all__ = [
    "DEFAULT_MAX_STEP_OUTPUT_BYTES",
    "ERROR_CODES",
    "ERROR_DOMAIN",
    "HEADER_NAME",
    "HOOK_STATE_VALUES",
    "MAX_ATTEMPTS",
    "MAX_ATTEMPT_TIMEOUT_SECONDS",
    "MAX_BACKOFF_SECONDS",
    "MAX_DURATION_SECONDS",
    "MAX_EXECUTION_TIMEOUT_SECONDS",
    "MAX_RETRY_AFTER_SECONDS",
    "MAX_RETRY_AFTER_US",
    "MAX_SLEEP_SECONDS",
    "MAX_SLEEP_US",
    "MAX_STEP_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TIME_US",
    "MIN_TIME_US",
    "RUN_STATE_VALUES",
    "STATUS_CODES",
    "STATUS_CODE_NAMES",
    "WORKFLOW_NAME",
    "WORKFLOW_NAME_RULE",
    "PolicyViolation",
    "check_policy",
    "clamp_time_us",
    "clean_text",
    "code_name",
    "step_name_problem",
    "unknown_codes",
]

#: The ``google.rpc.ErrorInfo`` domain of every error failhook makes (orchestrator and SDK).
ERROR_DOMAIN = "failhook.dev"

#: Canonical gRPC status code names by number (``grpc.StatusCode`` without importing gRPC).
STATUS_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
#: Every status code (a filter on ``fail_status`` may name OK's 0 as well).
STATUS_CODES = range(len(STATUS_CODE_NAMES))
#: The error codes: what a failed call can end with, so what a policy may list as non-retryable.
ERROR_CODES = range(1, len(STATUS_CODE_NAMES))

#: Values of ``failhook.v1.RunState`` and ``HookState`` a filter may hold (0 means "any").
RUN_STATE_VALUES = frozenset(int(s) for s in RunState)
HOOK_STATE_VALUES = frozenset(int(s) for s in HookState)

#: A workflow name: 1-128 characters of letters, digits and ``._:/-``, alphanumeric first.
WORKFLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
WORKFLOW_NAME_RULE = "1-128 letters, digits and '._:/-', alphanumeric first"
#: A run header's name (sent as gRPC metadata): lowercase letters, digits and ``_.-``.
HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")

# -- durations and times -------------------------------------------------------------------
#: Attempts of one step (or hook delivery), the first included.
MAX_ATTEMPTS = 100
#: Longest backoff between two attempts (``initial_backoff`` and ``max_backoff``): one day.
MAX_BACKOFF_SECONDS = 86_400.0
#: Longest deadline of one call.
MAX_ATTEMPT_TIMEOUT_SECONDS = 3_600.0
#: Longest ``retry_after`` a worker may ask for; a longer one is cut to this (one day).
MAX_RETRY_AFTER_SECONDS = 86_400.0
#: Longest durable sleep a workflow may ask for: 365 days.
MAX_SLEEP_SECONDS = 365 * 86_400.0
#: Longest duration any setting may hold (ten years): far from every representable limit.
MAX_DURATION_SECONDS = 10 * 365 * 86_400.0
#: Longest execution timeout of a run (3660 days: ten years of sleeps and backoffs fit).
MAX_EXECUTION_TIMEOUT_SECONDS = 3660 * 86_400.0
#: The range of ``google.protobuf.Timestamp`` (0001-01-01 to 9999-12-31), in epoch microseconds.
MIN_TIME_US = -62_135_596_800 * 1_000_000
MAX_TIME_US = (253_402_300_800 * 1_000_000) - 1


def code_name(code: int) -> str:
    """The canonical name of a gRPC status code (``CODE_<n>`` for a number outside the table)."""
    return STATUS_CODE_NAMES[code] if code in STATUS_CODES else f"CODE_{code}"


def unknown_codes(codes: Iterable[int], allowed: range = ERROR_CODES) -> list[int]:
    """The values of ``codes`` that are not in ``allowed``, sorted."""
    return sorted({c for c in codes if c not in allowed})


def clamp_time_us(micros: int) -> int:
    """``micros`` brought into the range a Timestamp can hold."""
    return max(MIN_TIME_US, min(MAX_TIME_US, micros))


class PolicyViolation(ValueError):
    """A retry policy breaks a rule; ``field`` names the policy's field (e.g. ``max_backoff``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _duration(field: str, seconds: float, maximum: float, *, positive: bool = False) -> None:
    if not math.isfinite(seconds) or seconds < 0:
        raise PolicyViolation(field, f"must be a finite, non-negative duration, got {seconds}")
    if positive and seconds == 0:
        raise PolicyViolation(field, "must be positive")
    if seconds > maximum:
        raise PolicyViolation(field, f"is {seconds}s; at most {maximum:g}s is allowed")


def check_policy(policy: RetryPolicy) -> RetryPolicy:
    """Return ``policy`` if it keeps every rule, else raise :class:`PolicyViolation`.

    The rules: 1 <= max_attempts <= 100; backoffs within 0..1 day with max >= initial; a finite
    multiplier >= 1; jitter in [0, 1]; an attempt timeout in (0, 1 h]; non-retryable codes are
    error codes (1-16).
    """
    if isinstance(policy.max_attempts, bool) or not 1 <= policy.max_attempts <= MAX_ATTEMPTS:
        raise PolicyViolation(
            "max_attempts", f"must be between 1 and {MAX_ATTEMPTS}, got {policy.max_attempts}"
        )
    _duration("initial_backoff", policy.initial_backoff, MAX_BACKOFF_SECONDS)
    _duration("max_backoff", policy.max_backoff, MAX_BACKOFF_SECONDS)
    if policy.max_backoff < policy.initial_backoff:
        raise PolicyViolation(
            "max_backoff",
            f"({policy.max_backoff}s) must not be less than initial_backoff ({policy.initial_backoff}s)",
        )
    if not math.isfinite(policy.backoff_multiplier) or policy.backoff_multiplier < 1:
        raise PolicyViolation("backoff_multiplier", f"must be at least 1, got {policy.backoff_multiplier}")
    if not 0 <= policy.jitter <= 1:
        raise PolicyViolation("jitter", f"must be between 0 and 1, got {policy.jitter}")
    _duration("attempt_timeout", policy.attempt_timeout, MAX_ATTEMPT_TIMEOUT_SECONDS, positive=True)
    bad = unknown_codes(policy.non_retryable_codes)
    if bad:
        raise PolicyViolation("non_retryable_codes", f"{bad} are not gRPC error codes (1-16)")
    return policy


# -- what workers hand back -----------------------------------------------------------------
#: Longest step name (the width of the ``steps.name`` and ``dead_letters.failed_step`` columns).
MAX_STEP_NAME_CHARS = 256
#: Longest status message, hook error or hook result kept; longer text is cut.
MAX_TEXT_CHARS = 4096
#: Largest output of one step (or of the run) by default: 1 MiB, like the payload.
DEFAULT_MAX_STEP_OUTPUT_BYTES = 1024 * 1024
#: The bounds above on what a worker asks for, in microseconds: a sleep, a retry-after.
MAX_SLEEP_US = int(MAX_SLEEP_SECONDS * 1_000_000)
MAX_RETRY_AFTER_US = int(MAX_RETRY_AFTER_SECONDS * 1_000_000)

_ELLIPSIS = "…"


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` without NUL characters (shown as U+FFFD) and cut to ``limit`` characters."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) > limit:
        text = text[: limit - 1] + _ELLIPSIS
    return text


def step_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a step's name, or None when it can."""
    if len(name) > MAX_STEP_NAME_CHARS:
        return (
            f"the endpoint reported a step name of {len(name)} characters; the limit is {MAX_STEP_NAME_CHARS}"
        )
    if "\x00" in name:
        return "the endpoint reported a step name containing a NUL character"
    return None
