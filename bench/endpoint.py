"""The benchmark's user side, in its own process: an SDK worker with the benchmark's workflows,
plus the health service as the raw echo baseline (one mTLS unary call, nothing else).

- ``bench3``: three trivial steps (throughput and run latency);
- ``bench_chain``: as many trivial steps as its payload says (the cost as a run grows);
- ``bench_fail``: one step that fails for good, and a failure handler (time to the DLQ);
- ``bench_sleep``: one step, then a durable sleep of an hour (memory of sleeping runs).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from failhook import tls
from failhook.certs import ORCHESTRATOR_IDENTITY
from failhook.identity import AllowlistInterceptor
from failhook.worker import FailureContext, NonRetryableError, Worker, WorkflowContext

worker = Worker()


async def _step(value: int) -> int:
    return value + 1


@worker.workflow("bench3")
async def bench3(ctx: WorkflowContext) -> int:
    """Three trivial steps: the cost measured is the orchestration, not the work."""
    a = await ctx.run("one", _step, 0)
    b = await ctx.run("two", _step, a)
    return await ctx.run("three", _step, b)


@worker.workflow("bench_chain")
async def bench_chain(ctx: WorkflowContext) -> int:
    """As many trivial steps as the payload says (ASCII digits): the cost as the history grows."""
    value = 0
    for index in range(int(ctx.payload)):
        value = await ctx.run(f"step-{index}", _step, value)
    return value


async def _fail() -> int:
    raise NonRetryableError("the benchmark's failing step")


@worker.workflow("bench_fail")
async def bench_fail(ctx: WorkflowContext) -> int:
    """One step that fails without retry: the run goes through its failure hook to the DLQ."""
    return await ctx.run("fail", _fail)


@bench_fail.on_failure
async def bench_fail_hook(
    ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
) -> str | None:
    """Acknowledge at once: the time measured is the orchestrator's."""
    return "noted"


@worker.workflow("bench_sleep")
async def bench_sleep(ctx: WorkflowContext) -> int:
    """One step, then a durable sleep of an hour: the run stays SLEEPING for the measurement."""
    value = await ctx.run("one", _step, 0)
    await ctx.sleep("nap", timedelta(hours=1))
    return value


async def main(certs: Path, port_file: Path) -> None:
    files = tls.TLSFiles.from_dir(certs, "worker")
    server = grpc.aio.server(
        interceptors=[
            AllowlistInterceptor([ORCHESTRATOR_IDENTITY], exempt_services=("grpc.health.v1.Health",))
        ],
        options=tls.server_options(),
    )
    worker.add_to_server(server)
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(files))
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await asyncio.to_thread(port_file.write_text, str(port))
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.certs, args.port_file))
