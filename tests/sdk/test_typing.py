"""The SDK's types, proved with mypy: handlers cannot create steps, signatures are checked.

Each snippet marks the lines where mypy must report an error with ``# E: <part of the message>``;
every other line must type-check. All snippets go through one mypy run with the repo's config.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PRELUDE = """\
from collections.abc import Mapping
from datetime import timedelta

from failhook.worker import FailureContext, InMemoryIdempotencyStore, Worker, WorkflowContext, idempotent

worker = Worker()


@worker.workflow("order")
async def order(ctx: WorkflowContext) -> dict[str, str]:
    return {}
"""

SNIPPETS = {
    "correct": """
        def charge_card(payload: bytes, *, currency: str = "EUR") -> str:
            return currency

        async def reserve(item: str) -> list[int]:
            return [1]

        @worker.workflow("shop")
        async def shop(ctx: WorkflowContext) -> dict[str, str]:
            charge: str = await ctx.run("charge", charge_card, ctx.payload, currency="USD")
            slots: list[int] = await ctx.run("reserve", reserve, "book")
            await ctx.sleep("cool-off", timedelta(seconds=5))
            return {"charge": charge, "slots": str(slots), "key": ctx.idempotency_key}

        @shop.on_failure
        @idempotent(InMemoryIdempotencyStore())
        async def failed(
            ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
        ) -> str | None:
            reason: int = ctx.failure.reason
            return f"{ctx.workflow_run_id} {ctx.env.get('HOME')} {fail_status} {reason} {dict(fail_headers)}"

        @order.on_failure
        async def returns_none(
            ctx: FailureContext, status: int, response: str, headers: Mapping[str, str]
        ) -> None:
            print(ctx.request_payload, ctx.headers, ctx.url, ctx.delivery_attempt)
    """,
    "handler_run": """
        @order.on_failure
        async def failed(
            ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
        ) -> str | None:
            await ctx.run("cleanup", lambda: 1)  # E: "FailureContext" has no attribute "run"
            return None
    """,
    "handler_sleep": """
        @order.on_failure
        async def failed(
            ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
        ) -> None:
            await ctx.sleep("later", timedelta(seconds=1))  # E: "FailureContext" has no attribute "sleep"
    """,
    "handler_signatures": """
        async def too_few(ctx: FailureContext, fail_status: int) -> str:
            return ""

        async def workflow_context(
            ctx: WorkflowContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
        ) -> str:
            return ""

        async def returns_int(
            ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
        ) -> int:
            return 1

        def not_async(
            ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
        ) -> str:
            return ""

        async def bytes_response(
            ctx: FailureContext, fail_status: int, fail_response: bytes, fail_headers: Mapping[str, str]
        ) -> str:
            return ""

        order.on_failure(too_few)  # E: Argument 1 to "on_failure" of "Workflow"
        order.on_failure(workflow_context)  # E: Argument 1 to "on_failure" of "Workflow"
        order.on_failure(returns_int)  # E: Argument 1 to "on_failure" of "Workflow"
        order.on_failure(not_async)  # E: Argument 1 to "on_failure" of "Workflow"
        order.on_failure(bytes_response)  # E: Argument 1 to "on_failure" of "Workflow"
        idempotent(InMemoryIdempotencyStore())(too_few)  # E: has incompatible type
    """,
    "steps": """
        def takes_int(n: int) -> str:
            return str(n)

        async def fetch(key: str) -> dict[str, bytes]:
            return {}

        @worker.workflow("typed")
        async def typed(ctx: WorkflowContext) -> None:
            wrong: int = await ctx.run("a", takes_int, 1)  # E: No overload variant of "run"
            await ctx.run("b", takes_int, "one")  # E: No overload variant of "run"
            reveal_type(await ctx.run("c", takes_int, 1))  # E: Revealed type is "str"
            reveal_type(await ctx.run("e", fetch, "k"))  # E: Revealed type is "dict[str, bytes]"
            await ctx.sleep("d", 5)  # E: Argument 2 to "sleep" of "WorkflowContext" has incompatible type
    """,
}

_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<message>.*)$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, str]]:
    """Run mypy once over every snippet; return each snippet's errors (and revealed types) by line."""
    directory = tmp_path_factory.mktemp("typing")
    paths = []
    for name, body in SNIPPETS.items():
        path = directory / f"snippet_{name}.py"
        path.write_text(_PRELUDE + textwrap.dedent(body))
        paths.append(path)
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(directory / ".mypy_cache"),
        "--no-error-summary",
        "--no-pretty",
        "--show-error-codes",
        *map(str, paths),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    errors: dict[str, dict[int, str]] = {name: {} for name in SNIPPETS}
    for line in done.stdout.splitlines():
        match = _ERROR.match(line)
        assert match, f"unexpected mypy output: {line}\n{done.stdout}"
        if match["kind"] == "note" and not match["message"].startswith("Revealed type"):
            continue  # explanations of an error on the same line
        name = Path(match["path"]).stem.removeprefix("snippet_")
        errors[name][int(match["line"])] = match["message"]
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SNIPPETS))
def test_mypy_reports_exactly_the_marked_errors(name: str, mypy_errors: dict[str, dict[int, str]]) -> None:
    source = (_PRELUDE + textwrap.dedent(SNIPPETS[name])).splitlines()
    expected = {
        number: line.partition("# E: ")[2] for number, line in enumerate(source, start=1) if "# E: " in line
    }
    found = mypy_errors[name]
    assert set(found) == set(expected), f"mypy errors: {found}"
    for number, text in expected.items():
        assert text in found[number], f"line {number}: {found[number]!r} does not mention {text!r}"
