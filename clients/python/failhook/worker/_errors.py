"""The exceptions of the worker SDK.

Raise them from a step function (or the workflow body) to fail the step with a chosen gRPC
status code, error body and trailing metadata; the SDK turns them into the failed ``RunStep``
call's status, with a ``failhook.v1.StepError`` status detail. Any other exception fails the
step with ``UNKNOWN`` and its ``"ExceptionType: message"`` (never a traceback).

Hierarchy::

    Exception
    └── StepError                 any code (UNKNOWN by default), retried under the run's policy
        ├── RetryAfterError       UNAVAILABLE, asks the orchestrator to retry after a delay
        │                         (with ``whole_target=True``: to pause every run's calls to
        │                         the endpoint for that long, e.g. until a rate limit resets)
        └── NonRetryableError     FAILED_PRECONDITION, fails the run at once (no retry)
            ├── HistoryMismatchError   the workflow's steps contradict the recorded history
            └── StepNotAllowedError    a step was created where none can be (raised by the SDK)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType

import grpc

__all__ = [
    "MAX_METADATA_BYTES",
    "HistoryMismatchError",
    "NonRetryableError",
    "RetryAfterError",
    "StepError",
    "StepNotAllowedError",
]

MAX_METADATA_BYTES = 1024
"""The most trailing metadata (keys and values, in bytes) a :class:`StepError` may carry."""

_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")
_METADATA_VALUE = re.compile(r"[\x20-\x7e]*")


def _checked_metadata(metadata: Mapping[str, str] | None) -> Mapping[str, str]:
    """Return ``metadata`` with lowercase keys, read-only; reject what gRPC cannot send as text."""
    checked: dict[str, str] = {}
    for raw_key, value in (metadata or {}).items():
        key = raw_key.lower()
        if not _METADATA_KEY.fullmatch(key) or key.startswith("grpc-") or key.endswith("-bin"):
            raise ValueError(
                f"invalid trailing metadata key {raw_key!r}: use letters, digits and '-_.', "
                "not starting with 'grpc-' nor ending with '-bin'"
            )
        if not isinstance(value, str) or not _METADATA_VALUE.fullmatch(value):
            raise ValueError(f"invalid trailing metadata value for {key!r}: printable ASCII text only")
        checked[key] = value
    size = sum(len(key) + len(value) for key, value in checked.items())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"trailing metadata of {size} bytes exceeds {MAX_METADATA_BYTES} bytes")
    return MappingProxyType(checked)


class StepError(Exception):
    """Fail the current step with a chosen status code, error body and trailing metadata.

    The orchestrator records ``code`` as the failure's ``fail_status``, ``response`` as its
    ``fail_response`` (the message's bytes when ``response`` is empty) and ``metadata`` as its
    ``fail_headers``, then retries the step under the run's retry policy (unless the code is one
    the policy never retries, or ``non_retryable`` is set).

    Attributes:
        message: The status message.
        code: The gRPC status code of the failed call (never ``OK``).
        response: The error body, sent as ``StepError.response``.
        metadata: Trailing metadata sent with the error (lowercase text keys).
        retry_after: Asks the orchestrator to wait this long before the next attempt.
        non_retryable: Fails the run at once, whatever the code.
        target_cooldown: Asks the orchestrator to pause every call to this endpoint's target
            for this long, for every run (sent as ``StepError.target_cooldown``).
    """

    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    """The code used when none is given."""
    reason: str | None = None
    """If set, sent as a ``google.rpc.ErrorInfo`` reason (domain ``failhook.dev``) in the status."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        response: bytes | str = b"",
        metadata: Mapping[str, str] | None = None,
        retry_after: timedelta | None = None,
        non_retryable: bool = False,
        target_cooldown: timedelta | None = None,
    ) -> None:
        """Create the error.

        Args:
            message: The status message (also the default error body).
            code: The gRPC status code; ``default_code`` of the class when ``None``.
            response: The error body, bytes or text (encoded as UTF-8). Only its first 2 KiB are
                sent (gRPC trailers are small).
            metadata: Trailing metadata: lowercase keys of letters, digits and ``-_.`` (not
                ``grpc-*`` nor ``*-bin``), printable ASCII values, at most
                :data:`MAX_METADATA_BYTES` in all. Keys are lowercased.
            retry_after: The delay to ask for before the next attempt; must not be negative.
            non_retryable: Fail the run now instead of retrying the step.
            target_cooldown: Pause the whole target (every run's calls to this endpoint) for
                this long; must be positive. The orchestrator parks the runs bound for it
                without using up their attempts, and honours at most 24 hours.

        Raises:
            ValueError: If ``code`` is ``OK``, the metadata is invalid, ``retry_after`` is
                negative or ``target_cooldown`` is not positive.
        """
        super().__init__(message)
        resolved = self.default_code if code is None else code
        if resolved is grpc.StatusCode.OK:
            raise ValueError("a StepError cannot have the status code OK")
        if retry_after is not None and retry_after < timedelta(0):
            raise ValueError(f"retry_after must not be negative, got {retry_after}")
        if target_cooldown is not None and target_cooldown <= timedelta(0):
            raise ValueError(f"target_cooldown must be positive, got {target_cooldown}")
        self.message = message
        self.code = resolved
        self.response = response.encode() if isinstance(response, str) else bytes(response)
        self.metadata = _checked_metadata(metadata)
        self.retry_after = retry_after
        self.non_retryable = non_retryable
        self.target_cooldown = target_cooldown


