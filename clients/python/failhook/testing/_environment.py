"""``OrchestratorEnvironment``: a real orchestrator on a temporary SQLite file, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
import grpc.aio

from failhook.certs import DevCerts, init_dev_certs
from failhook.client import OrchestratorClient
from failhook.testing._process import OrchestratorProcess, find_orchestrator
from failhook.tls import TLSFiles
from failhook.v1 import dead_letter_service_pb2, run_pb2
from failhook.worker import Worker, Workflow

__all__ = ["ENDED_STATES", "FAST_RETRIES_CONFIG", "OrchestratorEnvironment"]

FAST_RETRIES_CONFIG = """\
# failhook.testing: retries in milliseconds, so that a failing step reaches its hook at once.
[step_policy]
max_attempts = 3
initial_backoff = 0.01
max_backoff = 0.05
jitter = 0.0
attempt_timeout = 10.0

[hook_policy]
max_attempts = 3
initial_backoff = 0.01
max_backoff = 0.05
jitter = 0.0
attempt_timeout = 10.0
"""
"""The default configuration file of an environment: three attempts, 10-50 ms apart, for steps
and for failure-hook deliveries (the orchestrator's defaults wait seconds between attempts)."""

ENDED_STATES: frozenset[run_pb2.RunState.ValueType] = frozenset(
    {run_pb2.RUN_STATE_SUCCEEDED, run_pb2.RUN_STATE_DEAD_LETTERED, run_pb2.RUN_STATE_CANCELED}
)
"""The states in which a run does nothing more. ``FAILED`` is not one: the failure hook is being
delivered, and the run becomes ``DEAD_LETTERED`` once it has an outcome."""

_ADMIN = "orchestrator"  # the dev identity with every role
_EXIT_WAIT = 5.0  # seconds to see whether an unreachable orchestrator has exited


class OrchestratorEnvironment:
    """A real ``failhook-orchestrator`` process for your tests, as Temporal's test environment is.

    It runs the installed command (see :func:`find_orchestrator`) on ``127.0.0.1`` with a free
    port, a fresh SQLite file and throw-away development certificates (``failhook certs init``),
    with mutual TLS as in production. Start it with :meth:`start`, then serve your workflows
    with :meth:`serving` and drive runs with :meth:`start_run` and :meth:`wait_for_end`::

        async with await OrchestratorEnvironment.start() as env:
            async with env.serving(worker) as endpoint:
                run = await env.run_to_end("order", endpoint, payload=b'{"amount": 0}')
                assert run.state == RUN_STATE_DEAD_LETTERED
                entry = await env.client.get_dead_letter(run.dead_letter_id)
                assert entry.hook.result == "on-call paged"

    Everything lives in one directory (removed on stop if the environment made it): ``certs/``,
    ``failhook.db`` and ``failhook.toml``.
    """

    def __init__(
        self,
        *,
        directory: Path,
        owns_directory: bool,
        certs: DevCerts,
        database: str,
        process: OrchestratorProcess,
        port: int,
    ) -> None:
        """Use :meth:`start` instead."""
        self._directory = directory
        self._owns_directory = owns_directory
        self._certs = certs
        self._database = database
        self._process = process
        self._port = port
        self._clients: list[OrchestratorClient] = []
        self._client = self.connect(_ADMIN)
        self._stopped = False

    @classmethod
    async def start(
        cls,
        directory: str | os.PathLike[str] | None = None,
        *,
        config: str = FAST_RETRIES_CONFIG,
        executable: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> OrchestratorEnvironment:
        """Start an orchestrator and return once it listens.

        Args:
            directory: Where the certificates, database and config file go; created if missing.
                ``None`` makes a temporary directory, removed by :meth:`stop`.
            config: The TOML configuration file's text (see the runbook's settings); the default
                makes retries fast.
            executable: The ``failhook-orchestrator`` command, if not next to ``sys.executable``
                or on ``PATH``.
            extra_args: More ``serve`` flags, e.g. ``["--log-level", "DEBUG"]``.
            env: Extra environment variables of the process. ``FAILHOOK_*`` variables of the
                tests' own environment are not passed on, so that they cannot change the setup.
            startup_timeout: Seconds the process may take to listen.

        Returns:
            The running environment.

        Raises:
            OrchestratorNotFoundError: If the command cannot be found.
            OrchestratorStartError: If it exits or stays silent; the message ends with its log.
        """
        command = find_orchestrator(executable)
        owns = directory is None
        root = Path(tempfile.mkdtemp(prefix="failhook-testing-")) if directory is None else Path(directory)
        try:
            root.mkdir(parents=True, exist_ok=True)
            certs = init_dev_certs(root / "certs", overwrite=True)
            database = f"sqlite+aiosqlite:///{root / 'failhook.db'}"
            config_file = root / "failhook.toml"
            config_file.write_text(config)
            files = certs.tls_files(_ADMIN)
            argv = [
                str(command),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
                "--config",
                str(config_file),
                "--tls-ca",
                str(files.ca),
                "--tls-cert",
                str(files.cert),
                "--tls-key",
                str(files.key),
                "--grace-period",
                "2",
                *extra_args,
            ]
            process_env = {k: v for k, v in os.environ.items() if not k.startswith("FAILHOOK_")}
            process_env.update(env or {})
            process, port = await OrchestratorProcess.spawn(
                argv, env=process_env, startup_timeout=startup_timeout
            )
        except BaseException:
            if owns:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(
            directory=root, owns_directory=owns, certs=certs, database=database, process=process, port=port
        )

    async def __aenter__(self) -> Self:
        """Return the environment itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the environment."""
        await self.stop()

    async def stop(self, timeout: float = 15.0) -> int:
        """Close the clients, stop the orchestrator (SIGTERM, SIGKILL after ``timeout`` seconds)
        and remove the directory if the environment made it. Calling it again does nothing.

        Args:
            timeout: Seconds the graceful stop may take.

        Returns:
            The orchestrator's exit status (0 after a graceful stop).
        """
        if self._stopped:
            return self._process.returncode or 0
        self._stopped = True
        for client in self._clients:
            await client.close()
        code = await self._process.stop(timeout)
        if self._owns_directory:
            shutil.rmtree(self._directory, ignore_errors=True)
        return code

    @property
    def port(self) -> int:
        """The port the orchestrator listens on (``127.0.0.1``)."""
        return self._port

    @property
    def target(self) -> str:
        """The orchestrator's gRPC target, ``localhost:<port>`` (the name its certificate holds)."""
        return f"localhost:{self._port}"

    @property
    def directory(self) -> Path:
        """The directory holding ``certs/``, ``failhook.db`` and ``failhook.toml``."""
        return self._directory

    @property
    def certs(self) -> DevCerts:
        """The throw-away certificates: ``orchestrator``, ``worker`` and ``operator``."""
        return self._certs

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the orchestrator's SQLite file."""
        return self._database

    @property
    def worker_tls(self) -> TLSFiles:
        """The worker certificate: give it to ``Worker(tls=...)``; it admits this orchestrator."""
        return self._certs.tls_files("worker")

    @property
    def pid(self) -> int:
        """The orchestrator's process id (to signal it, e.g. to test crash recovery)."""
        return self._process.pid

    @property
    def log(self) -> list[str]:
        """The orchestrator's recent log lines, oldest first (handy in assertion messages)."""
        return self._process.log

    @property
    def client(self) -> OrchestratorClient:
        """A client with every role (the orchestrator's own identity); closed by :meth:`stop`."""
        return self._client

    def connect(self, identity: str = "worker") -> OrchestratorClient:
        """Open a client as one of the development identities; closed by :meth:`stop`.

        Args:
            identity: ``"worker"`` (submit and read), ``"operator"`` (read and operate) or
                ``"orchestrator"`` (admin), to test what each may do.

        Returns:
            The client.
        """
        client = OrchestratorClient.connect(self.target, tls=self._certs.tls_files(identity))
        self._clients.append(client)
        return client

    def worker(self, workflows: Worker | Iterable[Workflow[Any]] = ()) -> Worker:
        """Return a new worker with this environment's worker certificate.

        Args:
            workflows: Workflows to register on it, or a worker whose workflows to take (for
                example the module-level worker of your application, whose own certificate
                paths are for production).

        Returns:
            A worker that admits only this orchestrator, not started.
        """
        worker = Worker(tls=self.worker_tls)
        for workflow in workflows.workflows.values() if isinstance(workflows, Worker) else workflows:
            worker.add_workflow(workflow)
        return worker

    @contextlib.asynccontextmanager
    async def serving(self, workflows: Worker | Iterable[Workflow[Any]]) -> AsyncIterator[str]:
        """Serve workflows to this orchestrator for the duration of an ``async with`` block.

        The workflows are registered on a new :meth:`worker` (with this environment's
        certificates, whatever TLS files the given worker names) on ``127.0.0.1`` with a free port.

        Args:
            workflows: A worker whose workflows to serve, or the workflows.

        Yields:
            The endpoint's target, ``localhost:<port>``, for :meth:`start_run`.
        """
        worker = self.worker(workflows)
        async with worker.serving("127.0.0.1:0") as port:
            yield f"localhost:{port}"

    async def start_run(self, workflow: str, endpoint: str, **fields: Any) -> run_pb2.WorkflowRun:
        """Start a run (``StartRun``) with :attr:`client`.

        Args:
            workflow: The workflow's name.
            endpoint: The target of its ``WorkflowEndpoint``, e.g. from :meth:`serving`.
            **fields: The other arguments of :meth:`failhook.client.OrchestratorClient.start_run`:
                ``payload``, ``headers``, ``failure_hook``, ``retry_policy``, ``run_id``.

        Returns:
            The stored run.
        """
        response = await self._client.start_run(workflow, endpoint, **fields)
        return response.run

    async def wait_for_end(
        self,
        run_id: str,
        *,
        timeout: float = 30.0,
        states: Iterable[run_pb2.RunState.ValueType] = ENDED_STATES,
        poll_interval: float = 0.02,
    ) -> run_pb2.WorkflowRun:
        """Wait until a run is in one of ``states`` (by default, until it has ended).

        Args:
            run_id: The run's id.
            timeout: Seconds to wait.
            states: The states to wait for; :data:`ENDED_STATES` by default.
            poll_interval: Seconds between two ``GetRun`` calls.

        Returns:
            The run in the state reached.

        Raises:
            TimeoutError: If the run is not in one of ``states`` in time; the message names the
                state it is in and its last error.
            RuntimeError: If the orchestrator process has exited; the message ends with its log.
            grpc.aio.AioRpcError: If ``GetRun`` fails otherwise.
        """
        wanted = frozenset(states)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                run = await self._client.get_run(run_id)
            except grpc.aio.AioRpcError as err:
                # Unreachable: if the process has died, say so rather than UNAVAILABLE.
                if err.code() == grpc.StatusCode.UNAVAILABLE and await self._process.exited(_EXIT_WAIT):
                    self._check_alive()
                raise
            if run.state in wanted:
                return run
            if time.monotonic() >= deadline:
                names = ", ".join(sorted(run_pb2.RunState.Name(s) for s in wanted))
                last = run.pending_attempts[-1].message if run.pending_attempts else "none"
                raise TimeoutError(
                    f"run {run_id} is still {run_pb2.RunState.Name(run.state)} after {timeout:g} s "
                    f"(waiting for {names}); last failed attempt: {last}"
                )
            await asyncio.sleep(poll_interval)

    async def run_to_end(
        self, workflow: str, endpoint: str, *, timeout: float = 30.0, **fields: Any
    ) -> run_pb2.WorkflowRun:
        """Start a run and wait until it has ended.

        Args:
            workflow: The workflow's name.
            endpoint: The target of its ``WorkflowEndpoint``.
            timeout: Seconds to wait for the end.
            **fields: More :meth:`start_run` arguments (``payload``, ``headers`` ...).

        Returns:
            The ended run: ``SUCCEEDED`` (see ``output``), ``DEAD_LETTERED`` (see
            ``dead_letter_id``) or ``CANCELED``.
        """
        run = await self.start_run(workflow, endpoint, **fields)
        return await self.wait_for_end(run.run_id, timeout=timeout)

    async def dead_letter(self, run: run_pb2.WorkflowRun) -> dead_letter_service_pb2.DeadLetter:
        """Return the dead-letter entry of a ``DEAD_LETTERED`` run.

        Args:
            run: The run, as :meth:`wait_for_end` returned it.

        Returns:
            The entry, with the failure and the failure hook's outcome.

        Raises:
            ValueError: If the run has no dead-letter entry.
        """
        if not run.dead_letter_id:
            raise ValueError(f"run {run.run_id} is {run_pb2.RunState.Name(run.state)}, not dead-lettered")
        return await self._client.get_dead_letter(run.dead_letter_id)

    def _check_alive(self) -> None:
        if self._process.returncode is not None:
            raise RuntimeError(
                f"the orchestrator exited with status {self._process.returncode}\n{self._process.describe()}"
            )
