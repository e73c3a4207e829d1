"""``Worker``: the registry of workflows and the ``grpc.aio`` server that hosts them.

The server also answers the standard ``grpc.health.v1.Health`` service, for load balancers and
probes: SERVING (overall and for ``failhook.v1.WorkflowEndpoint`` and ``failhook.v1.FailureHook``)
while the worker accepts work, NOT_SERVING from the moment a graceful stop begins. Like the
orchestrator's, it needs no allow-listed identity: with TLS any certificate from the CA may ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    workflow_endpoint_pb2,
    workflow_endpoint_pb2_grpc,
)
from failhook.worker._context import WorkflowContext
from failhook.worker._servicers import FailureHookServicer, WorkflowEndpointServicer
from failhook.worker._workflow import Workflow, check_workflow_name

if TYPE_CHECKING:
    from failhook.tls import Identity, TLSFiles

    ServerInterceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
else:
    ServerInterceptor = grpc.aio.ServerInterceptor

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "Worker"]

_LOG = logging.getLogger("failhook.worker")

R = TypeVar("R")

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The default limit of one message: ``RunStepRequest`` carries every completed step's output."""

_HEALTH_SERVICES: tuple[str, ...] = (
    "",
    workflow_endpoint_pb2.DESCRIPTOR.services_by_name["WorkflowEndpoint"].full_name,
    failure_hook_pb2.DESCRIPTOR.services_by_name["FailureHook"].full_name,
)
"""The names a started worker reports in ``grpc.health.v1.Health``: the server (``""``) and its
two services."""

_PLAINTEXT_WARNING = (
    "failhook worker serving PLAINTEXT on %s: no TLS and no caller authentication, so anyone who "
    "can reach this port can run workflow steps and call failure hooks. Development only."
)


