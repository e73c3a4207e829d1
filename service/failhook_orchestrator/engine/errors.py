"""Errors the engine reports to its callers (the API maps them to gRPC status codes)."""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "EngineError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "UnavailableError",
]


class EngineError(Exception):
    """Base of the engine's errors; ``field`` names the request field at fault, if any."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFoundError(EngineError):
    """The named run or dead letter does not exist."""


class AlreadyExistsError(EngineError):
    """A run with the requested id exists with other parameters."""


class InvalidArgumentError(EngineError):
    """A request value is out of range for the resource it names (e.g. more steps than it has)."""


class FailedPreconditionError(EngineError):
    """The resource is not in a state that allows the operation."""


class UnavailableError(EngineError):
    """The store cannot be reached now (a database restart or failover); the call may be retried."""
