"""Fixtures of the console's browser tests: a real orchestrator, an SDK worker, the console as a
process (``failhook console``), and Debian's Chromium driven by Playwright.

The orchestrator, the worker and the browser are shared by the module's tests (one event loop
per module); each test opens its own page, without cookies, and makes the dead letters it
changes. Screenshots go to ``var/screenshots/`` (git-ignored), whose path the session prints.
Chromium is ``/usr/bin/chromium``, installed by ``scripts/install-chromium.sh`` where missing
(as root); Playwright never downloads a browser here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, async_playwright

from failhook.certs import DevCerts
from failhook.v1 import run_pb2
from failhook.worker import FailureContext, NonRetryableError, StepError, Worker, WorkflowContext
from tests.support.harness import Harness, started_harness

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "var" / "screenshots"
FAILHOOK = Path(sys.executable).with_name("failhook")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_URL = re.compile(r"(http://\S+/\?token=(\S+))")


def _ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.geteuid() == 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-chromium.sh")], check=True, timeout=900)
        return
    reason = f"{CHROMIUM} is missing and this is not root: run scripts/install-chromium.sh as root"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests are mandatory)")
    pytest.skip(reason)


# The worker's workflows. "checkout" fails its "charge" step with a retryable INTERNAL while the
# payload's card is "expired" (so the step is attempted max_attempts times; INTERNAL is an
# application error, which never trips the target's circuit breaker), and succeeds with any
# other card; its hook answers. "refund" fails at once (non-retryable) and its failure handler
# raises (INTERNAL, retried until the hook policy gives up), so its entries have a hook to retry.


def _charge(payload: bytes) -> str:
    card = json.loads(payload)["card"]
    if card == "expired":
        raise StepError(
            f"card {card}: the PSP answered 500",
            code=grpc.StatusCode.INTERNAL,
            response=b'{"psp": "internal error"}',
            metadata={"x-psp": "acme"},
        )
    return f"charged {card}"


def build_worker(certs: DevCerts) -> Worker:
    """The SDK worker serving ``checkout`` and ``refund``."""
    worker = Worker(tls=certs.tls_files("worker"))

    @worker.workflow("checkout")
    async def checkout(ctx: WorkflowContext) -> dict[str, str]:
        checked = await ctx.run("validate", lambda: "valid")
        receipt = await ctx.run("charge", _charge, ctx.payload)
        return {"validate": checked, "receipt": receipt}

    @checkout.on_failure
    async def checkout_failed(
        ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
    ) -> str | None:
        return f"paged on-call for {ctx.workflow_run_id}"

    @worker.workflow("refund")
    async def refund(ctx: WorkflowContext) -> str:
        await ctx.run("lookup", lambda: "found")

        def notify() -> str:
            raise NonRetryableError("customer has no e-mail address")

        return await ctx.run("notify", notify)

    @refund.on_failure
    async def refund_failed(
        ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
    ) -> str | None:
        raise RuntimeError("ticketing system down")

    return worker


@dataclass
class Setup:
    """The shared orchestrator and worker."""

    harness: Harness
    worker_target: str
    certs: DevCerts

    async def dead_lettered(self, workflow: str, payload: Mapping[str, str]) -> run_pb2.WorkflowRun:
        """Start a run that fails and wait until it is in the dead-letter queue."""
        started = await self.harness.start(payload, workflow=workflow, endpoint=self.worker_target)
        return await self.harness.wait(started.run_id, [run_pb2.RUN_STATE_DEAD_LETTERED])


@dataclass
class Console:
    """A running ``failhook console``."""

    process: asyncio.subprocess.Process
    url: str
    token: str
    log: Path

    @property
    def base(self) -> str:
        """The URL without path and token, e.g. ``http://127.0.0.1:41234``."""
        return self.url.split("/?token=")[0]


async def start_console(setup: Setup, identity: str, workdir: Path) -> Console:
    """Run ``failhook console`` as ``identity`` on a free port; wait for the URL it prints."""
    files = setup.certs.tls_files(identity)
    log = workdir / f"console-{identity}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAILHOOK_", "OTEL_"))}
    with log.open("w") as errors:  # the child keeps its own copy of the descriptor
        process = await asyncio.create_subprocess_exec(
            str(FAILHOOK),
            "console",
            "--target",
            f"localhost:{setup.harness.orchestrator.port}",
            "--tls-ca",
            str(files.ca),
            "--tls-cert",
            str(files.cert),
            "--tls-key",
            str(files.key),
            "--listen",
            "127.0.0.1:0",
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            cwd=workdir,
            env=env,
        )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    match = _URL.search(line)
    if match is None:
        process.kill()
        raise AssertionError(f"failhook console printed no URL: {line!r}\n{log.read_text()}")
    return Console(process=process, url=match[1], token=match[2], log=log)


async def stop_console(console: Console) -> None:
    """SIGTERM, then wait for the exit."""
    if console.process.returncode is None:
        console.process.terminate()
        await asyncio.wait_for(console.process.wait(), 15)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The directory the tests write their screenshots to (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {SCREENSHOTS}")
    return SCREENSHOTS


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(dev_certs: DevCerts, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    """An orchestrator (SQLite file, fast retries) and the SDK worker, both over mTLS."""
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('console-db') / 'failhook.db'}"
    worker = build_worker(dev_certs)
    async with worker.serving("127.0.0.1:0") as port:
        target = f"localhost:{port}"
        async with started_harness(dev_certs, database, target) as harness:
            yield Setup(harness=harness, worker_target=target, certs=dev_certs)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    """``failhook console`` with the operator's certificate (roles read and operate)."""
    started = await start_console(setup, "operator", tmp_path_factory.mktemp("console"))
    yield started
    await stop_console(started)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium, headless, with a fresh profile."""
    _ensure_chromium()
    assert shutil.which(str(CHROMIUM))
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 900},
        )
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    """A new tab, with no cookie (so no session) left by another test."""
    await browser.clear_cookies()
    tab = await browser.new_page()
    try:
        yield tab
    finally:
        await tab.close()