class Worker:
    """Hosts workflows and their failure handlers: ``WorkflowEndpoint`` and ``FailureHook``.

    Example::

        worker = Worker(tls=TLSFiles.from_dir(Path("var/certs"), "worker"))

        @worker.workflow("order")
        async def order(ctx: WorkflowContext) -> dict[str, str]:
            charge = await ctx.run("charge", charge_card, ctx.payload)
            await ctx.sleep("cool-off", timedelta(seconds=5))
            return {"charge": charge}

        @order.on_failure
        async def failed(ctx: FailureContext, fail_status: int, fail_response: str,
                         fail_headers: Mapping[str, str]) -> str | None:
            return "refunded"

        worker.serve("0.0.0.0:50052")

    The server it starts also answers ``grpc.health.v1.Health`` (SERVING while it accepts work,
    NOT_SERVING once :meth:`stop` begins), open to any caller the transport admits.
    """

    def __init__(
        self,
        *,
        tls: TLSFiles | None = None,
        allowed_identities: Collection[str] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        reuse_port: bool = False,
    ) -> None:
        """Create a worker with no workflows.

        Args:
            tls: The worker's CA, certificate and key. The server then requires client
                certificates from that CA (mutual TLS) and admits only ``allowed_identities``.
            allowed_identities: The certificate identities allowed to run steps and failure
                handlers, matched by kind (see :class:`failhook.identity.AllowlistInterceptor`):
                a URI such as ``spiffe://failhook.dev/orchestrator`` matches only a URI SAN, a DNS
                name only a DNS SAN, and a subject common name only when written ``CN=<name>``.
                ``None`` means the orchestrator's (``failhook.certs.ORCHESTRATOR_IDENTITY``) with
                ``tls``, and no check with ``start(server_credentials=...)``. The health service
                is open to any caller the transport admits.
            max_message_bytes: The largest message received or sent.
            reuse_port: Let several processes listen on the same port (``SO_REUSEPORT``). Off by
                default, so that a port already in use is an error rather than shared silently.

        Raises:
            TypeError: If ``allowed_identities`` is a single string.
            ValueError: If an allowed identity is not a URI, a DNS name or ``CN=<name>``.
        """
        from failhook.identity import parse_identities  # noqa: PLC0415 (optional dependency order)

        self._tls = tls
        self._allowed_identities = (
            None
            if allowed_identities is None
            else parse_identities(allowed_identities, what="allowed_identities")
        )
        self._max_message_bytes = max_message_bytes
        self._reuse_port = reuse_port
        self._workflows: dict[str, Workflow[Any]] = {}
        self._server: grpc.aio.Server | None = None
        self._health: Any = None  # grpc_health's asyncio servicer (untyped in its stubs)
        self._port: int | None = None

    @property
    def workflows(self) -> Mapping[str, Workflow[Any]]:
        """The registered workflows by name (read-only)."""
        return MappingProxyType(self._workflows)

    @property
    def port(self) -> int | None:
        """The port the server listens on while started, else ``None``."""
        return self._port

    def workflow(self, name: str) -> Callable[[Callable[[WorkflowContext], Awaitable[R]]], Workflow[R]]:
        """Register a workflow function under ``name`` (a decorator).

        Args:
            name: The workflow's name, as given to ``StartRun``: 1 to 128 characters of letters,
                digits and ``._:/-``, starting with a letter or digit.

        Returns:
            A decorator turning ``async def fn(ctx: WorkflowContext) -> R`` into a
            :class:`Workflow`, whose ``on_failure`` registers the failure handler.

        Raises:
            ValueError: If the name is invalid or already registered.
        """
        check_workflow_name(name)
        if name in self._workflows:
            raise ValueError(f'workflow "{name}" is already registered')

        def register(fn: Callable[[WorkflowContext], Awaitable[R]]) -> Workflow[R]:
            return self.add_workflow(Workflow(name, fn))

        return register

    def add_workflow(self, workflow: Workflow[R]) -> Workflow[R]:
        """Register an existing :class:`Workflow` (for example one shared by several workers).

        Args:
            workflow: The workflow.

        Returns:
            ``workflow``.

        Raises:
            ValueError: If a workflow with its name is already registered.
        """
        if workflow.name in self._workflows:
            raise ValueError(f'workflow "{workflow.name}" is already registered')
        self._workflows[workflow.name] = workflow
        return workflow

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Add the worker's two servicers to a server you build and run yourself.

        Health, the allow-list and tracing are then yours to add, as :meth:`start` does.

        Args:
            server: A ``grpc.aio`` server, not started yet.
        """
        workflows = self.workflows
        workflow_endpoint_pb2_grpc.add_WorkflowEndpointServicer_to_server(
            WorkflowEndpointServicer(workflows), server
        )
        failure_hook_pb2_grpc.add_FailureHookServicer_to_server(FailureHookServicer(workflows), server)

    def _security(
        self,
        server_credentials: grpc.ServerCredentials | None,
        interceptors: Sequence[ServerInterceptor],
        insecure: bool,
    ) -> tuple[grpc.ServerCredentials | None, list[ServerInterceptor]]:
        """Choose the credentials and the interceptors (the allow-list first)."""
        if (self._tls is not None or server_credentials is not None) and insecure:
            raise ValueError("insecure=True contradicts the TLS credentials given")
        if self._tls is not None and server_credentials is not None:
            raise ValueError("give either Worker(tls=...) or start(server_credentials=...), not both")
        if self._tls is None and server_credentials is None:
            if not insecure:
                raise ValueError(
                    "refusing to serve plaintext: give Worker(tls=...) or start(server_credentials=...), "
                    "or pass insecure=True for local development"
                )
            return None, list(interceptors)
        from failhook.identity import AllowlistInterceptor  # noqa: PLC0415 (optional dependency order)

        allowed: Collection[str | Identity] | None = self._allowed_identities
        if self._tls is not None:
            from failhook.certs import ORCHESTRATOR_IDENTITY  # noqa: PLC0415
            from failhook.tls import server_credentials as tls_credentials  # noqa: PLC0415

            server_credentials = tls_credentials(self._tls, require_client_auth=True)
            allowed = allowed if allowed is not None else (ORCHESTRATOR_IDENTITY,)
        guards: list[ServerInterceptor] = [] if allowed is None else [AllowlistInterceptor(allowed)]
        return server_credentials, [*guards, *interceptors]

    async def start(
        self,
        listen: str = "127.0.0.1:0",
        *,
        server_credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[ServerInterceptor] = (),
        insecure: bool = False,
    ) -> int:
        """Start serving.

        Args:
            listen: ``host:port`` to bind; port 0 picks a free port.
            server_credentials: TLS credentials to serve with (instead of ``Worker(tls=...)``).
            interceptors: Extra server interceptors, run after the identity allow-list.
            insecure: Serve plaintext, without authentication; refused unless set, and logged
                as a warning. For local development only.

        Returns:
            The port bound.

        Raises:
            RuntimeError: If the worker is already started.
            ValueError: If no credentials are given and ``insecure`` is not set, or if both are.
            OSError: If the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("the worker is already started")
        from failhook.tls import server_options  # noqa: PLC0415

        credentials, chain = self._security(server_credentials, interceptors, insecure)
        limit = self._max_message_bytes
        options = [
            *server_options(),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", int(self._reuse_port)),
        ]
        # Tracing first: server spans continue the orchestrator's traceparent (W3C, in the metadata).
        server = grpc.aio.server(interceptors=[_tracing_interceptor(), *chain], options=options)
        self.add_to_server(server)
        # A new servicer per start: a graceful shutdown makes one ignore later changes for good.
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        try:
            if credentials is None:
                port = server.add_insecure_port(listen)
            else:
                port = server.add_secure_port(listen, credentials)
        except RuntimeError as err:
            raise OSError(f"cannot listen on {listen}: {err}") from err
        if port == 0:
            raise OSError(f"cannot listen on {listen}")
        if credentials is None:
            _LOG.warning(_PLAINTEXT_WARNING, listen)
        await server.start()
        for name in _HEALTH_SERVICES:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server, self._health, self._port = server, health_servicer, port
        _LOG.info(
            "failhook worker listening on %s (port %d), workflows: %s", listen, port, sorted(self._workflows)
        )
        return port

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving gracefully: health turns NOT_SERVING first (health watchers hear it),
        then the server refuses new calls and lets calls in flight finish for ``grace`` seconds.

        Does nothing if the worker is not started.

        Args:
            grace: Seconds calls in flight get before they are canceled; ``None`` cancels them
                at once.
        """
        server, health_servicer = self._server, self._health
        self._server, self._health, self._port = None, None, None
        if health_servicer is not None:
            await health_servicer.enter_graceful_shutdown()
        if server is not None:
            await server.stop(grace)

    @contextlib.asynccontextmanager
    async def serving(
        self,
        listen: str = "127.0.0.1:0",
        *,
        server_credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[ServerInterceptor] = (),
        insecure: bool = False,
        grace: float | None = 5.0,
    ) -> AsyncIterator[int]:
        """Serve for the duration of an ``async with`` block, which gets the bound port.

        Args:
            listen: As for :meth:`start`.
            server_credentials: As for :meth:`start`.
            interceptors: As for :meth:`start`.
            insecure: As for :meth:`start`.
            grace: As for :meth:`stop`.

        Yields:
            The port bound.
        """
        port = await self.start(
            listen, server_credentials=server_credentials, interceptors=interceptors, insecure=insecure
        )
        try:
            yield port
        finally:
            await self.stop(grace)

    def serve(
        self,
        listen: str = "127.0.0.1:50052",
        *,
        server_credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[ServerInterceptor] = (),
        insecure: bool = False,
        grace: float | None = 5.0,
    ) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully (blocking; runs its own event loop).

        Args:
            listen: As for :meth:`start`.
            server_credentials: As for :meth:`start`.
            interceptors: As for :meth:`start`.
            insecure: As for :meth:`start`.
            grace: As for :meth:`stop`.
        """
        serving = self.serving(
            listen,
            server_credentials=server_credentials,
            interceptors=interceptors,
            insecure=insecure,
            grace=grace,
        )
        asyncio.run(_until_signalled(serving))


async def _until_signalled(serving: contextlib.AbstractAsyncContextManager[int]) -> None:
    """Enter ``serving`` and wait in it for SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        async with serving:
            await stopping.wait()
            _LOG.info("failhook worker stopping")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _tracing_interceptor() -> ServerInterceptor:
    """OpenTelemetry's gRPC server interceptor (spans on the global tracer provider).

    Health checks are left out: probes would fill traces with noise, and the interceptor wraps
    every streaming handler as an async generator, which breaks the health servicer's ``Watch``
    (it writes with ``context.write``).
    """
    skip_health = filters.negate(filters.health_check())
    interceptor: ServerInterceptor = aio_server_interceptor(filter_=skip_health)  # type: ignore[no-untyped-call]
    return interceptor
