"""The dispatcher: RunStep and OnWorkflowFailure calls, their errors mapped to engine outcomes."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    run_pb2,
    workflow_endpoint_pb2,
)
from failhook_orchestrator import wire
from failhook_orchestrator.engine.model import DeadLetterRecord, Run, StepRecord
from failhook_orchestrator.engine.outcomes import (
    HookCallResult,
    RunCompleted,
    SleepRequested,
    StepCompleted,
    StepErrored,
    StepOutcome,
)

from .availability import is_connection_failure
from .channels import ChannelPool

__all__ = ["GrpcDispatcher", "StepHistories", "step_error_from_rpc_error"]

log = logging.getLogger("failhook.dispatch")

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("failhook.orchestrator")  # a proxy until a provider is set: fetched once
_RUN_STEP = f"/{workflow_endpoint_pb2.DESCRIPTOR.services_by_name['WorkflowEndpoint'].full_name}/RunStep"
_STEP_ERROR_TYPE = "type.googleapis.com/" + workflow_endpoint_pb2.StepError.DESCRIPTOR.full_name


Pairs = Iterable[tuple[str, str | bytes]]


def _pairs(metadata: object) -> Pairs:
    """Metadata as ``(key, value)`` pairs (grpc's stubs type it loosely)."""
    return cast(Pairs, metadata or ())


def _text_metadata(metadata: Pairs) -> dict[str, str]:
    return {str(k): v for k, v in metadata if not str(k).endswith("-bin") and isinstance(v, str)}


def step_error_from_rpc_error(error: grpc.aio.AioRpcError) -> StepErrored:
    """Map a failed call to a ``StepErrored``, reading the ``StepError`` status detail if any."""
    code = error.code()
    message = error.details() or ""
    trailing = list(_pairs(error.trailing_metadata()))
    detail = workflow_endpoint_pb2.StepError()
    for key, value in trailing:
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
                for any_detail in status.details:
                    if any_detail.type_url == _STEP_ERROR_TYPE:
                        any_detail.Unpack(detail)
            except DecodeError:  # a proxy's or a foreign server's details: keep the bare status
                log.warning("ignoring undecodable status details from a step call")
    retry_after = None
    if detail.HasField("retry_after"):
        retry_after = detail.retry_after.ToMicroseconds()
    cooldown = detail.target_cooldown.ToMicroseconds() if detail.HasField("target_cooldown") else None
    return StepErrored(
        status_code=code.value[0],
        message=message,
        response=detail.response or message.encode(),
        trailing_metadata=_text_metadata(trailing),
        step_name=detail.step_name,
        retry_after_us=retry_after,
        non_retryable=detail.non_retryable,
        connection_failure=is_connection_failure(error),
        target_cooldown_us=cooldown if cooldown is not None and cooldown > 0 else None,
    )


class StepHistories:
    """Each run's completed steps, kept encoded as ``RunStepRequest.completed_steps`` on the wire.

    A RunStep request carries the whole history; rebuilding it as messages at every call costs
    in proportion to the run's length. Repeated fields of a serialized message may be appended to
    it, so the steps are encoded once each and the history's bytes are extended by the new ones.
    The cache is checked against the run (its step count and the identity of its last step
    record), so a run loaded again or restarted is encoded afresh; the oldest entries go first
    past ``max_bytes``, and a run's entry goes when the run completes.
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._runs: OrderedDict[str, tuple[int, StepRecord | None, bytes]] = OrderedDict()

    def encoded(self, run: Run) -> bytes:
        """The run's completed steps as the wire bytes of field ``completed_steps``."""
        steps = run.steps
        cached = self.forget(run.run_id)
        count, data = 0, b""
        if (
            cached is not None
            and cached[0] <= len(steps)
            and (not cached[0] or steps[cached[0] - 1] is cached[1])
        ):
            count, _, data = cached
        if count < len(steps):
            new = [run_pb2.StepResult(name=s.name, output=s.output) for s in steps[count:]]
            data += workflow_endpoint_pb2.RunStepRequest(completed_steps=new).SerializeToString()
        self._runs[run.run_id] = (len(steps), steps[-1] if steps else None, data)
        self._bytes += len(data)
        while self._bytes > self._max_bytes and self._runs:
            self._bytes -= len(self._runs.popitem(last=False)[1][2])
        return data

    def forget(self, run_id: str) -> tuple[int, StepRecord | None, bytes] | None:
        """Drop a run's entry (returned)."""
        cached = self._runs.pop(run_id, None)
        if cached is not None:
            self._bytes -= len(cached[2])
        return cached


def _run_step_call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, Any]:
    """``RunStep`` taking the request already serialized (see :class:`StepHistories`)."""
    return channel.unary_unary(
        _RUN_STEP,
        request_serializer=None,
        response_deserializer=workflow_endpoint_pb2.RunStepResponse.FromString,
    )


