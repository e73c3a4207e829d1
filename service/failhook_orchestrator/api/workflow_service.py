"""``failhook.v1.WorkflowService``: start, read, list and cancel runs."""

from __future__ import annotations

from typing import Any

import grpc

from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as pb
from failhook.v1 import workflow_service_pb2_grpc as pb_grpc
from failhook_orchestrator import wire
from failhook_orchestrator.engine import limits
from failhook_orchestrator.engine.model import Run
from failhook_orchestrator.engine.ports import RunQuery
from failhook_orchestrator.engine.service import Engine, RunSpec
from failhook_orchestrator.telemetry import current_traceparent

from . import listing
from .errors import maps_errors
from .pagination import page_size
from .shared import ApiShared
from .validation import (
    enum_filter,
    execution_timeout_us,
    resolve_policy,
    validate_headers,
    validate_labels,
    validate_run_id,
    validate_target,
    validate_timestamp,
    validate_workflow,
)

__all__ = ["WorkflowServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class WorkflowServicer(pb_grpc.WorkflowServiceServicer):
    """Thin servicer: validate, call the engine, map the result."""

    def __init__(self, engine: Engine, shared: ApiShared) -> None:
        self._engine = engine
        self._shared = shared

    @maps_errors
    async def StartRun(self, request: pb.StartRunRequest, context: Context) -> pb.StartRunResponse:
        """Validate and start a run (deduplicated on ``run_id``)."""
        spec = RunSpec(
            workflow=validate_workflow("workflow", request.workflow),
            endpoint=validate_target("endpoint", request.endpoint, required=True),
            failure_hook=validate_target("failure_hook", request.failure_hook, required=False),
            payload=self._shared.limits.payload("payload", request.payload),
            headers=validate_headers("headers", request.headers),
            retry_policy=resolve_policy(
                "retry_policy",
                request.retry_policy if request.HasField("retry_policy") else None,
                self._shared.default_policy,
            ),
            run_id=validate_run_id("run_id", request.run_id, required=False),
            labels=validate_labels("labels", request.labels),
            execution_timeout_us=execution_timeout_us("execution_timeout", request.execution_timeout)
            if request.HasField("execution_timeout")
            else self._shared.default_execution_timeout_us,
            flow_control_key=validate_workflow("flow_control_key", request.flow_control_key)
            if request.flow_control_key
            else "",
            trace_context=current_traceparent(),  # StartRun's server span starts the run's trace
        )
        run, deduplicated = await self._engine.start_run(spec)
        return pb.StartRunResponse(
            run=wire.run_to_proto(run, self._shared.reading), deduplicated=deduplicated
        )

    @maps_errors
    async def GetRun(self, request: pb.GetRunRequest, context: Context) -> pb.GetRunResponse:
        """Return a run with its steps."""
        run = await self._engine.get_run(validate_run_id("run_id", request.run_id, required=True))
        return pb.GetRunResponse(run=wire.run_to_proto(run, self._shared.reading))

    @maps_errors
    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        """List runs, newest first, with keyset pagination."""
        size = page_size(request.page_size)
        reading = listing.reading_for(request.view, self._shared.reading)
        for i, name in enumerate(request.workflow):
            validate_workflow(f"workflow[{i}]", name)
        states = enum_filter("state", request.state, limits.RUN_STATE_VALUES)
        after = (
            validate_timestamp("create_time_after", request.create_time_after)
            if request.HasField("create_time_after")
            else None
        )
        before = (
            validate_timestamp("create_time_before", request.create_time_before)
            if request.HasField("create_time_before")
            else None
        )
        labels = tuple(sorted(validate_labels("labels", request.labels).items()))
        filters: list[Any] = [sorted(request.workflow), list(states), after, before]
        if labels:  # only then: tokens made before labels existed stay valid
            filters.append([list(p) for p in labels])
        query = RunQuery(
            page_size=size,
            after=self._shared.tokens.decode(request.page_token, filters),
            workflows=tuple(request.workflow),
            states=states,
            created_after=after,
            created_before=before,
            labels=labels,
        )
        page = await listing.list_runs(self._engine, query, include_details=reading.details)

        def show(run: Run) -> run_pb2.WorkflowRun:
            return wire.run_to_proto(run, reading, with_steps=False)

        runs, more = listing.bounded_page(page.runs, show, has_more=page.has_more)
        token = ""
        if more:
            last = page.runs[len(runs) - 1]
            token = self._shared.tokens.encode((last.create_time, last.run_id), filters)
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    @maps_errors
    async def CancelRun(self, request: pb.CancelRunRequest, context: Context) -> pb.CancelRunResponse:
        """Cancel a run now or at its next step boundary."""
        run = await self._engine.cancel_run(validate_run_id("run_id", request.run_id, required=True))
        return pb.CancelRunResponse(run=wire.run_to_proto(run, self._shared.reading))
