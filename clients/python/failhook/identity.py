"""Caller checks for ``grpc.aio`` servers, run before the handler (user code) of a call.

A ``grpc.aio`` server interceptor sees only the method name and metadata, not the call's
servicer context, so it cannot read the peer's certificate. :class:`GuardInterceptor` therefore
returns a copy of the method's handler whose behaviour first runs a check with the servicer
context and aborts the call when the check denies it. :class:`AllowlistInterceptor` is the check
the SDK's servicers use: only callers whose certificate names an allowed identity get through.

Identities are typed (:class:`failhook.tls.Identity`): an allowed ``spiffe://...`` URI admits a
certificate only through a URI SAN, an allowed DNS name only through a DNS SAN, and a common name
only when the allow-list names it as ``CN=<name>``. A certificate from the same CA whose CN or
DNS SAN merely spells an allowed URI is refused.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

from failhook.tls import Identity, peer_identities

__all__ = [
    "DEFAULT_EXEMPT_SERVICES",
    "AllowlistInterceptor",
    "Check",
    "Denial",
    "GuardInterceptor",
    "current_caller",
    "guard_handler",
    "parse_identities",
    "service_name",
]

DEFAULT_EXEMPT_SERVICES: tuple[str, ...] = ("grpc.health.v1.Health",)
"""Services a guard lets through unchecked by default: health checks come from load balancers."""

_CALLER: ContextVar[str | None] = ContextVar("failhook_caller", default=None)

# grpc's classes are generic only in the stubs.
if TYPE_CHECKING:
    _Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    _Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    _ServerInterceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _Context = grpc.aio.ServicerContext
    _ServerInterceptor = grpc.aio.ServerInterceptor


@dataclass(frozen=True)
class Denial:
    """Why a call is refused.

    Attributes:
        code: The status to end the call with, e.g. ``PERMISSION_DENIED``.
        details: The status message; it reaches the caller.
    """

    code: grpc.StatusCode
    details: str


Check = Callable[[str, Any], "Denial | str"]
"""``check(method, context)``: a :class:`Denial`, or the caller identity the call runs as."""


def service_name(method: str) -> str:
    """Return the service part of a full method name.

    Args:
        method: E.g. ``"/failhook.v1.WorkflowService/StartRun"``.

    Returns:
        E.g. ``"failhook.v1.WorkflowService"``.
    """
    return method.lstrip("/").partition("/")[0]


def current_caller() -> str | None:
    """Return the identity the current call was admitted as by a guard, if any.

    It is set while a guarded handler runs: async handlers of any kind, and synchronous handlers
    with a single response.

    Returns:
        The identity a :class:`GuardInterceptor` resolved, or ``None`` outside a guarded call.
    """
    return _CALLER.get()


def _guard_unary_response(behavior: Callable[..., Any], method: str, check: Check) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behavior):

        async def guarded(request: Any, context: _Context) -> Any:
            outcome = check(method, context)
            if isinstance(outcome, Denial):
                await context.abort(outcome.code, outcome.details)
            token = _CALLER.set(outcome)
            try:
                return await behavior(request, context)
            finally:
                _CALLER.reset(token)

        return guarded

    # A synchronous handler: gRPC runs it in an executor with a synchronous context.
    def guarded_sync(request: Any, context: grpc.ServicerContext) -> Any:
        outcome = check(method, context)
        if isinstance(outcome, Denial):
            context.abort(outcome.code, outcome.details)
        token = _CALLER.set(outcome)
        try:
            return behavior(request, context)
        finally:
            _CALLER.reset(token)

    return guarded_sync


def _guard_stream_response(behavior: Callable[..., Any], method: str, check: Check) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def guarded_gen(request: Any, context: _Context) -> AsyncIterator[Any]:
            outcome = check(method, context)
            if isinstance(outcome, Denial):
                await context.abort(outcome.code, outcome.details)
            token = _CALLER.set(outcome)
            try:
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            finally:
                _CALLER.reset(token)

        return guarded_gen

    if inspect.iscoroutinefunction(behavior):
        # The reader/writer style: the handler calls context.write() and returns None.
        return _guard_unary_response(behavior, method, check)

    # A synchronous generator: gRPC iterates it in an executor, possibly across threads, so the
    # caller context variable is not set here.
    def guarded_iter(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        outcome = check(method, context)
        if isinstance(outcome, Denial):
            context.abort(outcome.code, outcome.details)
        yield from behavior(request, context)

    return guarded_iter


def _present(behavior: Callable[..., Any] | None) -> Callable[..., Any]:
    if behavior is None:
        raise ValueError("the handler has no behaviour for its kind of method")
    return behavior


def guard_handler(handler: _Handler, method: str, check: Check) -> _Handler:
    """Return a copy of ``handler`` whose behaviour runs ``check`` first.

    Works for the four kinds of methods and for async and synchronous behaviours. A denied call
    is aborted with the denial's status before the behaviour is called.

    Args:
        handler: The handler the server would run.
        method: The full method name, passed to ``check``.
        check: Decides with the servicer context.

    Returns:
        A handler of the same kind with the same (de)serializers.
    """
    serde: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            _guard_stream_response(_present(handler.stream_stream), method, check), **serde
        )
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(
            _guard_unary_response(_present(handler.stream_unary), method, check), **serde
        )
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _guard_stream_response(_present(handler.unary_stream), method, check), **serde
        )
    return grpc.unary_unary_rpc_method_handler(
        _guard_unary_response(_present(handler.unary_unary), method, check), **serde
    )


class GuardInterceptor(_ServerInterceptor, abc.ABC):
    """Base of interceptors that admit or refuse each call with its servicer context.

    Subclasses implement :meth:`check`. Unknown methods pass through (gRPC answers them with
    UNIMPLEMENTED), as do methods of the exempt services.

    Args:
        exempt_services: Full service names (e.g. ``"grpc.health.v1.Health"``) not checked.
    """

    def __init__(self, *, exempt_services: Collection[str] = DEFAULT_EXEMPT_SERVICES) -> None:
        if isinstance(exempt_services, str):
            raise TypeError("exempt_services must be a collection of service names, not a string")
        self._exempt = frozenset(exempt_services)
        # Per method, the last handler guarded and its guarded copy: the handler a server
        # resolves for a method is usually the same object call after call, so it is wrapped once.
        self._guarded: dict[str, tuple[_Handler, _Handler]] = {}

    @abc.abstractmethod
    def check(self, method: str, context: Any) -> Denial | str:
        """Decide whether a call may run; called before its handler, on the event loop or in the
        executor thread of a synchronous handler, so it must not block.

        Args:
            method: The full method name.
            context: The call's servicer context (``grpc.aio`` or synchronous).

        Returns:
            A :class:`Denial`, or the identity the call is admitted as.
        """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        """Return the next handler, guarded unless its service is exempt.

        Args:
            continuation: Resolves the handler of the call.
            handler_call_details: The method name and invocation metadata.

        Returns:
            The guarded handler (``None`` for unknown methods, despite the annotation).
        """
        handler: _Handler | None = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler  # type: ignore[return-value]
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if service_name(method) in self._exempt:
            return handler
        guarded = guard_handler(handler, method, self.check)
        self._guarded[method] = (handler, guarded)
        return guarded


def parse_identities(identities: Collection[str | Identity], *, what: str) -> frozenset[Identity]:
    """Read a collection of identities as written in configuration (see :meth:`Identity.parse`).

    Args:
        identities: Typed identities, or their written forms.
        what: The name of the argument, for errors.

    Returns:
        The typed identities.

    Raises:
        TypeError: If ``identities`` is a single string.
        ValueError: If an entry is not a certificate identity; the message names it.
    """
    if isinstance(identities, str):
        raise TypeError(f"{what} must be a collection of identities, not a string")
    return frozenset(i if isinstance(i, Identity) else Identity.parse(i) for i in identities)


class AllowlistInterceptor(GuardInterceptor):
    """Admit only callers whose certificate names one of the allowed identities.

    A call without a peer identity (plaintext, or no client certificate) ends with
    UNAUTHENTICATED; a call whose identities (see :func:`failhook.tls.peer_identities`) are all
    off the list ends with PERMISSION_DENIED naming the first of them. Matching is exact and by
    kind: ``spiffe://failhook.dev/orchestrator`` on the list admits a certificate with that URI
    SAN, never one whose common name or DNS SAN has that text; ``orchestrator.internal`` admits
    that DNS SAN (case-insensitively); ``CN=orchestrator`` admits that subject common name, which
    is trusted only when written so.

    Args:
        allowed: The identities to admit, e.g. ``["spiffe://failhook.dev/orchestrator"]``, as
            written forms or :class:`failhook.tls.Identity` values.
        exempt_services: Services not checked; the health service by default.

    Raises:
        TypeError: If ``allowed`` is a single string.
        ValueError: If ``allowed`` is empty, which would refuse every call, or an entry is not a
            URI, a DNS name or ``CN=<name>``.
    """

    def __init__(
        self,
        allowed: Collection[str | Identity],
        *,
        exempt_services: Collection[str] = DEFAULT_EXEMPT_SERVICES,
    ) -> None:
        super().__init__(exempt_services=exempt_services)
        self._allowed = parse_identities(allowed, what="allowed")
        if not self._allowed:
            raise ValueError("the allow-list is empty: every call would be refused")

    @property
    def allowed(self) -> frozenset[Identity]:
        """The identities admitted."""
        return self._allowed

    def check(self, method: str, context: Any) -> Denial | str:
        """Admit the call if one of the peer's identities is allowed.

        Args:
            method: The full method name.
            context: The call's servicer context.

        Returns:
            The matching identity's written form, or the denial.
        """
        identities = peer_identities(context)
        if not identities:
            return Denial(grpc.StatusCode.UNAUTHENTICATED, f"{method} requires a client certificate")
        for identity in identities:
            if identity in self._allowed:
                return str(identity)
        return Denial(
            grpc.StatusCode.PERMISSION_DENIED,
            f"identity {str(identities[0])!r} is not allowed to call {method}",
        )
