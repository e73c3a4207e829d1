"""The SDK worker's own ``grpc.health.v1`` service over real mutual TLS.

It answers SERVING while the worker accepts work and NOT_SERVING from the start of a graceful
stop, and it is open to any certificate of the CA, not only to the allow-listed orchestrator.
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from failhook.certs import DevCerts
from failhook.tls import channel_credentials
from failhook.worker import Worker, WorkflowContext
from tests.sdk._support import Client, step_request

from ._support import OpenChannel

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "failhook.v1.WorkflowEndpoint", "failhook.v1.FailureHook")


class Gate:
    """A step that waits until the test lets it finish."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def step(self) -> str:
        self.entered.set()
        await self.release.wait()
        return "done"


def _worker(certs: DevCerts, gate: Gate) -> Worker:
    worker = Worker(tls=certs.tls_files("worker"))  # admits the orchestrator's identity only

    @worker.workflow("slow")
    async def slow(ctx: WorkflowContext) -> str:
        return await ctx.run("wait", gate.step)

    return worker


async def _status(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    status: int = response.status
    return status


async def test_health_is_serving_to_a_caller_off_the_allow_list(
    dev_certs: DevCerts, open_channel: OpenChannel
) -> None:
    async with _worker(dev_certs, Gate()).serving() as port:
        operator = open_channel(port, channel_credentials(dev_certs.tls_files("operator")))

        assert [await _status(operator, name) for name in SERVICES] == [SERVING] * 3
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await Client(operator).run_step(step_request("slow"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await _status(operator, "failhook.v1.NoSuchService")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_turns_not_serving_when_a_graceful_stop_begins(
    dev_certs: DevCerts, open_channel: OpenChannel
) -> None:
    gate = Gate()
    worker = _worker(dev_certs, gate)
    port = await worker.start()
    orchestrator = Client(open_channel(port, channel_credentials(dev_certs.tls_files("orchestrator"))))
    probe = open_channel(port, channel_credentials(dev_certs.tls_files("operator")))
    in_flight = asyncio.ensure_future(orchestrator.run_step(step_request("slow")))
    await gate.entered.wait()
    watch = health_pb2_grpc.HealthStub(probe).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    statuses = aiter(watch)
    assert (await anext(statuses)).status == SERVING

    stopping = asyncio.ensure_future(worker.stop(grace=30))
    assert (await anext(statuses)).status == NOT_SERVING
    watch.cancel()
    assert not stopping.done()  # the step in flight still has its grace period
    gate.release.set()

    assert (await in_flight).step.name == "wait"
    await stopping
    assert worker.port is None
    with pytest.raises(grpc.aio.AioRpcError) as after:
        await _status(probe, "")
    assert after.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_restarted_worker_is_serving_again(dev_certs: DevCerts, open_channel: OpenChannel) -> None:
    worker = _worker(dev_certs, Gate())
    await worker.start()
    await worker.stop(grace=None)

    async with worker.serving() as port:
        probe = open_channel(port, channel_credentials(dev_certs.tls_files("operator")))
        assert await _status(probe, "") == SERVING
