"""The allow-list interceptor over real mutual TLS, for every kind of method."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2

from failhook.certs import OPERATOR_IDENTITY, ORCHESTRATOR_IDENTITY, WORKER_IDENTITY, DevCerts
from failhook.identity import AllowlistInterceptor, current_caller, service_name
from failhook.tls import Identity, channel_credentials, server_credentials

from ._support import SERVING, CountingHealth, OpenChannel, Serve, check

REQUEST = health_pb2.HealthCheckRequest(service="kinds")
RESPONSE = health_pb2.HealthCheckResponse(status=SERVING)
SERDE: dict[str, Any] = {
    "request_deserializer": health_pb2.HealthCheckRequest.FromString,
    "response_serializer": health_pb2.HealthCheckResponse.SerializeToString,
}
CLIENT_SERDE: dict[str, Any] = {
    "request_serializer": health_pb2.HealthCheckRequest.SerializeToString,
    "response_deserializer": health_pb2.HealthCheckResponse.FromString,
}


class Kinds:
    """Handlers of every kind and style, recording the caller each time one runs."""

    def __init__(self) -> None:
        self.ran: list[str | None] = []

    async def unary_async(self, request: Any, context: Any) -> Any:
        self.ran.append(current_caller())
        return RESPONSE

    def unary_sync(self, request: Any, context: Any) -> Any:
        self.ran.append(current_caller())
        return RESPONSE

    async def stream_async_gen(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.ran.append(current_caller())
        yield RESPONSE
        yield RESPONSE

    async def stream_writer(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.ran.append(current_caller())
        await context.write(RESPONSE)
        await context.write(RESPONSE)

    def stream_sync_gen(self, request: Any, context: Any) -> Iterator[Any]:
        self.ran.append("sync-gen")
        yield RESPONSE
        yield RESPONSE

    async def client_stream(self, requests: AsyncIterator[Any], context: Any) -> Any:
        self.ran.append(current_caller())
        async for _ in requests:
            pass
        return RESPONSE

    async def bidi(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        self.ran.append(current_caller())
        async for _ in requests:
            yield RESPONSE

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            "test.Kinds",
            {
                "UnaryAsync": grpc.unary_unary_rpc_method_handler(self.unary_async, **SERDE),
                "UnarySync": grpc.unary_unary_rpc_method_handler(self.unary_sync, **SERDE),
                "StreamAsyncGen": grpc.unary_stream_rpc_method_handler(self.stream_async_gen, **SERDE),
                "StreamWriter": grpc.unary_stream_rpc_method_handler(self.stream_writer, **SERDE),
                "StreamSyncGen": grpc.unary_stream_rpc_method_handler(self.stream_sync_gen, **SERDE),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, **SERDE),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, **SERDE),
            },
        )


async def _invoke(channel: grpc.aio.Channel, method: str, *, send: bool = True) -> int:
    """Call ``/test.Kinds/<method>`` and return the number of responses.

    With ``send=False`` a request-streaming call writes nothing: when the server ends a call
    while the client is still writing, grpc.aio clients may report INTERNAL instead of the
    server's status (grpc/grpc#36066).
    """
    path = f"/test.Kinds/{method}"
    requests = iter([REQUEST, REQUEST]) if send else None
    if method.startswith("Unary"):
        await channel.unary_unary(path, **CLIENT_SERDE)(REQUEST, timeout=5)
        return 1
    if method.startswith("Stream"):
        return len([r async for r in channel.unary_stream(path, **CLIENT_SERDE)(REQUEST, timeout=5)])
    if method == "ClientStream":
        await channel.stream_unary(path, **CLIENT_SERDE)(requests, timeout=5)
        return 1
    return len([r async for r in channel.stream_stream(path, **CLIENT_SERDE)(requests, timeout=5)])


EXPECTED = {
    "UnaryAsync": (1, OPERATOR_IDENTITY),
    "UnarySync": (1, OPERATOR_IDENTITY),
    "StreamAsyncGen": (2, OPERATOR_IDENTITY),
    "StreamWriter": (2, OPERATOR_IDENTITY),
    "StreamSyncGen": (2, "sync-gen"),
    "ClientStream": (1, OPERATOR_IDENTITY),
    "Bidi": (2, OPERATOR_IDENTITY),
}


@pytest.fixture
async def kinds_port(serve: Serve, dev_certs: DevCerts, health: CountingHealth) -> tuple[int, Kinds]:
    kinds = Kinds()
    port = await serve(
        server_credentials(dev_certs.tls_files("orchestrator")),
        servicer=health,
        interceptors=[AllowlistInterceptor([OPERATOR_IDENTITY])],
        handlers=[kinds.handler()],
    )
    return port, kinds


@pytest.mark.parametrize("method", sorted(EXPECTED))
async def test_allowed_identity_reaches_every_kind_of_handler(
    kinds_port: tuple[int, Kinds], dev_certs: DevCerts, open_channel: OpenChannel, method: str
) -> None:
    port, kinds = kinds_port
    channel = open_channel(port, channel_credentials(dev_certs.tls_files("operator")))

    responses, caller = EXPECTED[method]
    assert await _invoke(channel, method) == responses
    assert kinds.ran == [caller]


@pytest.mark.parametrize("method", sorted(EXPECTED))
async def test_identity_off_the_list_is_denied_before_the_handler(
    kinds_port: tuple[int, Kinds], dev_certs: DevCerts, open_channel: OpenChannel, method: str
) -> None:
    port, kinds = kinds_port
    channel = open_channel(port, channel_credentials(dev_certs.tls_files("worker")))

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _invoke(channel, method, send=False)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == f"identity {WORKER_IDENTITY!r} is not allowed to call /test.Kinds/{method}"
    assert kinds.ran == []


async def test_health_service_is_exempt_by_default(
    kinds_port: tuple[int, Kinds], dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    port, _ = kinds_port

    assert await check(open_channel(port, channel_credentials(dev_certs.tls_files("worker")))) == SERVING
    assert health.calls == 1


@pytest.fixture
async def guarded_health_port(serve: Serve, dev_certs: DevCerts, health: CountingHealth) -> int:
    """The health service guarded (not exempt), admitting the orchestrator only."""
    return await serve(
        server_credentials(dev_certs.tls_files("worker")),
        servicer=health,
        interceptors=[AllowlistInterceptor([ORCHESTRATOR_IDENTITY], exempt_services=())],
    )


async def test_allow_list_admits_the_orchestrator(
    guarded_health_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    channel = open_channel(guarded_health_port, channel_credentials(dev_certs.tls_files("orchestrator")))

    assert await check(channel) == SERVING
    assert health.callers == [ORCHESTRATOR_IDENTITY]


async def test_allow_list_denies_another_identity_without_running_the_handler(
    guarded_health_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    channel = open_channel(guarded_health_port, channel_credentials(dev_certs.tls_files("operator")))

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await check(channel)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert OPERATOR_IDENTITY in (info.value.details() or "")
    assert health.calls == 0


@pytest.mark.parametrize("transport", ["tls-without-client-auth", "plaintext"])
async def test_caller_without_identity_is_unauthenticated(
    serve: Serve, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel, transport: str
) -> None:
    interceptor = AllowlistInterceptor([ORCHESTRATOR_IDENTITY], exempt_services=())
    if transport == "plaintext":
        port = await serve(None, servicer=health, interceptors=[interceptor])
        channel = open_channel(port, None)
    else:
        # Without client auth the server does not even ask for a certificate.
        credentials = server_credentials(dev_certs.tls_files("worker"), require_client_auth=False)
        port = await serve(credentials, servicer=health, interceptors=[interceptor])
        channel = open_channel(port, channel_credentials(dev_certs.tls_files("orchestrator")))

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await check(channel)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == "/grpc.health.v1.Health/Check requires a client certificate"
    assert health.calls == 0


async def test_unknown_method_is_unimplemented(
    guarded_health_port: int, dev_certs: DevCerts, open_channel: OpenChannel
) -> None:
    channel = open_channel(guarded_health_port, channel_credentials(dev_certs.tls_files("orchestrator")))

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/test.Nothing/Here", **CLIENT_SERDE)(REQUEST, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_allow_list_rejects_a_string_or_nothing() -> None:
    with pytest.raises(TypeError):
        AllowlistInterceptor(WORKER_IDENTITY)
    with pytest.raises(ValueError, match="empty"):
        AllowlistInterceptor([])
    assert AllowlistInterceptor({WORKER_IDENTITY}).allowed == {Identity.uri(WORKER_IDENTITY)}
    with pytest.raises(ValueError, match="not a certificate identity"):
        AllowlistInterceptor(["not a name"])


def test_service_name() -> None:
    assert service_name("/failhook.v1.WorkflowService/StartRun") == "failhook.v1.WorkflowService"
    assert service_name("/grpc.health.v1.Health/Check") == "grpc.health.v1.Health"
