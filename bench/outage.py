"""An endpoint outage under load, with the circuit breaker on and off (issue 14 item 8).

1,000 three-step runs at 64 concurrent (closed loop, finished runs counted in the database); once
a third of them finished, the endpoint answers UNAVAILABLE for 20 s, then serves again. Each run
has 3 attempts 0.2 s apart. The same scenario runs twice on fresh databases: the breaker on (the
defaults: trips after failures from 5 distinct runs, 2 s cooldown doubling) and off
(``[breaker] enabled = false``, the behaviour before breakers). Reported per variant:

* ``dead_lettered``: runs that ended in the DLQ (goal: 0 with the breaker);
* ``calls_to_down_endpoint``: RunStep calls that reached the endpoint while it was down (goal: at
  most 50 with the breaker);
* ``recovery_to_done_s``: from the endpoint's recovery until every run finished (0 when the runs
  had all ended, dead-lettered, during the outage);
* ``first_call_after_recovery_s``: from the recovery to the first call that reached the endpoint
  (the breaker's next probe: its cooldown schedule is the lag);
* ``peak_release_per_s``: the most runs created before the recovery that made their first call
  after it in one second: the paced release of the parked runs (slow start: 10/s doubling);
* ``hook_calls``: failure-hook deliveries (each would page somebody);
* ``runs_per_s_before``: the rate of finished runs before the outage, for comparison.

The endpoint runs in the benchmark's own process (a raw WorkflowEndpoint from the generated stubs,
behind a switch), so that every call it gets is counted; the orchestrator is its own process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2

from bench.harness import DbReader, fresh_database, start_orchestrator
from bench.throughput import closed_loop
from failhook import tls
from failhook.v1 import (
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    run_pb2,
    workflow_endpoint_pb2,
    workflow_endpoint_pb2_grpc,
)

RUNS = 1000
CONCURRENCY = 64
OUTAGE_SECONDS = 20.0
STEPS = 3
THREE_ATTEMPTS = run_pb2.RetryPolicy(
    max_attempts=3,
    initial_backoff=duration_pb2.Duration(nanos=200_000_000),
    backoff_multiplier=1.0,
    max_backoff=duration_pb2.Duration(nanos=200_000_000),
    jitter=0.0,
)
VARIANTS = {"breaker_on": "", "breaker_off": "[breaker]\nenabled = false\n"}
DEAD_LETTERED = "SELECT count(*) FROM runs WHERE state = 6"

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class _Switch:
    """The endpoint's outage switch and what reached it."""

    down: bool = False
    down_calls: int = 0
    hook_calls: int = 0
    came_back: float | None = None  # epoch seconds
    first_call_after: dict[str, float] = field(default_factory=dict)  # run id -> time (epoch s)


class _Endpoint(workflow_endpoint_pb2_grpc.WorkflowEndpointServicer):
    """Three trivial steps, or UNAVAILABLE while the switch is down."""

    def __init__(self, switch: _Switch) -> None:
        self.switch = switch

    async def RunStep(
        self, request: workflow_endpoint_pb2.RunStepRequest, context: Context
    ) -> workflow_endpoint_pb2.RunStepResponse:
        s, run_id = self.switch, request.context.workflow_run_id
        if s.down:
            s.down_calls += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the endpoint is down")
        if s.came_back is not None and run_id not in s.first_call_after:
            s.first_call_after[run_id] = time.time()
        done = len(request.completed_steps)
        if done >= STEPS:
            return workflow_endpoint_pb2.RunStepResponse(run_output=b"done")
        return workflow_endpoint_pb2.RunStepResponse(step=run_pb2.StepResult(name=f"s{done}", output=b"x"))


class _Hook(failure_hook_pb2_grpc.FailureHookServicer):
    """Acknowledges every delivery (a hook elsewhere, up all along), counting them."""

    def __init__(self, switch: _Switch) -> None:
        self.switch = switch

    async def OnWorkflowFailure(
        self, request: failure_hook_pb2.OnWorkflowFailureRequest, context: Context
    ) -> failure_hook_pb2.OnWorkflowFailureResponse:
        self.switch.hook_calls += 1
        return failure_hook_pb2.OnWorkflowFailureResponse(result="paged")


