"""Finding, starting and stopping the ``failhook-orchestrator`` command for tests.

The SDK does not import the orchestrator's Python package (they are separate distributions): it
runs the installed command as a subprocess, reads the port it bound from its log, and keeps its
log lines for error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "EXECUTABLE_NAME",
    "OrchestratorNotFoundError",
    "OrchestratorProcess",
    "OrchestratorStartError",
    "find_orchestrator",
]

EXECUTABLE_NAME = "failhook-orchestrator"
"""The orchestrator's console script."""

_LISTENING = re.compile(r"listening on \S+:(\d+) ")
_KEPT_LINES = 2000
_TAIL_LINES = 40


class OrchestratorNotFoundError(FileNotFoundError):
    """The ``failhook-orchestrator`` command is not installed where :func:`find_orchestrator` looks."""


class OrchestratorStartError(RuntimeError):
    """The orchestrator exited or stayed silent instead of listening; the message ends with its log."""


def find_orchestrator(executable: str | os.PathLike[str] | None = None) -> Path:
    """Return the ``failhook-orchestrator`` command to run.

    Looked for, in order: ``executable`` if given, then next to ``sys.executable`` (the
    environment the tests run in), then on ``PATH``.

    Args:
        executable: An explicit path to the command.

    Returns:
        The command's path.

    Raises:
        OrchestratorNotFoundError: If the command is in none of those places; the message says
            where it looked and how to install it.
    """
    if executable is not None:
        path = Path(executable)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise OrchestratorNotFoundError(
            f"the orchestrator executable {str(path)!r} is not an executable file"
        )
    beside = Path(sys.executable).with_name(EXECUTABLE_NAME)
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(EXECUTABLE_NAME)
    if found is not None:
        return Path(found)
    raise OrchestratorNotFoundError(
        f"failhook.testing runs the {EXECUTABLE_NAME!r} command, which is neither next to "
        f"{sys.executable} nor on PATH: install the orchestrator in the environment that runs the "
        "tests (the failhook-orchestrator distribution), or pass executable= with its path"
    )


class OrchestratorProcess:
    """A running ``failhook-orchestrator serve`` whose log is read continuously.

    Use :meth:`spawn`; stop it with :meth:`stop`.
    """

    def __init__(self, process: asyncio.subprocess.Process, command: Sequence[str]) -> None:
        self._process = process
        self._command = tuple(command)
        self._lines: deque[str] = deque(maxlen=_KEPT_LINES)
        self._port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def spawn(
        cls, command: Sequence[str], *, env: Mapping[str, str], startup_timeout: float
    ) -> tuple[OrchestratorProcess, int]:
        """Start ``command`` and wait until it logs the port it listens on.

        Args:
            command: The ``failhook-orchestrator serve ...`` command line.
            env: The process's environment.
            startup_timeout: Seconds to wait for the port.

        Returns:
            The process and its port.

        Raises:
            OrchestratorStartError: If it exits first or says nothing in time (it is then killed).
        """
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
        )
        started = cls(process, command)
        try:
            port = await asyncio.wait_for(asyncio.shield(started._port), startup_timeout)
        except (TimeoutError, OrchestratorStartError) as err:
            await started.stop(timeout=0)
            if isinstance(err, TimeoutError):
                reason = f"did not say where it listens within {startup_timeout:g} s"
            else:
                reason = f"exited with status {process.returncode}"
            raise OrchestratorStartError(f"the orchestrator {reason}\n{started.describe()}") from None
        return started, port

    async def _read(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            self._lines.append(text)
            match = _LISTENING.search(text)
            if match and not self._port.done():
                self._port.set_result(int(match[1]))
        await self._process.wait()
        if not self._port.done():
            self._port.set_exception(OrchestratorStartError("exited"))

    @property
    def log(self) -> list[str]:
        """The last log lines of the orchestrator (stderr), oldest first."""
        return list(self._lines)

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited, else ``None``."""
        return self._process.returncode

    @property
    def pid(self) -> int:
        """The process id."""
        return self._process.pid

    async def exited(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to exit; return whether it has."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self._process.returncode is not None

    def describe(self) -> str:
        """The command line and the tail of the log, for error messages."""
        tail = list(self._lines)[-_TAIL_LINES:]
        return "command: " + " ".join(self._command) + "\nlog:\n" + "\n".join(f"  {line}" for line in tail)

    async def stop(self, timeout: float = 15.0) -> int:
        """Stop gracefully (SIGTERM), or kill it after ``timeout`` seconds.

        Args:
            timeout: Seconds the graceful stop may take.

        Returns:
            The exit status.
        """
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        await self._reader
        # The reader settled the port: mark a start failure as seen (spawn reported it).
        self._port.exception()
        code = self._process.returncode
        assert code is not None
        return code