class GrpcDispatcher:
    """Calls the users' servers over pooled channels, with per-attempt deadlines."""

    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool
        self._endpoints: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, Any]] = {}
        self._hooks: dict[str, failure_hook_pb2_grpc.FailureHookAsyncStub] = {}
        self._histories = StepHistories()

    def refresh(self) -> None:
        """Use new channels from now on (after a certificate rotation)."""
        self._endpoints.clear()
        self._hooks.clear()
        self._pool.refresh()

    async def run_step(self, run: Run, attempt: int, timeout: float) -> StepOutcome:
        """Call ``RunStep`` for the run's next step."""
        call = self._endpoints.get(run.endpoint)
        if call is None:
            call = self._endpoints[run.endpoint] = _run_step_call(self._pool.get(run.endpoint))
        head = workflow_endpoint_pb2.RunStepRequest(
            context=wire.run_context(run), attempt=attempt, idempotency_key=f"{run.run_id}/{len(run.steps)}"
        )
        request = head.SerializeToString() + self._histories.encoded(run)
        with _client_span("WorkflowEndpoint", "RunStep", run.endpoint) as span:
            try:
                response = await call(request, timeout=timeout, metadata=_metadata(run.headers))
            except grpc.aio.AioRpcError as error:
                _record_status(span, error.code(), error.details())
                return step_error_from_rpc_error(error)
            _record_status(span, grpc.StatusCode.OK, None)
        if response is None:  # grpc hands back None when the answer does not decode
            return StepErrored(
                status_code=_INTERNAL,
                message="the endpoint's RunStep answer could not be decoded as a RunStepResponse",
                non_retryable=True,
            )
        outcome = _outcome(response)
        if isinstance(outcome, RunCompleted):
            self._histories.forget(run.run_id)
        return outcome

    async def call_hook(
        self, record: DeadLetterRecord, delivery_attempt: int, timeout: float
    ) -> HookCallResult:
        """Call ``OnWorkflowFailure`` for a failed run."""
        run = record.run
        target = run.hook_target
        stub = self._hooks.get(target)
        if stub is None:
            stub = self._hooks[target] = failure_hook_pb2_grpc.FailureHookStub(self._pool.get(target))
        last = record.failure.last
        request = failure_hook_pb2.OnWorkflowFailureRequest(
            context=wire.run_context(run),
            fail_status=last.status_code,
            fail_response=last.response,
            fail_headers=last.trailing_metadata,
            failure=wire.step_failure_to_proto(record.failure),
            idempotency_key=record.idempotency_key,
            delivery_attempt=delivery_attempt,
        )
        with _client_span("FailureHook", "OnWorkflowFailure", target) as span:
            try:
                response = await stub.OnWorkflowFailure(
                    request, timeout=timeout, metadata=_metadata(run.headers)
                )
            except grpc.aio.AioRpcError as error:
                _record_status(span, error.code(), error.details())
                return HookCallResult(
                    ok=False,
                    status_code=error.code().value[0],
                    message=error.details() or "",
                    connection_failure=is_connection_failure(error),
                )
            _record_status(span, grpc.StatusCode.OK, None)
        if response is None:  # an answer that does not decode is a failed delivery
            return HookCallResult(
                ok=False,
                status_code=_INTERNAL,
                message="the hook's answer could not be decoded as an OnWorkflowFailureResponse",
            )
        return HookCallResult(ok=True, result=response.result)


def _client_span(service: str, method: str, target: str) -> AbstractContextManager[trace.Span]:
    """A client span with the RPC semantic conventions, when the call's trace is sampled.

    Made here rather than by opentelemetry-instrumentation-grpc's client interceptor: on this hot
    path (one call per step) the grpc.aio client interceptor cost about a tenth of the
    orchestrator's CPU in a py-spy profile of ``bench/run.py``; the span and its attributes are
    the same. Under a parent that is not recorded (nothing samples: the default without an
    exporter) no span is made either, since a sampler deciding by the parent or the trace id
    would drop it too: the call carries the parent's ``traceparent``, with the run's trace id.
    """
    current = trace.get_current_span()
    if not current.is_recording():
        return nullcontext(current)
    return _TRACER.start_as_current_span(
        f"/failhook.v1.{service}/{method}",
        kind=SpanKind.CLIENT,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": f"failhook.v1.{service}",
            "rpc.method": method,
            "server.address": target,
        },
    )


def _record_status(span: trace.Span, code: grpc.StatusCode, details: str | None) -> None:
    if not span.is_recording():
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))


def _metadata(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The run's headers as call metadata (keys validated at StartRun), plus the W3C traceparent."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [*headers.items(), *carrier.items()]


def _outcome(response: workflow_endpoint_pb2.RunStepResponse) -> StepOutcome:
    which = response.WhichOneof("outcome")
    if which == "step":
        return StepCompleted(name=response.step.name, output=response.step.output)
    if which == "run_output":
        return RunCompleted(output=response.run_output)
    if which == "sleep":
        if not response.sleep.name:
            return StepErrored(
                status_code=9, message="the endpoint asked for a sleep without a name", protocol_error=True
            )
        return SleepRequested(name=response.sleep.name, duration_us=response.sleep.duration.ToMicroseconds())
    return StepErrored(
        status_code=9,
        message="the endpoint answered RunStep without an outcome (step, run_output or sleep)",
        protocol_error=True,
    )
