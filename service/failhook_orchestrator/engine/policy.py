"""Retry policies: defaults, backoff with jitter, and which errors are retried."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_HOOK_POLICY",
    "DEFAULT_NON_RETRYABLE_CODES",
    "DEFAULT_STEP_POLICY",
    "RetryPolicy",
]

# Canonical gRPC codes (grpc.StatusCode values), kept numeric so the engine needs no gRPC import.
INVALID_ARGUMENT = 3
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
FAILED_PRECONDITION = 9
UNIMPLEMENTED = 12
UNAUTHENTICATED = 16

#: Codes that say "asking again will not help".
DEFAULT_NON_RETRYABLE_CODES = frozenset(
    {
        INVALID_ARGUMENT,
        NOT_FOUND,
        ALREADY_EXISTS,
        PERMISSION_DENIED,
        FAILED_PRECONDITION,
        UNIMPLEMENTED,
        UNAUTHENTICATED,
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A complete retry policy (every field set). Durations are in seconds.

    Attributes:
        max_attempts: Attempts of one step, the first included; 1 means no retry.
        initial_backoff: Delay before the first retry.
        backoff_multiplier: Factor applied to the delay after each retry (>= 1).
        max_backoff: Cap of the computed delay.
        jitter: Fraction of each delay that is randomised downwards (0..1).
        attempt_timeout: Deadline of one call.
        non_retryable_codes: gRPC status codes that fail at once.
    """

    max_attempts: int = 4
    initial_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    max_backoff: float = 300.0
    jitter: float = 0.2
    attempt_timeout: float = 30.0
    non_retryable_codes: frozenset[int] = field(default=DEFAULT_NON_RETRYABLE_CODES)

    def backoff(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Delay before the attempt after ``failed_attempt`` (1-based), jitter applied."""
        base = min(self.max_backoff, self.initial_backoff * self.backoff_multiplier ** (failed_attempt - 1))
        if self.jitter <= 0 or base <= 0:
            return base
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)

    def is_retryable_code(self, code: int) -> bool:
        """Tell whether a failure with this status code may be retried."""
        return code not in self.non_retryable_codes

    def allows_another_attempt(self, failed_attempt: int) -> bool:
        """Tell whether an attempt may follow attempt number ``failed_attempt``."""
        return failed_attempt < self.max_attempts


DEFAULT_STEP_POLICY = RetryPolicy()

#: The failure hook's own policy: more patient than a step, because the hook is the last word.
DEFAULT_HOOK_POLICY = RetryPolicy(
    max_attempts=5,
    initial_backoff=1.0,
    backoff_multiplier=2.0,
    max_backoff=30.0,
    jitter=0.2,
    attempt_timeout=30.0,
)
