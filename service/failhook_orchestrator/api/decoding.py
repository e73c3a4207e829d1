"""Requests that do not decode are INVALID_ARGUMENT naming what is wrong, not UNKNOWN.

gRPC calls a method's request deserializer before the servicer, and a
``DecodeError`` raised there ends the call as UNKNOWN with a logged traceback. The
:class:`RequestDecodingInterceptor` gives each unary method a deserializer that never raises: a
body that does not parse becomes an :class:`Undecodable` value, and the method's behaviour
answers it with INVALID_ARGUMENT before the servicer runs. The message names the field when the
cause is a string that is not UTF-8 (found by walking the wire format), else says the body is
not a valid message of the method's request type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from .errors import ApiError, abort_with, invalid_argument

__all__ = ["RequestDecodingInterceptor", "Undecodable", "describe_undecodable"]

# grpc's classes are generic only in the stubs.
if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    _ServerInterceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Context = grpc.aio.ServicerContext
    _ServerInterceptor = grpc.aio.ServerInterceptor


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request body that did not parse, and why."""

    error: ApiError


class _Malformed(Exception):
    """The wire format itself is broken at ``offset``."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed(pos)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _bad_utf8_field(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path of the first string field holding invalid UTF-8, or None; _Malformed if broken."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        elif wire_type == 2:
            length, start = _varint(data, pos)
            pos = start + length
            if pos > len(data):
                raise _Malformed(start)
            field = descriptor.fields_by_number.get(number)
            if field is None:
                continue
            chunk = data[start:pos]
            if field.type == FieldDescriptor.TYPE_STRING:
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError:
                    return prefix + field.name
            elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
                entry = field.message_type
                found = _bad_utf8_field(entry, chunk, f"{prefix}{field.name}.")
                if found is not None:  # a map entry's ``key`` / ``value`` names the map itself
                    return prefix + field.name if entry.GetOptions().map_entry else found
        else:
            raise _Malformed(pos)
        if pos > len(data):
            raise _Malformed(len(data))
    return None


def describe_undecodable(descriptor: Descriptor, data: bytes) -> ApiError:
    """The INVALID_ARGUMENT error for a body that failed to parse as ``descriptor``."""
    field: str | None = None
    offset: int | None = None
    try:
        field = _bad_utf8_field(descriptor, data)
    except _Malformed as broken:
        offset = broken.offset
    if field is not None:
        return invalid_argument(field, "is not valid UTF-8 (string fields must be UTF-8)")
    where = f" (at byte {offset})" if offset is not None else ""
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request body is not a valid {descriptor.full_name}{where}",
        reason="MALFORMED_REQUEST",
    )


def _safe_deserializer(deserialize: Callable[[bytes], Any], descriptor: Descriptor) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return Undecodable(describe_undecodable(descriptor, data))

    return decode


Behaviour = Callable[[Any, Context], Awaitable[Any]]


def _refusing(behaviour: Behaviour) -> Behaviour:
    async def unary(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await abort_with(context, request.error)
        return await behaviour(request, context)

    return unary


class RequestDecodingInterceptor(_ServerInterceptor):
    """Answer undecodable unary requests with INVALID_ARGUMENT (see the module docstring).

    Args:
        descriptors: Request message descriptors by full method name
            (``/failhook.v1.WorkflowService/StartRun``); other methods pass through.
    """

    def __init__(self, descriptors: dict[str, Descriptor]) -> None:
        self._descriptors = descriptors
        # Per method, the last handler seen and its wrapped copy (made once, not per call).
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    @classmethod
    def for_services(cls, *services: Any) -> RequestDecodingInterceptor:
        """The interceptor for every method of these service descriptors."""
        descriptors = {
            f"/{service.full_name}/{method.name}": method.input_type
            for service in services
            for method in service.methods
        }
        return cls(descriptors)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Return the method's handler with a deserializer that never raises."""
        handler: Handler | None = await continuation(handler_call_details)
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        descriptor = self._descriptors.get(method)
        if (
            handler is None
            or descriptor is None
            or handler.request_streaming
            or handler.response_streaming
            or handler.request_deserializer is None
            or handler.unary_unary is None
        ):
            return handler  # type: ignore[return-value]
        wrapped: Handler = grpc.unary_unary_rpc_method_handler(
            _refusing(handler.unary_unary),  # type: ignore[arg-type]
            request_deserializer=_safe_deserializer(handler.request_deserializer, descriptor),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped
