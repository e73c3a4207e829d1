"""One trace per run, across the orchestrator, the endpoint and the hook (OpenTelemetry)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent import futures
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from failhook.worker import FailureContext, Worker, WorkflowContext
from tests.support.endpoint import Recorder
from tests.support.harness import Harness, client_channel, started_harness
from tests.support.process import spawn


def _worker(certs: DevCerts) -> Worker:
    worker = Worker(tls=certs.tls_files("worker"))

    @worker.workflow("traced")
    async def traced(ctx: WorkflowContext) -> str:
        await ctx.run("prepare", lambda: "ok")
        await ctx.sleep("pause", timedelta(milliseconds=int(ctx.json_payload().get("pause_ms", 0))))
        if ctx.json_payload().get("fail"):
            await ctx.run("charge", _decline)
        return "done"

    @traced.on_failure
    async def on_failure(
        ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
    ) -> str | None:
        return "noted"

    return worker


def _decline() -> None:
    raise RuntimeError("card declined")


@pytest.fixture
async def worker_target(dev_certs: DevCerts) -> AsyncIterator[str]:
    async with _worker(dev_certs).serving("127.0.0.1:0") as port:
        yield f"localhost:{port}"


def _of_trace(spans: Sequence[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and format(s.context.trace_id, "032x") == trace_id]


def _one(spans: Sequence[ReadableSpan], name: str, kind: SpanKind | None = None) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and (kind is None or s.kind == kind)]


async def _until_ended(spans: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    """The trace's spans once every server span has ended (they end after their responses)."""
    for _ in range(400):
        tree = _of_trace(spans.get_finished_spans(), trace_id)
        rpc_clients = [s for s in tree if s.kind == SpanKind.CLIENT and s.name.startswith("/failhook.v1.")]
        client_ids = {s.context.span_id for s in rpc_clients if s.context is not None}
        served = {_parent_id(s) for s in tree if s.kind == SpanKind.SERVER}
        if client_ids and client_ids <= served and _one(tree, "failhook.failure_handler"):
            return tree
        await asyncio.sleep(0.01)
    raise AssertionError("the trace's server spans never all ended")


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_span_tree_of_a_failing_run(
    harness: Harness, worker_target: str, spans: InMemorySpanExporter
) -> None:
    policy = run_pb2.RetryPolicy(max_attempts=2)
    started = await harness.start(
        {"fail": True}, workflow="traced", endpoint=worker_target, retry_policy=policy
    )
    run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
    assert len(run.trace_id) == 32
    entry = await harness.dead_letter(run.dead_letter_id)
    assert entry.trace_id == run.trace_id
    tree = await _until_ended(spans, run.trace_id)

    (start_span,) = _one(tree, "/failhook.v1.WorkflowService/StartRun", SpanKind.SERVER)
    attempts = _one(tree, "failhook.step.attempt")
    assert len(attempts) == 4  # prepare, pause, then charge twice
    assert all(_parent_id(a) == start_span.context.span_id for a in attempts)
    assert all(a.attributes and a.attributes["failhook.run_id"] == run.run_id for a in attempts)
    failed = [a for a in attempts if a.status.status_code == StatusCode.ERROR]
    assert len(failed) == 2
    assert all(any(e.name == "exception" for e in a.events) for a in failed)
    assert any(e.name == "backoff" for e in failed[0].events)

    clients = _one(tree, "/failhook.v1.WorkflowEndpoint/RunStep", SpanKind.CLIENT)
    assert {_parent_id(c) for c in clients} == {a.context.span_id for a in attempts}
    for client in clients:
        assert client.attributes is not None
        assert client.attributes["rpc.system"] == "grpc"
        assert client.attributes["rpc.service"] == "failhook.v1.WorkflowEndpoint"
        assert client.attributes["rpc.method"] == "RunStep"
        assert "rpc.grpc.status_code" in client.attributes
    servers = _one(tree, "/failhook.v1.WorkflowEndpoint/RunStep", SpanKind.SERVER)  # the SDK continued it
    assert {_parent_id(s) for s in servers} == {c.context.span_id for c in clients}
    step_spans = _one(tree, "failhook.step charge")
    assert len(step_spans) == 2 and all(s.status.status_code == StatusCode.ERROR for s in step_spans)
    assert {_parent_id(s) for s in step_spans} <= {s.context.span_id for s in servers}

    (delivery,) = _one(tree, "failhook.hook.delivery")
    (hook_client,) = _one(tree, "/failhook.v1.FailureHook/OnWorkflowFailure", SpanKind.CLIENT)
    (hook_server,) = _one(tree, "/failhook.v1.FailureHook/OnWorkflowFailure", SpanKind.SERVER)
    (handler,) = _one(tree, "failhook.failure_handler")
    assert _parent_id(hook_client) == delivery.context.span_id
    assert _parent_id(hook_server) == hook_client.context.span_id
    assert _parent_id(handler) == hook_server.context.span_id
    (moved,) = _one(tree, "failhook.dead_letter")
    assert moved.attributes is not None and moved.attributes["failhook.hook.state"] == "SUCCEEDED"


