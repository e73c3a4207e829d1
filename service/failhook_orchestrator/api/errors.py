"""Every error the API returns is made here (AIP-193): a status code, a message naming the field,
and rich details (``google.rpc.BadRequest`` / ``ErrorInfo``) in ``grpc-status-details-bin``."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import SQLAlchemyError

from failhook_orchestrator.engine.errors import (
    AlreadyExistsError,
    EngineError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from failhook_orchestrator.engine.limits import ERROR_DOMAIN

__all__ = ["ApiError", "abort_with", "internal_error", "invalid_argument", "maps_errors"]

log = logging.getLogger("failhook.api")
DOMAIN = ERROR_DOMAIN

_ENGINE_CODES: dict[type[EngineError], tuple[grpc.StatusCode, str]] = {
    NotFoundError: (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    AlreadyExistsError: (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS"),
    FailedPreconditionError: (grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    UnavailableError: (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    InvalidArgumentError: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
}


def _engine_code(error: EngineError) -> tuple[grpc.StatusCode, str]:
    """The status of an engine error, by its nearest mapped class (subclasses included)."""
    for cls in type(error).__mro__:
        if cls in _ENGINE_CODES:
            return _ENGINE_CODES[cls]
    return grpc.StatusCode.INTERNAL, "INTERNAL"


class ApiError(Exception):
    """An error to return to the caller, with the request field at fault."""

    def __init__(self, code: grpc.StatusCode, message: str, *, field: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.reason = reason or code.name

    def to_status(self) -> grpc.Status:
        """The error as a rich status."""
        details: list[any_pb2.Any] = []
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN)
        if self.field:
            info.metadata["field"] = self.field
        details.append(_pack(info))
        if self.field and self.code is grpc.StatusCode.INVALID_ARGUMENT:
            violation = error_details_pb2.BadRequest.FieldViolation(
                field=self.field, description=self.message
            )
            details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
        code_value: int = self.code.value[0]
        status = status_pb2.Status(code=code_value, message=self.message, details=details)
        return rpc_status.to_status(status)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def invalid_argument(field: str, message: str) -> ApiError:
    """An INVALID_ARGUMENT error naming ``field``."""
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}", field=field, reason="INVALID_ARGUMENT"
    )


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def maps_errors(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Turn ApiError and engine errors raised by a servicer method into rich gRPC statuses."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await handler(self, request, context)
        except ApiError as error:
            await abort_with(context, error)
        except EngineError as error:
            code, reason = _engine_code(error)
            await abort_with(context, ApiError(code, error.message, field=error.field, reason=reason))
        except Exception as error:  # the caller gets a generic status, never the text
            await abort_with(context, internal_error(handler.__name__, error))

    return wrapper


#: Failures of the database or of the connection to it: worth retrying, say so with UNAVAILABLE.
_UNAVAILABLE = (SQLAlchemyError, OSError, TimeoutError)


def internal_error(method: str, error: Exception) -> ApiError:
    """The status for an unexpected exception: UNAVAILABLE for the database, else INTERNAL.

    Neither the message nor the log carries the exception's text: a database error's text holds
    the SQL and may hold the statement's parameters (a run's payload and headers). The log has
    the exception's type, its SQLSTATE when there is one, and a reference the caller is given.
    """
    reference = uuid.uuid4().hex[:12]
    if isinstance(error, _UNAVAILABLE):
        origin = getattr(error, "orig", None) or error
        sqlstate = getattr(origin, "sqlstate", None) or getattr(origin, "pgcode", None) or "-"
        log.error(
            "%s: database unavailable: %s / %s (sqlstate %s) [ref %s]",
            method,
            type(error).__name__,
            type(origin).__name__,
            sqlstate,
            reference,
        )
        return ApiError(
            grpc.StatusCode.UNAVAILABLE,
            f"the database cannot serve the request now; retry later (ref {reference})",
            reason="DATABASE_UNAVAILABLE",
        )
    log.error("%s: internal error %s [ref %s]", method, type(error).__name__, reference, exc_info=error)
    return ApiError(grpc.StatusCode.INTERNAL, f"internal error (ref {reference})", reason="INTERNAL")


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: ApiError) -> NoReturn:
    """End the call with ``error``'s rich status."""
    # grpc's type stubs predate ServicerContext.abort_with_status in grpc.aio.
    await context.abort_with_status(error.to_status())  # type: ignore[attr-defined]
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
