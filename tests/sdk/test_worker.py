"""``Worker``: registration, serving, security choices, graceful shutdown, mTLS, exports."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import grpc
import grpc.aio
import pytest

import failhook.worker
from failhook.v1 import workflow_endpoint_pb2_grpc
from failhook.worker import FailureContext, Worker, WorkflowContext

from ._support import Client, Connect, call_error, hook_request, step_request

ROOT = Path(__file__).resolve().parents[2]


def _hello(worker: Worker) -> None:
    @worker.workflow("hello")
    async def hello(ctx: WorkflowContext) -> str:
        return "hi " + ctx.payload.decode()


def test_the_public_exports_are_pinned() -> None:
    assert sorted(failhook.worker.__all__) == sorted(
        [
            "DEFAULT_MAX_MESSAGE_BYTES",
            "MAX_MESSAGE_BYTES",
            "MAX_METADATA_BYTES",
            "MAX_RESPONSE_BYTES",
            "MAX_SLEEP",
            "FailureContext",
            "FailureHandler",
            "FailureHookServicer",
            "HistoryMismatchError",
            "IdempotencyStore",
            "InMemoryIdempotencyStore",
            "NonRetryableError",
            "RetryAfterError",
            "SQLiteIdempotencyStore",
            "StepError",
            "StepNotAllowedError",
            "Worker",
            "Workflow",
            "WorkflowContext",
            "WorkflowEndpointServicer",
            "decode_output",
            "encode_output",
            "encode_run_output",
            "idempotent",
        ]
    )
    for name in failhook.worker.__all__:
        assert getattr(failhook.worker, name) is not None


def test_registration_checks_names() -> None:
    worker = Worker()
    _hello(worker)
    with pytest.raises(ValueError, match='workflow "hello" is already registered'):
        _hello(worker)
    with pytest.raises(ValueError, match="invalid workflow name"):
        worker.workflow("-bad name")
    assert list(worker.workflows) == ["hello"]

    def not_async(ctx: WorkflowContext) -> str:
        return "sync"

    with pytest.raises(TypeError, match="must be a coroutine function"):
        worker.workflow("sync")(not_async)  # type: ignore[arg-type]

    class Callable:
        async def __call__(self, ctx: WorkflowContext) -> str:
            return "callable"

    assert worker.workflow("callable")(Callable()).name == "callable"
    with pytest.raises(TypeError):
        Worker(allowed_identities="spiffe://failhook.dev/orchestrator")


async def test_a_workflow_can_be_called_directly() -> None:
    worker = Worker()
    _hello(worker)
    ctx = WorkflowContext(step_request("hello", payload=b"you"))
    assert await worker.workflows["hello"](ctx) == "hi you"
    assert repr(worker.workflows["hello"]) == "Workflow('hello')"


async def test_plaintext_is_refused_unless_asked_for() -> None:
    worker = Worker()
    with pytest.raises(ValueError, match="refusing to serve plaintext"):
        await worker.start()
    assert worker.port is None


async def test_contradictory_security_options_are_refused(tmp_path: Path) -> None:
    from failhook.certs import init_dev_certs  # noqa: PLC0415
    from failhook.tls import server_credentials  # noqa: PLC0415

    files = init_dev_certs(tmp_path / "certs").tls_files("worker")
    with pytest.raises(ValueError, match="insecure=True contradicts"):
        await Worker(tls=files).start(insecure=True)
    with pytest.raises(ValueError, match="insecure=True contradicts"):
        await Worker().start(server_credentials=server_credentials(files), insecure=True)
    with pytest.raises(ValueError, match="not both"):
        await Worker(tls=files).start(server_credentials=server_credentials(files))


async def test_insecure_serving_warns_loudly(connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker()
    _hello(worker)
    with caplog.at_level(logging.WARNING, logger="failhook.worker"):
        client = await connect(worker)
    assert any("PLAINTEXT" in record.getMessage() for record in caplog.records)
    assert (await client.run_step(step_request("hello", payload=b"there"))).run_output == b'"hi there"'


async def test_start_twice_and_a_busy_port_are_errors(connect: Connect) -> None:
    worker = Worker()
    await connect(worker)
    assert worker.port is not None
    with pytest.raises(RuntimeError, match="already started"):
        await worker.start(insecure=True)
    with pytest.raises(OSError, match="cannot listen"):
        await Worker().start(f"127.0.0.1:{worker.port}", insecure=True)


async def test_serving_stops_at_the_end_of_the_block() -> None:
    worker = Worker()
    _hello(worker)
    async with worker.serving(insecure=True, grace=1) as port:
        assert worker.port == port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = await Client(channel).run_step(step_request("hello", payload=b"!"))
            assert response.run_output == b'"hi !"'
    assert worker.port is None
    await worker.stop()  # stopping a stopped worker is harmless


async def test_the_servicers_can_be_added_to_your_own_server() -> None:
    worker = Worker()
    _hello(worker)
    server = grpc.aio.server()
    worker.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = workflow_endpoint_pb2_grpc.WorkflowEndpointStub(channel)
            response = await stub.RunStep(step_request("hello", payload=b"x"), timeout=10)
            assert response.run_output == b'"hi x"'
    finally:
        await server.stop(None)


async def test_a_large_history_fits_in_one_call(connect: Connect) -> None:
    worker = Worker()

    @worker.workflow("big")
    async def big(ctx: WorkflowContext) -> int:
        total = 0
        for index in range(6):
            total += len(await ctx.run(f"chunk-{index}", lambda: "x"))
        return total

    client = await connect(worker)
    chunk = b'"' + b"x" * (1024 * 1024) + b'"'
    history = [(f"chunk-{index}", chunk) for index in range(6)]  # over gRPC's default 4 MiB
    assert (await client.run_step(step_request("big", *history))).run_output == str(6 * 1024 * 1024).encode()


_SERVE_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from failhook.worker import Worker, WorkflowContext

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    worker = Worker()

    @worker.workflow("hello")
    async def hello(ctx: WorkflowContext) -> str:
        return "hi"

    worker.serve("127.0.0.1:0", insecure=True, grace=1)
    print("stopped cleanly", flush=True)
    """
)