async def test_trace_survives_an_orchestrator_restart_and_resume_links_back(
    dev_certs: DevCerts, database_url: str, endpoint: str, worker_target: str, spans: InMemorySpanExporter
) -> None:
    async with started_harness(dev_certs, database_url, endpoint) as first:
        started = await first.start({"pause_ms": 400}, workflow="traced", endpoint=worker_target)
        await first.wait(started.run_id, [run_pb2.RUN_STATE_SLEEPING])
    async with started_harness(dev_certs, database_url, endpoint) as second:
        run = await second.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
        assert run.trace_id == started.trace_id
        tree = _of_trace(spans.get_finished_spans(), run.trace_id)
        assert len(_one(tree, "failhook.step.attempt")) == 3  # before and after the restart, one trace

        failing = await second.start({"fail": True}, workflow="traced", endpoint=worker_target)
        failed = await second.wait(failing.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED], timeout=30)
        resumed = (await second.dlq.ResumeRun(dl.ResumeRunRequest(dead_letter_id=failed.dead_letter_id))).run
        assert resumed.trace_id and resumed.trace_id != failed.trace_id
        (link_span,) = _one(_of_trace(spans.get_finished_spans(), resumed.trace_id), "failhook.run.resume")
        assert [format(link.context.trace_id, "032x") for link in link_span.links] == [failed.trace_id]


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.mark.slow
async def test_otlp_exporter_delivers_to_a_collector(
    dev_certs: DevCerts, database_url: str, tmp_path: Path, endpoint: str, recorder: Recorder
) -> None:
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "failhook-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    proc = spawn(dev_certs, database_url, tmp_path, extra_args=("--log-format", "json"), extra_env=env)
    try:
        async with client_channel(dev_certs, proc.port) as channel:
            stub = ws_grpc.WorkflowServiceStub(channel)
            payload = json.dumps({"steps": 1, "fail_step": 0, "fail_times": 99, "code": 9}).encode()
            run = (
                await stub.StartRun(
                    ws.StartRunRequest(workflow="scripted", endpoint=endpoint, payload=payload)
                )
            ).run
            for _ in range(200):
                run = (await stub.GetRun(ws.GetRunRequest(run_id=run.run_id))).run
                if run.state == run_pb2.RUN_STATE_DEAD_LETTERED:
                    break
                await asyncio.sleep(0.05)
        assert run.state == run_pb2.RUN_STATE_DEAD_LETTERED
        await asyncio.to_thread(proc.terminate)  # flushes the batch span processor
    finally:
        if proc.process.poll() is None:
            proc.kill()
        server.stop(0)
    exported = [
        (resource.resource, span)
        for request in collector.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = {span.name for _, span in exported if span.trace_id.hex() == run.trace_id}
    assert {"/failhook.v1.WorkflowService/StartRun", "failhook.step.attempt", "failhook.dead_letter"} <= names
    service_names = {
        attr.value.string_value
        for resource, _ in exported
        for attr in resource.attributes
        if attr.key == "service.name"
    }
    assert service_names == {"failhook-under-test"}
    # Logs are JSON and carry the run's trace id.
    lines = [json.loads(line) for line in proc.lines if line.startswith("{")]
    moved = [line for line in lines if "dead-lettered" in line["message"]]
    assert moved and moved[0]["trace_id"] == run.trace_id
