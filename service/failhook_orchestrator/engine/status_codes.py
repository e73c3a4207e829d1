"""Canonical gRPC status codes by number, for messages (the engine imports no gRPC)."""

from __future__ import annotations

__all__ = ["code_name"]

_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip


def code_name(code: int) -> str:
    """The name of a canonical status code (``CODE_<n>`` for an unknown one)."""
    return _CODE_NAMES[code] if 0 <= code < len(_CODE_NAMES) else f"CODE_{code}"
