"""The orchestrator started as a real process (the installed console script)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from failhook.certs import DevCerts

SCRIPT = Path(sys.executable).with_name("failhook-orchestrator")
_LISTENING = re.compile(r"listening on [^ ]+:(\d+) ")

FAST_CONFIG = """
grace_period = 5.0

[runtime]
lease_seconds = 2.0
heartbeat_seconds = 0.5
claim_interval_seconds = 0.5

[dlq]
retention_days = 0

[step_policy]
max_attempts = 4
initial_backoff = 0.01
max_backoff = 0.05
jitter = 0.0
attempt_timeout = 5.0

[hook_policy]
max_attempts = 3
initial_backoff = 0.01
max_backoff = 0.05
attempt_timeout = 5.0
"""


@dataclass
class OrchestratorProcess:
    """A running ``failhook-orchestrator serve`` and what it logged."""

    process: subprocess.Popen[str]
    port: int
    reader: threading.Thread
    lines: list[str] = field(default_factory=list)

    def _reap(self) -> None:
        self.reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def terminate(self, timeout: float = 15.0) -> float:
        """SIGTERM; return how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        took = time.monotonic() - started
        self._reap()
        return took

    def kill(self) -> None:
        """SIGKILL, no chance to clean up."""
        self.process.kill()
        self.process.wait(10)
        self._reap()


def spawn(
    certs: DevCerts,
    database: str,
    tmp: Path,
    *,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    config_text: str = FAST_CONFIG,
) -> OrchestratorProcess:
    """Start the orchestrator on port 0 with mTLS and wait until it says where it listens."""
    config = tmp / "failhook.toml"
    config.write_text(config_text)
    files = certs.tls_files("orchestrator")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAILHOOK_", "OTEL_"))}
    env["FAILHOOK_TLS_KEY"] = str(files.key)  # one setting through the environment, the rest as flags
    env.update(extra_env or {})
    cmd = [
        str(SCRIPT),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        database,
        "--config",
        str(config),
        "--tls-ca",
        str(files.ca),
        "--tls-cert",
        str(files.cert),
        *extra_args,
    ]
    process = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    port_found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = _LISTENING.search(line)
            if match and not port:
                port.append(int(match[1]))
                port_found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = OrchestratorProcess(process=process, port=0, reader=reader, lines=lines)
    if not port_found.wait(30):
        started.kill()
        raise AssertionError("orchestrator did not start:\n" + "".join(lines))
    started.port = port[0]
    return started


@contextmanager
def running(certs: DevCerts, database: str, tmp: Path) -> Iterator[OrchestratorProcess]:
    """An orchestrator process for the duration of a block (killed if still alive)."""
    proc = spawn(certs, database, tmp)
    try:
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.kill()
