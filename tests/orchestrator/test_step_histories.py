"""The dispatcher's encoded step histories: extended by new steps, rebuilt when the run changed."""

from __future__ import annotations

from dataclasses import replace

from failhook.v1 import workflow_endpoint_pb2
from failhook_orchestrator.dispatch.caller import StepHistories
from failhook_orchestrator.engine.model import Run, StepKind, StepRecord
from failhook_orchestrator.engine.policy import RetryPolicy
from failhook_orchestrator.engine.states import RunState


def _run(run_id: str = "r") -> Run:
    return Run(
        run_id=run_id,
        workflow="w",
        state=RunState.RUNNING,
        endpoint="localhost:1",
        failure_hook="",
        payload=b"",
        headers={},
        retry_policy=RetryPolicy(),
        create_time=0,
        update_time=0,
    )


def _step(index: int, output: bytes = b"") -> StepRecord:
    return StepRecord(
        index=index,
        name=f"s{index}",
        kind=StepKind.RUN,
        output=output or b"o%d" % index,
        attempts=[],
        complete_time=0,
    )


def _decoded(data: bytes) -> list[tuple[str, bytes]]:
    request = workflow_endpoint_pb2.RunStepRequest.FromString(data)
    return [(s.name, s.output) for s in request.completed_steps]


def test_the_history_grows_with_the_run_and_appends_to_a_serialized_request() -> None:
    histories, run = StepHistories(), _run()
    assert histories.encoded(run) == b""
    for index in range(5):
        run.steps.append(_step(index))
        head = workflow_endpoint_pb2.RunStepRequest(attempt=2, idempotency_key=f"r/{index + 1}")
        request = workflow_endpoint_pb2.RunStepRequest.FromString(
            head.SerializeToString() + histories.encoded(run)
        )
        assert [(s.name, s.output) for s in request.completed_steps] == [
            (f"s{i}", b"o%d" % i) for i in range(index + 1)
        ]
        assert (request.attempt, request.idempotency_key) == (2, f"r/{index + 1}")


def test_a_run_whose_steps_changed_is_encoded_afresh() -> None:
    histories, run = StepHistories(), _run()
    run.steps = [_step(0), _step(1)]
    histories.encoded(run)
    run.steps = [replace(run.steps[0], output=b"again"), _step(1, b"new")]  # loaded again, same count
    assert _decoded(histories.encoded(run)) == [("s0", b"again"), ("s1", b"new")]
    run.steps = [run.steps[0]]  # restarted with fewer steps
    assert _decoded(histories.encoded(run)) == [("s0", b"again")]


def test_the_oldest_runs_go_past_the_byte_bound() -> None:
    histories = StepHistories(max_bytes=100)
    first, second = _run("a"), _run("b")
    first.steps = [_step(0, b"x" * 60)]
    second.steps = [_step(0, b"y" * 60)]
    histories.encoded(first)
    histories.encoded(second)  # first is evicted
    assert histories.forget("a") is None
    assert histories.forget("b") is not None
