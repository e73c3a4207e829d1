"""A failure hook whose SDK handler raises is retried until the hook policy gives up.

The console engineer saw such a hook get its first attempt and then nothing (the run stayed
FAILED): the next attempt's timer, due at once after a short backoff, fired while the first
attempt's task still counted as delivering the entry, and was dropped as a duplicate. A zero
backoff makes that ordering certain, so this test fails on every run against the old code.
It uses the real pieces: an orchestrator over mTLS on SQLite and PostgreSQL, and an SDK
``Worker`` whose failure handler raises (``INTERNAL``, retryable).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.worker import FailureContext, NonRetryableError, Worker, WorkflowContext
from failhook_orchestrator.engine.policy import RetryPolicy
from tests.support.harness import Harness, started_harness

pytestmark = pytest.mark.asyncio

ATTEMPTS = 4
#: Retries due at once: the next attempt's timer is due before the attempt's task has ended.
IMMEDIATE_HOOK_RETRIES = RetryPolicy(
    max_attempts=ATTEMPTS, initial_backoff=0.0, max_backoff=0.0, jitter=0.0, attempt_timeout=5.0
)
RUNS = 3
INTERNAL = 13


@dataclass
class Deliveries:
    """The hook deliveries the worker's handler saw, by run id; ``all_made`` when each run had
    all its attempts."""

    attempts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    all_made: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, ctx: FailureContext) -> None:
        self.attempts.setdefault(ctx.workflow_run_id, []).append((ctx.delivery_attempt, ctx.idempotency_key))
        if len(self.attempts) == RUNS and all(len(a) >= ATTEMPTS for a in self.attempts.values()):
            self.all_made.set()


@pytest.fixture
async def failing_hook(dev_certs: DevCerts) -> AsyncIterator[tuple[str, Deliveries]]:
    """An SDK worker: ``refund`` fails at once and its failure handler always raises."""
    deliveries = Deliveries()
    worker = Worker(tls=dev_certs.tls_files("worker"))

    @worker.workflow("refund")
    async def refund(ctx: WorkflowContext) -> str:
        def notify() -> str:
            raise NonRetryableError("customer has no e-mail address")

        return await ctx.run("notify", notify)

    @refund.on_failure
    async def refund_failed(
        ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
    ) -> str | None:
        deliveries.saw(ctx)
        raise RuntimeError("ticketing system down")

    async with worker.serving("127.0.0.1:0") as port:
        yield f"localhost:{port}", deliveries


@pytest.fixture
async def harness(
    dev_certs: DevCerts, database_url: str, failing_hook: tuple[str, Deliveries]
) -> AsyncIterator[Harness]:
    """An orchestrator whose hook retries are due at once."""
    target, _ = failing_hook
    async with started_harness(
        dev_certs, database_url, target, hook_policy=IMMEDIATE_HOOK_RETRIES
    ) as started:
        yield started


async def test_a_raising_failure_handler_gets_every_attempt_then_the_run_is_dead_lettered(
    harness: Harness, failing_hook: tuple[str, Deliveries]
) -> None:
    target, deliveries = failing_hook
    started = [
        await harness.start({"order": f"o-{n}"}, workflow="refund", endpoint=target) for n in range(RUNS)
    ]
    try:
        await asyncio.wait_for(deliveries.all_made.wait(), timeout=15)
    except TimeoutError:
        raise AssertionError(f"hook deliveries stopped short: {deliveries.attempts}") from None
    for run in started:
        done = await harness.wait(run.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
        entry = await harness.dead_letter(done.dead_letter_id)
        assert entry.hook.state == dl.HOOK_STATE_FAILED
        assert entry.hook.attempts == ATTEMPTS
        assert [a.attempt for a in entry.hook.attempt_history] == list(range(1, ATTEMPTS + 1))
        assert {a.status_code for a in entry.hook.attempt_history} == {INTERNAL}
        assert "ticketing system down" in entry.hook.last_error
        seen = deliveries.attempts[run.run_id]
        assert [number for number, _ in seen] == list(range(1, ATTEMPTS + 1))  # none made twice
        assert {key for _, key in seen} == {entry.hook.idempotency_key}
