"""Issue 12, defect 4 and the step-output limit: a bad answer from an endpoint or a hook ends as a
recorded, non-retryable failure (or is cut to the documented limits), never a loop; on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from tests.faults.misbehaving import Calls, start_misbehaving
from tests.support.harness import Harness, started_harness

pytestmark = pytest.mark.asyncio

DEAD = run_pb2.RUN_STATE_DEAD_LETTERED


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def bad(dev_certs: DevCerts, database_url: str, calls: Calls) -> AsyncIterator[Harness]:
    server, port = await start_misbehaving(dev_certs.tls_files("worker"), calls)
    try:
        async with started_harness(dev_certs, database_url, f"localhost:{port}") as harness:
            yield harness
    finally:
        await server.stop(0)


async def _dead_lettered(h: Harness, mode: str) -> tuple[run_pb2.WorkflowRun, dl.DeadLetter]:
    started = await h.start({"mode": mode})
    run = await h.wait(started.run_id, [DEAD], timeout=20)
    return run, await h.dead_letter(run.dead_letter_id)


@pytest.mark.parametrize(
    ("mode", "code", "needle"),
    [
        ("undecodable", 13, "could not be decoded"),
        ("long_name", 9, "300 characters; the limit is 256"),
        ("nul_name", 9, "NUL"),
        ("huge_output", 8, "1048577 bytes; the limit is 1048576"),
    ],
)
async def test_a_bad_answer_fails_the_run_once_non_retryable(
    bad: Harness, calls: Calls, mode: str, code: int, needle: str
) -> None:
    run, entry = await _dead_lettered(bad, mode)
    assert run.failure.status_code == code and needle in run.failure.message
    assert not run.failure.retryable and len(run.failure.attempts) == 1
    assert calls.steps[run.run_id] == 1  # one call, no retry, no redelivery loop
    assert entry.hook.state == dl.HOOK_STATE_SUCCEEDED and calls.hooks[run.run_id] == 1


async def test_a_retry_after_beyond_any_column_is_capped(bad: Harness, calls: Calls) -> None:
    started = await bad.start({"mode": "huge_retry_after"})
    sleeping = await bad.wait(started.run_id, [run_pb2.RUN_STATE_RUNNING], timeout=10)
    # The run is stored (readable) and waits at most the documented day.
    for _ in range(50):
        run = await bad.get(sleeping.run_id)
        if run.pending_attempts:
            break
    else:
        raise AssertionError("the failed attempt was never recorded")
    delay = run.pending_attempts[0].retry_delay.ToSeconds()
    assert delay == 24 * 3600  # cut to the documented day
    assert calls.steps[run.run_id] == 1


async def test_nul_and_over_long_text_are_cleaned_and_cut(bad: Harness, calls: Calls) -> None:
    run, entry = await _dead_lettered(bad, "nul_message")
    assert "\x00" not in run.failure.message and "broken" in run.failure.message
    assert len(run.failure.attempts) == 4  # retried as UNAVAILABLE, then exhausted: no loop
    run, entry = await _dead_lettered(bad, "long_failed_step")
    assert entry.failure.step_name == "f" * 255 + "…"
    assert calls.hooks[run.run_id] == 1


@pytest.mark.parametrize("hook_mode", ["undecodable", "nul_result"])
async def test_a_bad_hook_answer_is_a_recorded_outcome(bad: Harness, calls: Calls, hook_mode: str) -> None:
    calls.hook_mode = hook_mode
    run, entry = await _dead_lettered(bad, "undecodable")
    if hook_mode == "undecodable":
        assert entry.hook.state == dl.HOOK_STATE_FAILED and "could not be decoded" in entry.hook.last_error
        assert calls.hooks[run.run_id] == 3  # the hook policy's attempts, then a final outcome
    else:
        assert entry.hook.state == dl.HOOK_STATE_SUCCEEDED
        assert "\x00" not in entry.hook.result and len(entry.hook.result) == 4096
