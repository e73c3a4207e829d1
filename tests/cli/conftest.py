"""Fixtures of the CLI tests: run ``failhook.cli.main`` in a thread against the harness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from failhook.certs import DevCerts
from failhook.cli import main
from tests.support.harness import Harness


@dataclass(frozen=True)
class Result:
    """What one ``failhook`` invocation did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """Standard output parsed as one JSON document."""
        return json.loads(self.out)


Cli = Callable[..., Awaitable[Result]]
"""``await cli("runs", "list", identity="worker")``: run the CLI against the harness."""


def tls_flags(certs: DevCerts, identity: str) -> list[str]:
    """``--tls-ca/--tls-cert/--tls-key`` of a dev identity."""
    files = certs.tls_files(identity)
    return ["--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key)]


@pytest.fixture
def cli(harness: Harness, dev_certs: DevCerts, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``failhook ARGS --target localhost:<port> <TLS flags>`` in a thread; capture its output.

    The orchestrator runs in the test's event loop, so the CLI (which calls ``asyncio.run``)
    runs in a worker thread.
    """

    async def run(*argv: str, identity: str = "orchestrator", connection: bool = True) -> Result:
        capsys.readouterr()
        flags = ["--target", f"localhost:{harness.orchestrator.port}", *tls_flags(dev_certs, identity)]
        code = await asyncio.to_thread(main, [*argv, *flags] if connection else list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
