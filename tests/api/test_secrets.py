"""Issue 12 defect 7: run headers are secrets. Sensitive header values are redacted in every read
and never logged (SQL parameters included), while endpoints and hooks still get the real values;
a database error reaches the caller as UNAVAILABLE with a generic message, no SQL, no parameters."""

from __future__ import annotations

import logging

import grpc
import pytest

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook_orchestrator.wire import REDACTED
from tests.support.endpoint import Recorder
from tests.support.harness import Harness, started_harness

from ._support import FAILING, execute

SECRET = "Bearer tok-9f1c2e"
HEADERS = {"authorization": SECRET, "x-api-key": "key-77ad", "x-tenant": "acme"}
SHOWN = {"authorization": REDACTED, "x-api-key": REDACTED, "x-tenant": "acme"}


async def test_sensitive_headers_are_redacted_in_every_read_and_forwarded_as_given(
    dev_certs: DevCerts,
    database_url: str,
    endpoint: str,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # statements and their parameters
    async with started_harness(dev_certs, database_url, endpoint) as harness:
        started = await harness.start(FAILING, headers=HEADERS)
        assert dict(started.headers) == SHOWN
        run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])
        assert dict(run.headers) == SHOWN
        listed = (await harness.runs.ListRuns(ws.ListRunsRequest(view=run_pb2.RUN_VIEW_FULL))).runs
        assert [dict(r.headers) for r in listed] == [SHOWN]
        entries = (
            await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(view=run_pb2.RUN_VIEW_FULL))
        ).dead_letters
        assert [dict(e.run.headers) for e in entries] == [SHOWN]
        assert dict((await harness.dead_letter(run.dead_letter_id)).run.headers) == SHOWN
        # The endpoint and the hook got the real values.
        assert all(m.get("authorization") == SECRET for m in recorder.metadata)
        assert dict(recorder.hook_requests[0].context.headers) == HEADERS
        # The resumed run keeps them, and forwards them again.
        resumed = await harness.dlq.ResumeRun(dl.ResumeRunRequest(dead_letter_id=run.dead_letter_id))
        assert dict(resumed.run.headers) == SHOWN
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "INSERT INTO runs" in logged  # the statements were logged ...
    assert SECRET not in logged and "key-77ad" not in logged  # ... without their parameters


async def test_sensitive_header_names_are_configurable(
    dev_certs: DevCerts, database_url: str, endpoint: str
) -> None:
    async with started_harness(
        dev_certs, database_url, endpoint, api_sensitive_headers=("x-tenant",)
    ) as harness:
        run = await harness.start({"steps": 0}, headers=HEADERS)
        assert dict(run.headers) == {**HEADERS, "x-tenant": REDACTED}


async def test_a_database_error_is_unavailable_without_sql_or_parameters(
    harness: Harness, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = await harness.start({"steps": 0}, headers=HEADERS)
    await harness.wait(run.run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    await execute(database_url, "ALTER TABLE dead_letters RENAME TO dead_letters_gone")
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(workflow=["scripted"]))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = info.value.details() or ""
    assert details.startswith("the database cannot serve the request now; retry later (ref ")
    logged = [r for r in caplog.records if r.name == "failhook.api"]
    assert len(logged) == 1 and "database unavailable" in logged[0].getMessage()
    assert "SELECT" not in logged[0].getMessage() and logged[0].exc_info is None