class NonRetryableError(StepError):
    """Fail the run now: the step is not retried, whatever the retry policy says.

    The default code is ``FAILED_PRECONDITION``; ``non_retryable`` is always set.
    """

    default_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        response: bytes | str = b"",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Create the error.

        Args:
            message: The status message (also the default error body).
            code: The gRPC status code; ``FAILED_PRECONDITION`` when ``None``.
            response: The error body, bytes or text.
            metadata: Trailing metadata, as for :class:`StepError`.
        """
        super().__init__(message, code=code, response=response, metadata=metadata, non_retryable=True)


class RetryAfterError(StepError):
    """Ask the orchestrator to retry the step after ``delay`` instead of the policy's backoff.

    The attempt still counts towards the policy's ``max_attempts``. The default code is
    ``UNAVAILABLE``. With ``whole_target=True`` the delay applies to the whole endpoint: the
    orchestrator pauses every run's calls to it for ``delay`` (a rate limit that resets at a
    known time, an upstream cooldown), parking those runs without using up their attempts::

        raise RetryAfterError(timedelta(seconds=reset_in), "rate limited", whole_target=True)
    """

    default_code = grpc.StatusCode.UNAVAILABLE

    def __init__(
        self,
        delay: timedelta,
        message: str | None = None,
        *,
        code: grpc.StatusCode | None = None,
        response: bytes | str = b"",
        metadata: Mapping[str, str] | None = None,
        whole_target: bool = False,
    ) -> None:
        """Create the error.

        Args:
            delay: How long the orchestrator should wait before the next attempt (not negative;
                positive with ``whole_target``).
            message: The status message; ``"retry after <delay>"`` when ``None``.
            code: The gRPC status code; ``UNAVAILABLE`` when ``None``.
            response: The error body, bytes or text.
            metadata: Trailing metadata, as for :class:`StepError`.
            whole_target: Pause every run's calls to this endpoint for ``delay``, not only this
                run's next attempt.

        Raises:
            ValueError: If ``delay`` is negative, or not positive with ``whole_target``.
        """
        text = f"retry after {delay.total_seconds():g}s" if message is None else message
        super().__init__(
            text,
            code=code,
            response=response,
            metadata=metadata,
            retry_after=delay,
            target_cooldown=delay if whole_target else None,
        )
        self.delay = delay
        self.whole_target = whole_target


class HistoryMismatchError(NonRetryableError):
    """The workflow's steps contradict the run's recorded history (raised by the SDK).

    Typically the workflow's code changed under a running run: a step was renamed, added or
    removed before the last recorded one, or a step name is used twice. It is never retried.
    Its status also carries a ``google.rpc.ErrorInfo`` with reason ``HISTORY_MISMATCH`` and
    domain ``failhook.dev``, so that the orchestrator can record
    ``FAILURE_REASON_HISTORY_MISMATCH``.
    """

    reason = "HISTORY_MISMATCH"


class StepNotAllowedError(NonRetryableError):
    """A step was requested where none can be created (raised by the SDK).

    For example from a failure hook, from inside another step's function, from a task other
    than the workflow's own (``asyncio.gather``/``create_task`` over ``ctx.run``), or with an
    invalid name or duration.
    """
