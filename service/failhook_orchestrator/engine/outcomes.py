"""What one step call can come back with, as the engine sees it (no gRPC types)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HookCallResult", "RunCompleted", "SleepRequested", "StepCompleted", "StepErrored", "StepOutcome"]


@dataclass(frozen=True, slots=True)
class StepCompleted:
    """The endpoint ran one new step."""

    name: str
    output: bytes


@dataclass(frozen=True, slots=True)
class SleepRequested:
    """The endpoint asked for a durable timer."""

    name: str
    duration_us: int


@dataclass(frozen=True, slots=True)
class RunCompleted:
    """The workflow returned its output."""

    output: bytes


@dataclass(frozen=True, slots=True)
class StepErrored:
    """The call failed: an error status, a deadline, an unreachable endpoint or a bad answer.

    Attributes:
        status_code: Canonical gRPC status code.
        message: Status message.
        response: The error body (``StepError.response``), or the message's bytes.
        trailing_metadata: Text trailing metadata of the call.
        step_name: The failing step's name, when the endpoint said it.
        retry_after_us: A delay the endpoint asked for, if any.
        non_retryable: The endpoint marked the error as final.
        protocol_error: The answer broke the protocol (treated as a history mismatch).
        connection_failure: The call never reached the server (connect, resolve or TLS failed).
        target_cooldown_us: The endpoint asked that its whole target be paused this long.
    """

    status_code: int
    message: str
    response: bytes = b""
    trailing_metadata: dict[str, str] = field(default_factory=dict)
    step_name: str = ""
    retry_after_us: int | None = None
    non_retryable: bool = False
    protocol_error: bool = False
    connection_failure: bool = False
    target_cooldown_us: int | None = None


StepOutcome = StepCompleted | SleepRequested | RunCompleted | StepErrored


@dataclass(frozen=True, slots=True)
class HookCallResult:
    """One delivery attempt of a failure hook: ``ok`` with the hook's result, or an error."""

    ok: bool
    result: str = ""
    status_code: int = 0
    message: str = ""
    connection_failure: bool = False
