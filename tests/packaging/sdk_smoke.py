"""Run by tests/packaging/test_sdk_wheel.py with the interpreter of a fresh venv holding only
the SDK wheel and its declared dependencies: a worker serves one step over mTLS."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import tempfile
from pathlib import Path

import grpc

from failhook import tls
from failhook.certs import init_dev_certs
from failhook.v1 import run_pb2, workflow_endpoint_pb2, workflow_endpoint_pb2_grpc
from failhook.worker import Worker, WorkflowContext


async def main() -> int:
    missing = [
        name
        for name in ("sqlalchemy", "alembic", "asyncpg", "failhook_orchestrator")
        if importlib.util.find_spec(name)
    ]
    if missing:
        print(f"server-side packages installed with the SDK: {missing}", file=sys.stderr)
        return 1
    certs = init_dev_certs(Path(tempfile.mkdtemp()))
    worker = Worker(tls=certs.tls_files("worker"))

    @worker.workflow("smoke")
    async def smoke(ctx: WorkflowContext) -> str:
        return await ctx.run("hello", lambda: "world")

    async with worker.serving("127.0.0.1:0") as port:
        credentials = tls.channel_credentials(certs.tls_files("orchestrator"))
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            stub = workflow_endpoint_pb2_grpc.WorkflowEndpointStub(channel)
            request = workflow_endpoint_pb2.RunStepRequest(
                context=run_pb2.RunContext(workflow_run_id="r1", workflow="smoke"), attempt=1
            )
            response = await stub.RunStep(request)
    print(f"served step {response.step.name}={response.step.output.decode()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
