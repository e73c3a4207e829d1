"""``failhook targets …`` against a real orchestrator over mTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from failhook.certs import DevCerts
from failhook_orchestrator.engine.breaker import CallResult
from tests.support.harness import Harness, started_harness

from .conftest import Cli

pytestmark = pytest.mark.asyncio

DOWN = "down.internal:50052"
UP = "up.internal:50052"


@pytest.fixture
async def harness(dev_certs: DevCerts, endpoint: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """An orchestrator on SQLite: TargetService keeps no rows, one backend is enough."""
    async with started_harness(dev_certs, f"sqlite+aiosqlite:///{tmp_path / 'f.db'}", endpoint) as started:
        yield started


def seed_targets(harness: Harness) -> None:
    """UP answered a call; five runs failed on DOWN (its breaker opens) and a sixth parked."""
    targets = harness.orchestrator.targets
    targets.admit(UP, "ok")
    targets.record(UP, "ok", CallResult())
    for i in range(5):
        targets.admit(DOWN, f"r{i}")
        targets.record(DOWN, f"r{i}", CallResult(status_code=14, message="connection refused"))
    targets.admit(DOWN, "waiting")


async def test_list_as_table_json_and_filtered(cli: Cli, harness: Harness) -> None:
    empty = await cli("targets", "list", identity="worker")
    assert (empty.code, empty.out.strip()) == (0, "No targets."), empty.err
    seed_targets(harness)

    table = await cli("targets", "list", identity="worker")  # `read` is enough
    assert table.code == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split() == [
        "TARGET",
        "STATE",
        "FAILURES",
        "RUNS",
        "PARKED",
        "IN-FLIGHT",
        "NEXT-PROBE",
        "LAST",
        "ERROR",
    ]
    assert [row.split()[:6] for row in rows] == [
        [DOWN, "OPEN", "5", "5", "2", "0"],
        [UP, "CLOSED", "0", "0", "0", "0"],
    ]
    assert rows[0].endswith("UNAVAILABLE: connection refused")

    listed = await cli("targets", "list", "--json")
    assert [(t["target"], t["state"]) for t in listed.json()] == [
        (DOWN, "BREAKER_STATE_OPEN"),
        (UP, "BREAKER_STATE_CLOSED"),
    ]
    only_open = await cli("targets", "list", "--json", "--state", "open")
    assert [t["target"] for t in only_open.json()] == [DOWN]
    closed_or_half = await cli("targets", "list", "--json", "--state", "closed", "--state", "half-open")
    assert [t["target"] for t in closed_or_half.json()] == [UP]
    limited = await cli("targets", "list", "--limit", "1")
    assert limited.code == 0 and len(limited.out.splitlines()) == 2
    assert "the first 1 targets" in limited.err
    assert (await cli("targets", "list", "--json", "--paused")).json() == []


async def test_show_as_text_and_json(cli: Cli, harness: Harness) -> None:
    seed_targets(harness)
    shown = await cli("targets", "show", DOWN)
    assert shown.code == 0, shown.err
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in shown.out.splitlines()}
    assert fields["state"] == "OPEN"
    assert fields["consecutive failures"] == "5" and fields["failing runs"] == "5"
    assert fields["last error"] == "UNAVAILABLE: connection refused"
    assert fields["cooldown"] == "2s" and fields["trips"] == "1" and fields["parked runs"] == "2"
    assert fields["paused"] == "-"
    as_json = await cli("targets", "show", DOWN, "--json")
    assert as_json.json()["target"]["failing_runs"] == 5
    missing = await cli("targets", "show", "nowhere.internal:1")
    assert missing.code == 3 and "NOT_FOUND" in missing.err


async def test_pause_and_resume(cli: Cli, harness: Harness) -> None:
    seed_targets(harness)
    refused = await cli("targets", "pause", UP, "--reason", "deploy", identity="worker")
    assert refused.code == 6 and "lacks role 'operate'" in refused.err
    assert harness.orchestrator.targets.snapshot(UP).pause is None  # type: ignore[union-attr]

    before = datetime.now(UTC)
    paused = await cli("targets", "pause", UP, "--reason", "deploy", "--for", "30m", identity="operator")
    assert paused.code == 0, paused.err
    assert paused.out.startswith(f"target {UP}: paused by spiffe://failhook.dev/operator (operator) until ")
    assert paused.out.strip().endswith(": deploy")
    pause = harness.orchestrator.targets.snapshot(UP).pause  # type: ignore[union-attr]
    assert pause is not None and pause.until is not None
    until = datetime.fromtimestamp(pause.until / 1e6, UTC)
    assert before + timedelta(minutes=30) <= until <= datetime.now(UTC) + timedelta(minutes=30)
    assert [t["target"] for t in (await cli("targets", "list", "--json", "--paused")).json()] == [UP]

    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    again = await cli("targets", "pause", UP, "--reason", "longer", "--until", at.isoformat(), "--json")
    assert again.json()["target"]["pause"]["until"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")

    resumed = await cli("targets", "resume", DOWN, "--rate", "20", identity="operator")
    assert resumed.code == 0, resumed.err
    assert resumed.out.strip() == f"target {DOWN}: CLOSED; releasing 2 parked runs at 20 runs/s"
    plain = await cli("targets", "resume", UP, "--json")
    assert "pause" not in plain.json()["target"] and plain.json()["target"]["state"] == "BREAKER_STATE_CLOSED"
    none_parked = await cli("targets", "resume", UP)
    assert none_parked.out.strip() == f"target {UP}: CLOSED; no parked runs"


async def test_usage_errors(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, text in [
        (("targets", "pause", UP), "--reason"),
        (("targets", "pause", UP, "--reason", "x", "--for", "1m", "--until", "2030-01-01"), "not allowed"),
        (("targets", "list", "--state", "ajar"), "invalid breaker state 'ajar'"),
        (("targets", "resume", UP, "--rate", "0"), "must be more than 0"),
        (("targets", "resume", UP, "--rate", "fast"), "invalid rate 'fast'"),
    ]:
        with pytest.raises(SystemExit) as exited:
            await cli(*argv)
        assert exited.value.code == 2, argv
        assert text in capsys.readouterr().err, argv
    past = await cli("targets", "pause", UP, "--reason", "x", "--until", "2001-01-01")
    assert past.code == 1 and "INVALID_ARGUMENT: until: must be in the future" in past.err
    blank = await cli("targets", "pause", UP, "--reason", "  ")
    assert blank.code == 2 and "--reason must not be empty" in blank.err
