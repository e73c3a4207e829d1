"""A call that never reached the server is told from the server's own UNAVAILABLE (real sockets)."""

from __future__ import annotations

import json
import socket

import grpc
import pytest

from failhook import tls
from failhook.certs import DevCerts
from failhook.v1 import run_pb2
from failhook.v1 import workflow_endpoint_pb2 as we
from failhook.v1 import workflow_endpoint_pb2_grpc as we_grpc
from failhook_orchestrator.dispatch.availability import is_connection_failure


async def run_step_error(target: str, certs: DevCerts) -> grpc.aio.AioRpcError:
    """Call RunStep at ``target`` as the orchestrator (mTLS) and return the failed call's error."""
    payload = json.dumps({"steps": 1, "fail_step": 0, "fail_times": 99, "code": 14}).encode()
    request = we.RunStepRequest(
        context=run_pb2.RunContext(workflow_run_id="r1", workflow="scripted", request_payload=payload),
        attempt=1,
    )
    credentials = tls.channel_credentials(certs.tls_files("orchestrator"))
    async with grpc.aio.secure_channel(target, credentials, options=tls.channel_options()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await we_grpc.WorkflowEndpointStub(channel).RunStep(request, timeout=5)
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


async def test_connection_refused(dev_certs: DevCerts) -> None:
    error = await run_step_error(f"127.0.0.1:{closed_port()}", dev_certs)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert is_connection_failure(error)


async def test_tls_handshake_failure(dev_certs: DevCerts) -> None:
    plaintext = grpc.aio.server()
    port = plaintext.add_insecure_port("127.0.0.1:0")
    await plaintext.start()
    try:
        error = await run_step_error(f"localhost:{port}", dev_certs)
    finally:
        await plaintext.stop(0)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "handshake" in (error.details() or "").lower()
    assert is_connection_failure(error)


async def test_the_servers_own_unavailable_is_an_answer(endpoint: str, dev_certs: DevCerts) -> None:
    error = await run_step_error(endpoint, dev_certs)
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # the scripted endpoint's own status
    assert not is_connection_failure(error)