async def _variant(
    tmp: Path, certs: Path, backend: str, pg_server: str, name: str, config: str, say: Any
) -> dict[str, Any]:
    switch = _Switch()
    server = grpc.aio.server(options=tls.server_options())
    workflow_endpoint_pb2_grpc.add_WorkflowEndpointServicer_to_server(_Endpoint(switch), server)
    failure_hook_pb2_grpc.add_FailureHookServicer_to_server(_Hook(switch), server)
    port = server.add_secure_port(
        "127.0.0.1:0", tls.server_credentials(tls.TLSFiles.from_dir(certs, "worker"))
    )
    await server.start()
    config_file = tmp / f"outage-{name}.toml"
    config_file.write_text(config)
    try:
        async with fresh_database(backend, tmp, pg_server, f"outage-{name}") as url:
            orchestrator = start_orchestrator(
                tmp, certs, url, f"{backend}-outage-{name}", extra_args=("--config", str(config_file))
            )
            reader, mine = DbReader(url), DbReader(url)  # one connection each: the loop reads concurrently
            try:
                loop = asyncio.ensure_future(
                    closed_loop(
                        certs,
                        [orchestrator.target],
                        f"localhost:{port}",
                        reader,
                        workflow="outage",
                        runs=RUNS,
                        concurrency=CONCURRENCY,
                        retry_policy=THREE_ATTEMPTS,
                        timeout=300,
                    )
                )
                began = time.monotonic()
                await mine.wait_for("SELECT count(*) FROM runs WHERE state IN (4, 6)", RUNS // 3, 120)
                rate_before = RUNS // 3 / (time.monotonic() - began)
                say(f"  [{name}] endpoint down for {OUTAGE_SECONDS:g} s")
                switch.down = True
                await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself
                switch.down, switch.came_back = False, time.time()
                await loop
                done = time.time()
                dead = await mine.scalar(DEAD_LETTERED)
                before = f"SELECT run_id FROM runs WHERE create_time < {int(switch.came_back * 1e6)}"
                created_before = {row[0] for row in await mine.fetch(before)}
            finally:
                await reader.close()
                await mine.close()
                orchestrator.stop()
    finally:
        await server.stop(0)
    assert switch.came_back is not None
    back = switch.came_back
    released = [t for run_id, t in switch.first_call_after.items() if run_id in created_before]
    per_second = Counter(int(t - back) for t in released)
    return {
        "dead_lettered": dead,
        "calls_to_down_endpoint": switch.down_calls,
        "recovery_to_done_s": round(max(0.0, done - back), 2),
        "first_call_after_recovery_s": round(min(switch.first_call_after.values()) - back, 2)
        if switch.first_call_after
        else None,
        "peak_release_per_s": max(per_second.values(), default=0),
        "release_per_s": [per_second[i] for i in range(max(per_second, default=-1) + 1)],
        "hook_calls": switch.hook_calls,
        "runs_per_s_before": round(rate_before, 1),
    }


async def outage(tmp: Path, certs: Path, backend: str, pg_server: str, say: Any) -> dict[str, Any]:
    """The scenario with the breaker on and off; the figures of each."""
    say(f"[{backend}] outage: {RUNS} runs at {CONCURRENCY}, endpoint down {OUTAGE_SECONDS:g} s in the middle")
    out: dict[str, Any] = {"runs": RUNS, "concurrency": CONCURRENCY, "outage_seconds": OUTAGE_SECONDS}
    for name, config in VARIANTS.items():
        out[name] = figures = await _variant(tmp, certs, backend, pg_server, name, config, say)
        say(
            f"  [{name}] dead-lettered {figures['dead_lettered']}, calls to the down endpoint"
            f" {figures['calls_to_down_endpoint']}, recovery to done {figures['recovery_to_done_s']} s"
            f" (first call {figures['first_call_after_recovery_s']} s after it),"
            f" peak release {figures['peak_release_per_s']}/s, hook calls {figures['hook_calls']};"
            f" {figures['runs_per_s_before']} runs/s before the outage"
        )
    return out
