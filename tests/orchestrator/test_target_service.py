"""TargetService over a real mTLS orchestrator: answers, validation, roles and audit.

The breaker's effect on runs comes with the run driver's integration; here the targets' state is
made by telling the orchestrator's registry about calls, as the driver will.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from failhook.certs import DevCerts
from failhook.v1 import target_service_pb2 as pb
from failhook.v1 import target_service_pb2_grpc as pb_grpc
from failhook_orchestrator.engine.breaker import CallResult
from tests.support.harness import Harness, client_channel, started_harness

DOWN = "down.internal:50052"
UP = "up.internal:50052"
DOWN_ERROR = CallResult(status_code=14, message="connection refused")


@pytest.fixture
async def sqlite_harness(dev_certs: DevCerts, endpoint: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """An orchestrator on SQLite (TargetService keeps no rows: one backend is enough)."""
    async with started_harness(dev_certs, f"sqlite+aiosqlite:///{tmp_path / 'f.db'}", endpoint) as harness:
        yield harness


def trip(harness: Harness, target: str) -> None:
    """Five runs fail on ``target`` with UNAVAILABLE: its breaker opens."""
    targets = harness.orchestrator.targets
    for i in range(5):
        assert targets.admit(target, f"run-{i}").go
        targets.record(target, f"run-{i}", DOWN_ERROR)


async def call_error(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


def future(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int((time.time() + seconds) * 1e9))
    return stamp


async def test_list_and_get_show_the_breakers(sqlite_harness: Harness, dev_certs: DevCerts) -> None:
    harness = sqlite_harness
    targets = harness.orchestrator.targets
    async with client_channel(dev_certs, harness.orchestrator.port, identity="worker") as channel:
        stub = pb_grpc.TargetServiceStub(channel)  # `read` is enough to look
        assert list((await stub.ListTargets(pb.ListTargetsRequest())).targets) == []
        targets.admit(UP, "ok-run")
        targets.record(UP, "ok-run", CallResult())
        trip(harness, DOWN)
        targets.admit(DOWN, "parked-run")  # parked: the breaker is open

        listed = await stub.ListTargets(pb.ListTargetsRequest())
        assert [(t.target, t.state) for t in listed.targets] == [
            (DOWN, pb.BREAKER_STATE_OPEN),
            (UP, pb.BREAKER_STATE_CLOSED),
        ]
        assert listed.next_page_token == ""
        down = (await stub.GetTarget(pb.GetTargetRequest(target=DOWN))).target
        assert (down.consecutive_failures, down.failing_runs, down.trips, down.parked_runs) == (5, 5, 1, 2)
        assert down.last_error == "UNAVAILABLE: connection refused" and down.last_status_code == 14
        assert down.HasField("open_time") and down.HasField("last_error_time")
        assert down.next_probe_time.ToMicroseconds() - down.open_time.ToMicroseconds() == 2_000_000
        assert down.cooldown.ToMilliseconds() == 2000
        assert down.breaker_enabled and not down.HasField("pause")
        up = (await stub.GetTarget(pb.GetTargetRequest(target=UP))).target
        assert up.HasField("last_success_time") and not up.HasField("open_time") and up.last_error == ""

        only_open = await stub.ListTargets(pb.ListTargetsRequest(state=[pb.BREAKER_STATE_OPEN]))
        assert [t.target for t in only_open.targets] == [DOWN]
        first = await stub.ListTargets(pb.ListTargetsRequest(page_size=1))
        assert [t.target for t in first.targets] == [DOWN] and first.next_page_token
        second = await stub.ListTargets(pb.ListTargetsRequest(page_size=1, page_token=first.next_page_token))
        assert [t.target for t in second.targets] == [UP] and second.next_page_token == ""


async def test_bad_requests_name_the_field(sqlite_harness: Harness) -> None:
    stub = pb_grpc.TargetServiceStub(sqlite_harness.channel)
    unknown_state: Any = 7
    cases = [
        (stub.GetTarget(pb.GetTargetRequest()), grpc.StatusCode.INVALID_ARGUMENT, "target: is required"),
        (stub.GetTarget(pb.GetTargetRequest(target="no port")), grpc.StatusCode.INVALID_ARGUMENT, "target:"),
        (stub.GetTarget(pb.GetTargetRequest(target=DOWN)), grpc.StatusCode.NOT_FOUND, "not been called"),
        (
            stub.ListTargets(pb.ListTargetsRequest(page_size=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_size",
        ),
        (
            stub.ListTargets(pb.ListTargetsRequest(state=[unknown_state])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "state:",
        ),
        (
            stub.ListTargets(pb.ListTargetsRequest(page_token="garbage")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
        (stub.PauseTarget(pb.PauseTargetRequest(target=DOWN)), grpc.StatusCode.INVALID_ARGUMENT, "reason:"),
        (
            stub.PauseTarget(pb.PauseTargetRequest(target=DOWN, reason="x", until=future(-60))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "until: must be in the future",
        ),
        (
            stub.ResumeTarget(pb.ResumeTargetRequest(target=DOWN)),
            grpc.StatusCode.NOT_FOUND,
            "not been called",
        ),
        (
            stub.ResumeTarget(pb.ResumeTargetRequest(target=DOWN, release_rate=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "release_rate:",
        ),
    ]
    for call, code, text in cases:
        error = await call_error(call)
        assert error.code() == code, (text, error.details())
        assert text in (error.details() or ""), error.details()
    assert sqlite_harness.orchestrator.targets.snapshots() == []  # nothing was paused or made


async def test_pause_and_resume_need_operate_and_are_audited(
    sqlite_harness: Harness, dev_certs: DevCerts, caplog: pytest.LogCaptureFixture
) -> None:
    harness = sqlite_harness
    port = harness.orchestrator.port
    caplog.set_level("INFO", logger="failhook.audit")
    async with client_channel(dev_certs, port, identity="worker") as channel:
        worker = pb_grpc.TargetServiceStub(channel)
        error = await call_error(worker.PauseTarget(pb.PauseTargetRequest(target=DOWN, reason="nope")))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "lacks role 'operate'" in (error.details() or "")
    assert harness.orchestrator.targets.snapshot(DOWN) is None  # the refused call changed nothing

    until = future(3600)
    async with client_channel(dev_certs, port, identity="operator") as channel:
        operator = pb_grpc.TargetServiceStub(channel)
        paused = (
            await operator.PauseTarget(pb.PauseTargetRequest(target=DOWN, reason="db migration", until=until))
        ).target
        assert paused.pause.source == pb.PAUSE_SOURCE_OPERATOR
        assert paused.pause.paused_by == "spiffe://failhook.dev/operator"
        assert paused.pause.reason == "db migration"
        assert paused.pause.until.ToMicroseconds() == until.ToMicroseconds()
        admission = harness.orchestrator.targets.admit(DOWN, "a-run")
        assert not admission.go and admission.detail == (
            "target paused by spiffe://failhook.dev/operator: db migration"
        )
        listed = await operator.ListTargets(pb.ListTargetsRequest(paused_only=True))
        assert [(t.target, t.parked_runs) for t in listed.targets] == [(DOWN, 1)]

        trip(harness, UP)
        resumed = (await operator.ResumeTarget(pb.ResumeTargetRequest(target=UP, release_rate=50))).target
        assert resumed.state == pb.BREAKER_STATE_CLOSED and resumed.release_rate == 50
        resumed = (await operator.ResumeTarget(pb.ResumeTargetRequest(target=DOWN))).target
        assert not resumed.HasField("pause") and resumed.release_rate == 10  # slow start
        assert harness.orchestrator.targets.due()[0].run_id == "a-run"
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "failhook.audit"]
    actions = [(a["action"], a.get("target"), a["identity"].rpartition("/")[2]) for a in audit]
    assert actions == [
        ("authz.denied", None, "worker"),
        ("target.pause", DOWN, "operator"),
        ("target.resume", UP, "operator"),
        ("target.resume", DOWN, "operator"),
    ]
    assert audit[1]["reason"] == "db migration" and audit[1]["until"] == until.ToJsonString()
    assert audit[2]["release_rate"] == "50"
