"""The TypeScript side of the end-to-end tests: build it with the repository's tsc, start it as a process."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / "node_modules" / ".bin" / "tsc"


def build(project: Path) -> None:
    """``tsc -b`` the project (and the SDK it references); incremental, so quick when up to date."""
    if not TSC.exists():
        raise AssertionError(f"{TSC} is missing: run `npm ci` at the repository root (`make test` does)")
    result = subprocess.run(
        [str(TSC), "-b", str(project)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"tsc -b {project} failed:\n{result.stdout}{result.stderr}"


@dataclass
class NodeProcess:
    """A running Node.js program and the port it printed."""

    process: subprocess.Popen[str]
    port: int
    stderr: Path

    def log(self) -> str:
        """What the program wrote on stderr so far."""
        return self.stderr.read_text()

    def stop(self) -> None:
        """SIGTERM (the worker shuts down gracefully), SIGKILL if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def running(
    script: Path, env: Mapping[str, str], log_dir: Path, marker: str = "listening on "
) -> Iterator[NodeProcess]:
    """Start ``node script`` and wait for the line ``<marker>HOST:PORT`` on its stdout."""
    stderr_path = log_dir / f"{script.stem}.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            ["node", str(script)], cwd=ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if marker in line and not port:  # "...:PORT"
                port.append(int(line.rsplit(":", 1)[1]))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    started = NodeProcess(process=process, port=0, stderr=stderr_path)
    try:
        if not found.wait(30):
            raise AssertionError(f"{script.name} did not start:\n{stderr_path.read_text()}")
        started.port = port[0]
        yield started
    finally:
        started.stop()
