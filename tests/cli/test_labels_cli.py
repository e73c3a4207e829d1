"""``--label`` on ``runs start``, ``runs list`` and the DLQ filter flags; labels shown by ``runs get``."""

from __future__ import annotations

import pytest

from tests.support.harness import Harness

from .conftest import Cli
from .test_dlq_cli import FAIL_FIRST, dead_letter

pytestmark = pytest.mark.asyncio


async def test_labels_from_the_command_line(cli: Cli, harness: Harness) -> None:
    started = await cli(
        "runs", "start", "tagged", "--endpoint", harness.endpoint, "--payload", '{"steps": 1}',
        "--label", "tenant=acme", "--label", "release=r1", "--json",
    )  # fmt: skip
    assert started.code == 0, started.err
    run_id = started.json()["run"]["run_id"]
    assert started.json()["run"]["labels"] == {"tenant": "acme", "release": "r1"}
    await cli("runs", "start", "tagged", "--endpoint", harness.endpoint, "--label", "tenant=other")
    listed = await cli("runs", "list", "--label", "tenant=acme", "--label", "release=r1", "--json")
    assert [r["run_id"] for r in listed.json()] == [run_id]
    shown = await cli("runs", "get", run_id)
    assert "release=r1, tenant=acme" in shown.out

    entry = await dead_letter(harness, FAIL_FIRST, workflow="doomed")  # no labels
    dlq = await cli("dlq", "list", "--label", "tenant=acme", "--json")
    assert dlq.code == 0 and entry not in dlq.out
    twice = await cli("runs", "list", "--label", "tenant=a", "--label", "tenant=b")
    assert twice.code == 2 and "--label" in twice.err
