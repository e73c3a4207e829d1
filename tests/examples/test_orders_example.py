"""The README's order walkthrough, as a user's own test would write it with ``failhook.testing``.

``examples/orders.py`` is imported unchanged: its workflows are served with the environment's
certificates by a real worker, to a real orchestrator process over mutual TLS.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest

from examples import orders
from failhook.testing import OrchestratorEnvironment
from failhook.v1 import dead_letter_service_pb2, run_pb2

pytestmark = pytest.mark.slow


@pytest.fixture
async def env() -> AsyncIterator[OrchestratorEnvironment]:
    async with await OrchestratorEnvironment.start() as started:
        yield started


async def test_an_order_is_charged_then_shipped(env: OrchestratorEnvironment) -> None:
    async with env.serving(orders.worker) as endpoint:
        run = await env.run_to_end("order", endpoint, payload=b'{"amount": 10}')

    assert run_pb2.RunState.Name(run.state) == "RUN_STATE_SUCCEEDED", env.log
    assert json.loads(run.output) == {"charge": "charged 10", "shipment": "shipped"}
    assert [step.name for step in run.steps] == ["charge", "cool-off", "ship"]


async def test_a_declined_order_reaches_its_failure_handler_then_resumes(
    env: OrchestratorEnvironment,
) -> None:
    async with env.serving(orders.worker) as endpoint:
        run = await env.run_to_end("order", endpoint, payload=b'{"amount": 0}')
        assert run_pb2.RunState.Name(run.state) == "RUN_STATE_DEAD_LETTERED", env.log
        entry = await env.dead_letter(run)
        # NonRetryableError: no second attempt, and the handler's answer is on the entry.
        assert entry.failure.step_name == "charge"
        assert entry.failure.attempt == 1
        assert entry.failure.status_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert json.loads(entry.failure.response) == {"reason": "zero amount"}
        assert entry.hook.state == dead_letter_service_pb2.HOOK_STATE_SUCCEEDED
        assert entry.hook.result == "on-call paged"

        resumed = await env.client.resume_run(entry.dead_letter_id, payload=b'{"amount": 10}')
        ended = await env.wait_for_end(resumed.run_id)

    assert run_pb2.RunState.Name(ended.state) == "RUN_STATE_SUCCEEDED", env.log
    assert ended.parent_run_id == run.run_id
    assert json.loads(ended.output)["charge"] == "charged 10"
