"""RestartRun with keep_steps: the new run replays the kept steps' results and runs the rest."""

from __future__ import annotations

import grpc
import pytest

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from tests.api._support import field_violations
from tests.support.endpoint import Recorder
from tests.support.harness import Harness

#: Three steps; the third fails non-retryably: the run reaches the DLQ with s0 and s1 completed.
THIRD_FAILS = {"steps": 3, "fail_step": 2, "fail_times": 99, "code": 3}


async def _dead(harness: Harness) -> run_pb2.WorkflowRun:
    started = await harness.start(THIRD_FAILS)
    return await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])


async def test_restart_keeping_one_of_three_steps_runs_only_the_last_two(
    harness: Harness, recorder: Recorder
) -> None:
    failed = await _dead(harness)
    assert failed.step_count == 2
    kept = (await harness.get(failed.run_id)).steps[0]
    restarted = await harness.dlq.RestartRun(
        dl.RestartRunRequest(dead_letter_id=failed.dead_letter_id, keep_steps=1)
    )
    new = restarted.run
    assert new.origin == run_pb2.RUN_ORIGIN_RESTART and new.parent_run_id == failed.run_id
    done = await harness.wait(new.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])  # s2 fails again
    assert [s.name for s in done.steps] == ["s0", "s1"]
    assert done.steps[0].output == kept.output and done.steps[0].complete_time == kept.complete_time
    runs_of_new = {name: n for (run_id, name), n in recorder.executions.items() if run_id == new.run_id}
    assert runs_of_new == {"s1": 1, "s2": 1}  # s0 was replayed, never executed again
    # The first call of the new run already carried s0's recorded result.
    first = min(i for i, (run_id, _index, _attempt) in enumerate(recorder.attempts) if run_id == new.run_id)
    assert recorder.attempts[first][1] == 1


@pytest.mark.parametrize("keep", [-1, 3, 100])
async def test_keep_steps_out_of_range_is_invalid_argument_and_changes_nothing(
    harness: Harness, keep: int
) -> None:
    failed = await _dead(harness)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.dlq.RestartRun(
            dl.RestartRunRequest(dead_letter_id=failed.dead_letter_id, keep_steps=keep)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == ["keep_steps"]
    assert "0 to 2" in (caught.value.details() or "")
    assert (await harness.dead_letter(failed.dead_letter_id)).run.run_id == failed.run_id  # still queued
    everything = await harness.dlq.RestartRun(
        dl.RestartRunRequest(dead_letter_id=failed.dead_letter_id, keep_steps=2)
    )
    assert len(everything.run.steps) == 2  # keeping every completed step is allowed
