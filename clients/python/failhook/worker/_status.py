"""The one place that turns exceptions into gRPC error statuses.

A failed ``RunStep`` call carries:

* the status code and message;
* a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer (same code and message)
  whose ``details`` hold one packed ``failhook.v1.StepError`` (step name, error body,
  ``retry_after``, ``non_retryable``, ``target_cooldown``), plus a ``google.rpc.ErrorInfo`` (domain
  ``failhook.dev``) when the error has a machine-readable reason (``HISTORY_MISMATCH``);
* the user's trailing metadata (:attr:`StepError.metadata`), text keys only.

All of it travels in HTTP/2 trailers, which gRPC receivers cap (by default, a call whose
metadata exceeds 8 KiB may be refused and beyond 16 KiB always is, losing the whole status). So
the message is cut to :data:`MAX_MESSAGE_BYTES` and the error body to :data:`MAX_RESPONSE_BYTES`
(both marked ``...[truncated]``); :class:`StepError` limits its metadata to
``MAX_METADATA_BYTES``. Tracebacks are logged on the worker, never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from failhook.v1 import workflow_endpoint_pb2
from failhook.worker._errors import StepError

__all__ = [
    "ERROR_DOMAIN",
    "MAX_MESSAGE_BYTES",
    "MAX_RESPONSE_BYTES",
    "ErrorStatus",
    "abort",
    "describe",
    "step_error_status",
]

ERROR_DOMAIN = "failhook.dev"
"""The ``google.rpc.ErrorInfo.domain`` of the SDK's machine-readable error reasons."""
MAX_MESSAGE_BYTES = 512
"""The longest status message sent, in UTF-8 bytes (it is sent twice: header and details)."""
MAX_RESPONSE_BYTES = 2048
"""The longest error body (``StepError.response``) sent."""

_MARK = b"...[truncated]"


def clip(data: bytes, limit: int) -> bytes:
    """Return ``data`` if it fits in ``limit`` bytes, else its head and a truncation mark."""
    if len(data) <= limit:
        return data
    return data[: limit - len(_MARK)] + _MARK


def clip_text(text: str, limit: int) -> str:
    """Return ``text`` as valid UTF-8 of at most ``limit`` bytes (cut on a character boundary)."""
    data = text.encode("utf-8", "replace")  # lone surrogates cannot be sent
    if len(data) <= limit:
        return data.decode("utf-8")
    return data[: limit - len(_MARK)].decode("utf-8", "ignore") + _MARK.decode()


@dataclass(frozen=True)
class ErrorStatus:
    """A gRPC error status ready to be sent.

    Attributes:
        code: The status code (never OK).
        message: The status message.
        detail: The ``StepError`` detail to pack into ``google.rpc.Status.details``, if any.
        metadata: Extra trailing metadata.
        reason: An ``ErrorInfo`` reason to pack after the detail, if any.
    """

    code: grpc.StatusCode
    message: str
    detail: workflow_endpoint_pb2.StepError | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None


def describe(exc: BaseException) -> str:
    """Return ``"ExceptionType: message"`` (or just the type when the message is empty)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def step_error_status(exc: Exception, step_name: str) -> ErrorStatus:
    """Map an exception raised by a step (or the workflow body) to the failed call's status.

    Args:
        exc: The exception. A :class:`StepError` keeps its code, message, body and metadata;
            anything else becomes ``UNKNOWN`` with ``step "<name>" failed: Type: message``.
        step_name: The step that was running; empty when the error came from the workflow body.

    Returns:
        The status to send.
    """
    if isinstance(exc, StepError):
        detail = workflow_endpoint_pb2.StepError(
            step_name=step_name,
            response=clip(exc.response, MAX_RESPONSE_BYTES),
            non_retryable=exc.non_retryable,
        )
        if exc.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromTimedelta(exc.retry_after)
            detail.retry_after.CopyFrom(delay)
        if exc.target_cooldown is not None:
            detail.target_cooldown.FromTimedelta(exc.target_cooldown)
        return ErrorStatus(exc.code, exc.message, detail, exc.metadata, exc.reason)
    where = f'step "{step_name}"' if step_name else "the workflow"
    message = f"{where} failed: {describe(exc)}"
    return ErrorStatus(grpc.StatusCode.UNKNOWN, message, workflow_endpoint_pb2.StepError(step_name=step_name))


def _trailing_metadata(status: ErrorStatus, message: str) -> tuple[tuple[str, str | bytes], ...]:
    rich = status_pb2.Status(code=status.code.value[0], message=message)
    details: list[Message] = [] if status.detail is None else [status.detail]
    if status.reason is not None:
        details.append(error_details_pb2.ErrorInfo(reason=status.reason, domain=ERROR_DOMAIN))
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        rich.details.append(packed)
    grpc_status: Any = rpc_status.to_status(rich)
    metadata: list[tuple[str, str | bytes]] = list(grpc_status.trailing_metadata)
    metadata.extend(status.metadata.items())
    return tuple(metadata)  # grpc.aio wants a tuple


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: ErrorStatus) -> NoReturn:
    """End the call with ``status`` (raises, as ``context.abort`` does).

    Args:
        context: The call's servicer context.
        status: The status to send.
    """
    message = clip_text(status.message, MAX_MESSAGE_BYTES)
    await context.abort(status.code, message, trailing_metadata=_trailing_metadata(status, message))