@pytest.mark.slow
async def test_serve_runs_until_sigterm_then_stops_gracefully() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "clients" / "python")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SERVE_SCRIPT,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    port = 0
    seen: list[str] = []
    try:
        while not port:
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line, f"the worker exited early: {seen}"
            seen.append(line)
            if "listening on" in line:
                port = int(line.split("(port ")[1].split(")")[0])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = await Client(channel).run_step(step_request("hello"))
            assert response.run_output == b'"hi"'
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "stopped cleanly"
    assert "failhook.worker failhook worker stopping" in stderr.decode()


async def test_mutual_tls_admits_only_the_orchestrator(tmp_path: Path) -> None:
    from failhook.certs import init_dev_certs  # noqa: PLC0415
    from failhook.tls import channel_credentials, channel_options  # noqa: PLC0415

    certs = init_dev_certs(tmp_path / "certs")
    worker = Worker(tls=certs.tls_files("worker"))
    _hello(worker)
    handled: list[str] = []

    @worker.workflows["hello"].on_failure
    async def failed(ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]) -> str:
        handled.append(ctx.workflow_run_id)
        return "ok"

    options = [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
    async with worker.serving() as port:
        target = f"127.0.0.1:{port}"
        orchestrator = channel_credentials(certs.tls_files("orchestrator"))
        async with grpc.aio.secure_channel(target, orchestrator, options=options) as channel:
            client = Client(channel)
            assert (await client.run_step(step_request("hello", payload=b"tls"))).run_output == b'"hi tls"'
            assert (await client.on_failure(hook_request("hello"))).result == "ok"
        operator = channel_credentials(certs.tls_files("operator"))
        async with grpc.aio.secure_channel(target, operator, options=options) as channel:
            client = Client(channel)
            denied = await call_error(client.run_step(step_request("hello")))
            assert denied.code == grpc.StatusCode.PERMISSION_DENIED
            assert "spiffe://failhook.dev/operator" in denied.message
            denied = await call_error(client.on_failure(hook_request("hello")))
            assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as plaintext:
                await Client(channel).run_step(step_request("hello"))
            assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    assert handled == ["run-1"]


async def test_allowed_identities_can_be_chosen(tmp_path: Path) -> None:
    from failhook.certs import OPERATOR_IDENTITY, init_dev_certs  # noqa: PLC0415
    from failhook.tls import channel_credentials, channel_options  # noqa: PLC0415

    certs = init_dev_certs(tmp_path / "certs")
    worker = Worker(tls=certs.tls_files("worker"), allowed_identities=[OPERATOR_IDENTITY])
    _hello(worker)
    options = [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
    async with worker.serving() as port:
        target = f"127.0.0.1:{port}"
        for name, expected in (
            ("operator", grpc.StatusCode.OK),
            ("orchestrator", grpc.StatusCode.PERMISSION_DENIED),
        ):
            credentials = channel_credentials(certs.tls_files(name))
            async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
                try:
                    await Client(channel).run_step(step_request("hello"))
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as err:
                    code = err.code()
                assert code == expected, name
