"""The console's pure parts: query filters, the overview's counting, the charts, the guard."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from starlette.datastructures import QueryParams
from starlette.types import Message, Receive, Scope, Send

from failhook.cli import main
from failhook.cli.connection import UsageError
from failhook.client import OrchestratorClient
from failhook.console import charts
from failhook.console.access import COOKIE_NAME, MAX_FORM_BYTES, AccessGuard, Sessions, form_of
from failhook.console.command import bind
from failhook.console.filters import FilterError, dead_letter_query, run_query
from failhook.console.snapshots import MAX_AGE_SECONDS, OverviewSnapshots
from failhook.console.stats import OTHER, TOP_GROUPS, Fact, summarize
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
TOKEN = "t" * 43


def test_the_dead_letter_query_becomes_the_list_filter() -> None:
    query = dead_letter_query(
        QueryParams(
            "workflow=a,b&failed_step=charge&hook_state=failed&hook_state=pending"
            "&fail_status=UNAVAILABLE,9&after=2h&before=2026-12-01T15:00Z&page_size=20&page_token=xyz"
        ),
        now=NOW,
    )
    assert list(query.filter.workflow) == ["a", "b"]
    assert list(query.filter.failed_step) == ["charge"]
    assert list(query.filter.hook_state) == [dl.HOOK_STATE_FAILED, dl.HOOK_STATE_PENDING]
    assert list(query.filter.fail_status) == [14, 9]
    assert query.filter.dead_lettered_after.ToDatetime(tzinfo=UTC) == NOW - timedelta(hours=2)
    assert query.filter.dead_lettered_before.ToDatetime(tzinfo=UTC) == NOW.replace(minute=0)
    assert (query.page_size, query.page_token) == (20, "xyz")
    assert query.page_link("next") == (
        "?workflow=a%2Cb&failed_step=charge&hook_state=failed&hook_state=pending"
        "&fail_status=UNAVAILABLE%2C9&after=2h&before=2026-12-01T15%3A00Z&page_size=20&page_token=next"
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("fail_status=NOPE", "fail_status"),
        ("hook_state=maybe", "hook_state"),
        ("after=yesterday", "after"),
        ("after=1h&before=2h", "before"),
        ("page_size=0", "page_size"),
        ("page_size=ten", "page_size"),
    ],
)
def test_an_unusable_dead_letter_filter_names_its_field(query: str, field: str) -> None:
    with pytest.raises(FilterError) as error:
        dead_letter_query(QueryParams(query), now=NOW)
    assert error.value.field == field and str(error.value).startswith(f"{field}: ")


def test_the_run_query() -> None:
    query = run_query(QueryParams("workflow=w&state=dead_lettered&state=SUCCEEDED&after=1d"), now=NOW)
    assert query.workflow == ["w"]
    assert query.state == [run_pb2.RUN_STATE_DEAD_LETTERED, run_pb2.RUN_STATE_SUCCEEDED]
    assert query.created_after == NOW - timedelta(days=1) and query.created_before is None
    with pytest.raises(FilterError, match=r"^state: "):
        run_query(QueryParams("state=asleep"))


def test_summarize_counts_per_hour_and_day_with_the_small_groups_as_other() -> None:
    facts = [Fact(NOW - timedelta(minutes=10), "w0", "s0", "t0")] * 5
    facts += [Fact(NOW - timedelta(hours=3), f"w{n}", "s1", "t1") for n in range(1, TOP_GROUPS + 3)]
    facts.append(Fact(NOW - timedelta(days=3), "w0", "s0", "t2"))  # in the week, not the day
    facts.append(Fact(NOW - timedelta(days=9), "w0", "s0", "t3"))  # in neither
    overview = summarize(facts, NOW)
    hourly = overview.by_workflow_24h
    assert len(hourly.starts) == 24 and hourly.starts[-1] == NOW.replace(minute=0)
    assert hourly.total == 5 + TOP_GROUPS + 2
    names = [name for name, _ in hourly.groups]
    assert names[0] == "w0" and names[-1] == OTHER and len(names) == TOP_GROUPS + 1
    assert hourly.groups[0][1][-1] == 5 and sum(hourly.groups[-1][1]) == 3
    assert dict(overview.by_step_24h.groups)["s1"][-4] == TOP_GROUPS + 2
    daily = overview.by_workflow_7d
    assert daily.starts[0] == datetime(2026, 11, 25, tzinfo=UTC) and daily.total == 5 + TOP_GROUPS + 3
    assert overview.top_targets == [("t1", TOP_GROUPS + 2), ("t0", 5), ("t2", 1)]
    assert overview.scanned == len(facts) and not overview.truncated


def test_charts_escape_names_from_the_server() -> None:
    overview = summarize([Fact(NOW, "<script>alert(1)</script>", "s", '"><b>')], NOW)
    svg = charts.stacked_bars(overview.by_workflow_24h, "t") + charts.bar_list(overview.top_targets, "t")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert '"><b>' not in svg


def test_the_timeline_draws_one_bar_per_attempt() -> None:
    attempts = []
    for n in range(3):
        attempt = run_pb2.StepAttempt(attempt=n + 1, status_code=14, retryable=True)
        attempt.start_time.FromDatetime(NOW + timedelta(seconds=n))
        attempt.duration.FromMilliseconds(20)
        attempts.append(attempt)
    svg = charts.attempt_timeline(attempts)
    assert svg.count("<rect") == 3 and "#3 UNAVAILABLE" in svg
    assert charts.attempt_timeline([]) == ""


def test_sessions_forget_the_oldest_beyond_the_limit() -> None:
    sessions = Sessions(limit=2)
    first, second, third = sessions.open(), sessions.open(), sessions.open()
    assert sessions.csrf_token(first) is None
    assert sessions.csrf_token(second) and sessions.csrf_token(third)
    assert sessions.csrf_token(second) != sessions.csrf_token(third)
    assert sessions.csrf_token(None) is None


class _Exchange:
    """Calls the guard like a server does and records the response."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.reached: dict[str, str] | None = None
        self.guard = AccessGuard(self._app, TOKEN)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import Request  # noqa: PLC0415
        from starlette.responses import PlainTextResponse  # noqa: PLC0415

        self.reached = dict(form_of(Request(scope)))
        await PlainTextResponse("ok")(scope, receive, send)

    async def call(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        query = path.partition("?")[2].encode()
        scope: Scope = {
            "type": "http",
            "method": method,
            "path": path.partition("?")[0],
            "query_string": query,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "scheme": "http",
            "server": ("127.0.0.1", 8081),
        }
        messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Message:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = {k.decode(): v.decode() for k, v in message["headers"]}

        await self.guard(scope, receive, send)


async def test_the_guard_checks_session_origin_type_size_and_token() -> None:
    exchange = _Exchange()
    await exchange.call("GET", f"/runs?token={TOKEN}&state=failed", {"host": "127.0.0.1:8081"})
    assert exchange.status == 303 and exchange.headers["location"] == "/runs?state=failed"
    session = exchange.headers["set-cookie"].split(";")[0]
    assert session.startswith(f"{COOKIE_NAME}=") and "SameSite=strict" in exchange.headers["set-cookie"]
    csrf = exchange.guard.sessions.csrf_token(session.split("=", 1)[1])
    base = {"host": "127.0.0.1:8081", "cookie": session}
    form = {**base, "content-type": "application/x-www-form-urlencoded"}

    await exchange.call("GET", "/runs", base)
    assert exchange.status == 200 and exchange.headers["x-frame-options"] == "DENY"
    assert exchange.headers["cache-control"] == "no-store"
    await exchange.call("GET", "/static/console.css", base)
    assert exchange.headers["cache-control"] == "private, max-age=3600"
    await exchange.call("DELETE", "/runs", base)
    assert exchange.status == 405
    await exchange.call(
        "POST", "/x", {**form, "origin": "http://evil.example"}, f"csrf_token={csrf}".encode()
    )
    assert exchange.status == 403
    await exchange.call("POST", "/x", {**base, "content-type": "multipart/form-data"}, b"")
    assert exchange.status == 415
    await exchange.call("POST", "/x", form, b"a=" + b"x" * MAX_FORM_BYTES)
    assert exchange.status == 413
    exchange.reached = None
    await exchange.call(
        "POST", "/x", {**form, "origin": "http://127.0.0.1:8081"}, f"csrf_token={csrf}&a=1".encode()
    )
    assert exchange.status == 200 and exchange.reached == {"a": "1"}
    await exchange.call("PUT", "/x", {"host": "127.0.0.1:8081"})
    assert exchange.status == 403  # no session: refused before the method is even looked at


def test_the_access_token_must_be_long() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        AccessGuard(_Exchange()._app, "short")


class _FakeLister:
    """Lists one dead letter once ``release`` is set; fails while ``fail`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0
        self.fail = False

    async def list_dead_letters(
        self, selected: dl.DeadLetterFilter, *, page_size: int, page_token: str
    ) -> dl.ListDeadLettersResponse:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("orchestrator gone")
        entry = dl.DeadLetter(dead_letter_id="d", run=run_pb2.WorkflowRun(workflow="w", endpoint="t"))
        entry.dead_letter_time.FromDatetime(datetime.now(UTC))
        return dl.ListDeadLettersResponse(dead_letters=[entry])


async def test_overview_snapshots_count_in_the_background_and_are_kept_for_a_while() -> None:
    now = [0.0]
    lister = _FakeLister()
    client = cast(OrchestratorClient, lister)
    snapshots = OverviewSnapshots(client, 100, clock=lambda: now[0], wait_seconds=0.01)
    first = await snapshots.get()
    assert first.counting and first.overview is None and lister.calls == 1
    lister.release.set()
    await snapshots.wait()
    done = await snapshots.get()
    assert done.overview is not None and done.overview.by_workflow_24h.total == 1
    assert (await snapshots.get()).overview is done.overview and lister.calls == 1  # still fresh
    now[0] = MAX_AGE_SECONDS + 1
    again = await snapshots.get()  # stale: counted again, within the wait
    assert not again.counting and again.overview is not done.overview and lister.calls == 2

    lister.fail = True
    failed = await snapshots.get(refresh=True)
    assert isinstance(failed.error, RuntimeError) and failed.overview is again.overview
    assert (await snapshots.get()).error is None  # shown once; the next visit counts again
    await snapshots.close()


def test_bind_listens_without_nagle_and_names_a_bad_address() -> None:
    sock = bind("127.0.0.1:0")
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with pytest.raises(UsageError, match="cannot listen on"):
            bind(f"127.0.0.1:{sock.getsockname()[1]}")  # taken
    finally:
        sock.close()
    for bad in ("8081", "127.0.0.1:http", "127.0.0.1:70000", ":8081"):
        with pytest.raises(UsageError, match="--listen: expected HOST:PORT"):
            bind(bad)


def test_failhook_console_without_an_identity_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no var/certs here
    assert main(["console", "--listen", "127.0.0.1:0"]) == 2
    assert "no TLS identity" in capsys.readouterr().err
    assert main(["console", "--insecure", "--listen", "nowhere"]) == 2
    assert "--listen: expected HOST:PORT" in capsys.readouterr().err
