"""Issue 13, item 1: hook delivery is durable work. While the hook fails, its DLQ entry is visible
with the hook PENDING and a growing attempt count; a SIGKILL during the hook's backoff resumes,
after the restart, at the next attempt with the same dead_letter_id and idempotency_key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from tests.support.endpoint import Recorder
from tests.support.harness import client_channel
from tests.support.process import FAST_CONFIG, spawn

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

#: A patient hook policy: one attempt a second, five in all.
PATIENT_HOOK = FAST_CONFIG.replace(
    "[hook_policy]\nmax_attempts = 3\ninitial_backoff = 0.01\nmax_backoff = 0.05",
    "[hook_policy]\nmax_attempts = 5\ninitial_backoff = 1.0\nbackoff_multiplier = 1.0\n"
    "max_backoff = 1.0\njitter = 0.0",
)


async def _entry_when(
    dlq: dl_grpc.DeadLetterServiceAsyncStub, dead_letter_id: str, condition: Callable[[dl.DeadLetter], bool]
) -> dl.DeadLetter:
    for _ in range(400):
        entry = (await dlq.GetDeadLetter(dl.GetDeadLetterRequest(dead_letter_id=dead_letter_id))).dead_letter
        if condition(entry):
            return entry
        await asyncio.sleep(0.025)
    raise AssertionError(f"the entry never reached the expected state: {entry}")


async def test_a_sigkill_during_the_hook_backoff_resumes_at_the_next_attempt(
    dev_certs: DevCerts, tmp_path: Path, endpoint: str, recorder: Recorder
) -> None:
    assert "backoff_multiplier = 1.0" in PATIENT_HOOK
    database = f"sqlite+aiosqlite:///{tmp_path / 'failhook.db'}"
    recorder.hook_failures_left = 99
    first = spawn(dev_certs, database, tmp_path, config_text=PATIENT_HOOK)
    try:
        async with client_channel(dev_certs, first.port) as channel:
            runs, dlq = ws_grpc.WorkflowServiceStub(channel), dl_grpc.DeadLetterServiceStub(channel)
            payload = json.dumps({"steps": 1, "fail_step": 0, "fail_times": 99, "code": 9}).encode()
            started = (
                await runs.StartRun(
                    ws.StartRunRequest(workflow="scripted", endpoint=endpoint, payload=payload)
                )
            ).run
            for _ in range(400):
                run = (await runs.GetRun(ws.GetRunRequest(run_id=started.run_id))).run
                if run.dead_letter_id:
                    break
                await asyncio.sleep(0.025)
            # Visible while it is retried: PENDING, the run FAILED, the attempts growing.
            one = await _entry_when(dlq, run.dead_letter_id, lambda e: e.hook.attempts >= 1)
            assert one.hook.state == dl.HOOK_STATE_PENDING and one.run.state == run_pb2.RUN_STATE_FAILED
            listed = await dlq.ListDeadLetters(dl.ListDeadLettersRequest(hook_state=[dl.HOOK_STATE_PENDING]))
            assert [e.dead_letter_id for e in listed.dead_letters] == [run.dead_letter_id]
            two = await _entry_when(dlq, run.dead_letter_id, lambda e: e.hook.attempts >= 2)
            assert two.hook.state == dl.HOOK_STATE_PENDING and two.HasField("hook") and two.hook.attempts == 2
            assert [a.attempt for a in two.hook.attempt_history] == [1, 2]
            assert all(
                a.status_code == 14 and a.error.startswith("UNAVAILABLE") for a in two.hook.attempt_history
            )
            assert two.hook.HasField("next_attempt_time")
        first.kill()  # in the 1 s backoff before attempt 3
    finally:
        if first.process.poll() is None:
            first.kill()
    delivered = len(recorder.hook_requests)
    recorder.hook_failures_left = 0  # the hook is back: the next attempt succeeds
    second = spawn(dev_certs, database, tmp_path, config_text=PATIENT_HOOK)
    try:
        async with client_channel(dev_certs, second.port) as channel:
            dlq = dl_grpc.DeadLetterServiceStub(channel)
            done = await _entry_when(
                dlq, run.dead_letter_id, lambda e: e.hook.state == dl.HOOK_STATE_SUCCEEDED
            )
    finally:
        second.terminate()
    assert delivered in (2, 3)  # the kill may land right after attempt 3 was sent
    later = recorder.hook_requests[delivered:]
    assert [r.delivery_attempt for r in later] == [delivered + 1]  # resumed at the next attempt
    assert {r.idempotency_key for r in recorder.hook_requests} == {started.run_id + "/failure/0"}
    assert done.dead_letter_id == run.dead_letter_id and done.hook.attempts == delivered + 1
    assert done.run.state == run_pb2.RUN_STATE_DEAD_LETTERED
