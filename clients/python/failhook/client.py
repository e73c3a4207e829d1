"""An async client of the orchestrator's ``WorkflowService`` and ``DeadLetterService``.

Open it with :meth:`OrchestratorClient.connect`, over mutual TLS by default::

    files = TLSFiles.from_dir(Path("var/certs"), "operator")
    async with OrchestratorClient.connect("127.0.0.1:50051", tls=files) as client:
        async for entry in client.iter_dead_letters(DeadLetterFilter(workflow=["checkout"])):
            print(entry.dead_letter_id, entry.failure.message)

Every method returns the generated messages and raises :class:`grpc.aio.AioRpcError` with the
server's status (``NOT_FOUND``, ``FAILED_PRECONDITION``, ``PERMISSION_DENIED``, ...) on failure.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from failhook import tls as tls_module
from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws_pb
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc

if TYPE_CHECKING:
    from failhook.v1.dead_letter_service_pb2_grpc import DeadLetterServiceAsyncStub
    from failhook.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub

__all__ = ["DEFAULT_TIMEOUT", "OrchestratorClient"]

_LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""The deadline of each call, in seconds, unless the client is given another."""

BULK_SECONDS_PER_ENTRY = 0.05
"""What a Bulk call's deadline grows by per entry it may handle: one call restarts, resumes or
deletes up to ``limit`` entries one transaction each, so a fixed deadline that suits 500 entries
would cut a call of 5000 short. 50 ms an entry is several times what a loaded server needs."""

SERVER_DEFAULT_BULK_LIMIT = 500
"""The entries a Bulk call handles when its ``limit`` is 0 (as the contract documents)."""


def _timestamp(value: datetime | Timestamp) -> Timestamp:
    """Return ``value`` as a Timestamp; a naive datetime is taken as UTC."""
    if isinstance(value, Timestamp):
        return value
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


class OrchestratorClient:
    """Typed async calls to ``WorkflowService`` and ``DeadLetterService``.

    Args:
        channel: An open ``grpc.aio`` channel to the orchestrator.
        timeout: The deadline of each call in seconds; ``None`` for none. A Bulk call gets
            :data:`BULK_SECONDS_PER_ENTRY` more per entry its ``limit`` allows.
        owns_channel: Close ``channel`` when the client is closed.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        owns_channel: bool = False,
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._owns_channel = owns_channel
        self._runs: WorkflowServiceAsyncStub = ws_grpc.WorkflowServiceStub(channel)
        self._dlq: DeadLetterServiceAsyncStub = dl_grpc.DeadLetterServiceStub(channel)

    def _bulk_timeout(self, limit: int) -> float | None:
        """The deadline of a Bulk call: the client's, plus :data:`BULK_SECONDS_PER_ENTRY` an entry."""
        if self._timeout is None:
            return None
        return self._timeout + (limit or SERVER_DEFAULT_BULK_LIMIT) * BULK_SECONDS_PER_ENTRY

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        tls: tls_module.TLSFiles | None = None,
        insecure: bool = False,
        server_name_override: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Self:
        """Open a channel to the orchestrator and return a client that closes it.

        Use it as ``async with OrchestratorClient.connect(...) as client:``, from a coroutine.

        Args:
            target: The orchestrator's gRPC target, e.g. ``"127.0.0.1:50051"``.
            tls: The client's CA, certificate and key (mutual TLS).
            insecure: Use plaintext instead; development only, and exclusive with ``tls``.
            server_name_override: Verify the server certificate against this name instead of the
                target's host.
            timeout: The deadline of each call in seconds; ``None`` for none. A Bulk call gets
            :data:`BULK_SECONDS_PER_ENTRY` more per entry its ``limit`` allows.

        Returns:
            The client; the channel connects lazily, on the first call.

        Raises:
            ValueError: If neither or both of ``tls`` and ``insecure`` are given, or the TLS
                material is invalid.
            OSError: If a TLS file cannot be read.
        """
        if insecure and tls is not None:
            raise ValueError("pass either tls files or insecure=True, not both")
        if insecure:
            _LOG.warning("INSECURE: plaintext channel to %s, no TLS (development only)", target)
            channel = grpc.aio.insecure_channel(target, options=tls_module.channel_options())
        elif tls is not None:
            channel = grpc.aio.secure_channel(
                target,
                tls_module.channel_credentials(tls),
                options=tls_module.channel_options(server_name_override),
            )
        else:
            raise ValueError("mutual TLS needs tls files; pass insecure=True for a plaintext channel")
        return cls(channel, timeout=timeout, owns_channel=True)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying channel."""
        return self._channel

    async def close(self) -> None:
        """Close the channel if the client opened it."""
        if self._owns_channel:
            await self._channel.close(None)

    async def __aenter__(self) -> Self:
        """Return the client itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the channel if the client opened it."""
        await self.close()

    # WorkflowService

    async def start_run(
        self,
        workflow: str,
        endpoint: str,
        *,
        payload: bytes = b"",
        headers: Mapping[str, str] | None = None,
        failure_hook: str = "",
        retry_policy: run_pb2.RetryPolicy | None = None,
        run_id: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> ws_pb.StartRunResponse:
        """Start a run (``StartRun``).

        Args:
            workflow: The workflow's name.
            endpoint: The gRPC target of the client's ``WorkflowEndpoint``.
            payload: The run's input.
            headers: Forwarded to every step call and to the failure hook.
            failure_hook: The gRPC target of the ``FailureHook``; empty means ``endpoint``.
            retry_policy: The step retry policy; ``None`` takes the server's default.
            run_id: A caller-chosen id that makes the call idempotent; empty lets the server
                choose one.
            labels: Labels to select the run by later (copied to restarted or resumed runs).

        Returns:
            The stored run and whether it already existed (``deduplicated``).
        """
        request = ws_pb.StartRunRequest(
            workflow=workflow,
            endpoint=endpoint,
            failure_hook=failure_hook,
            payload=payload,
            headers=dict(headers or {}),
            run_id=run_id,
            labels=dict(labels or {}),
        )
        if retry_policy is not None:
            request.retry_policy.CopyFrom(retry_policy)
        return await self._runs.StartRun(request, timeout=self._timeout)

    async def get_run(self, run_id: str) -> run_pb2.WorkflowRun:
        """Return a run with its steps and attempt history (``GetRun``).

        Args:
            run_id: The run's id.

        Returns:
            The run.
        """
        response = await self._runs.GetRun(ws_pb.GetRunRequest(run_id=run_id), timeout=self._timeout)
        return response.run

    async def list_runs(
        self,
        *,
        workflow: Iterable[str] = (),
        state: Iterable[run_pb2.RunState.ValueType] = (),
        created_after: datetime | Timestamp | None = None,
        created_before: datetime | Timestamp | None = None,
        page_size: int = 0,
        page_token: str = "",
        view: run_pb2.RunView.ValueType = run_pb2.RUN_VIEW_BASIC,
        labels: Mapping[str, str] | None = None,
    ) -> ws_pb.ListRunsResponse:
        """Return one page of runs, newest first (``ListRuns``).

        Args:
            workflow: Keep runs of any of these workflows; empty keeps all.
            state: Keep runs in any of these states; empty keeps all.
            created_after: Keep runs created at or after this time.
            created_before: Keep runs created before this time.
            page_size: The most runs to return; 0 takes the server's default.
            page_token: The previous page's ``next_page_token``; empty for the first page.
            view: ``RUN_VIEW_BASIC`` (no payload, headers, output or attempt history) or
                ``RUN_VIEW_FULL``; :meth:`get_run` returns everything.
            labels: Keep runs that carry every one of these labels.

        Returns:
            The page; its ``next_page_token`` is empty on the last page.
        """
        request = ws_pb.ListRunsRequest(
            workflow=list(workflow),
            state=list(state),
            page_size=page_size,
            page_token=page_token,
            view=view,
            labels=dict(labels or {}),
        )
        if created_after is not None:
            request.create_time_after.CopyFrom(_timestamp(created_after))
        if created_before is not None:
            request.create_time_before.CopyFrom(_timestamp(created_before))
        return await self._runs.ListRuns(request, timeout=self._timeout)

    async def iter_runs(
        self,
        *,
        workflow: Iterable[str] = (),
        state: Iterable[run_pb2.RunState.ValueType] = (),
        created_after: datetime | Timestamp | None = None,
        created_before: datetime | Timestamp | None = None,
        page_size: int = 0,
        view: run_pb2.RunView.ValueType = run_pb2.RUN_VIEW_BASIC,
        labels: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[run_pb2.WorkflowRun, None]:
        """Yield every run that matches, newest first, fetching page after page.

        Args:
            workflow: Keep runs of any of these workflows; empty keeps all.
            state: Keep runs in any of these states; empty keeps all.
            created_after: Keep runs created at or after this time.
            created_before: Keep runs created before this time.
            page_size: Runs per call; 0 takes the server's default.
            view: How much of each run to fetch (see :meth:`list_runs`).
            labels: Keep runs that carry every one of these labels.

        Yields:
            The runs (without their steps; :meth:`get_run` returns them).
        """
        workflows, states, token = list(workflow), list(state), ""
        while True:
            page = await self.list_runs(
                workflow=workflows,
                state=states,
                created_after=created_after,
                created_before=created_before,
                page_size=page_size,
                page_token=token,
                view=view,
                labels=labels,
            )
            for run in page.runs:
                yield run
            token = page.next_page_token
            if not token:
                return

    async def cancel_run(self, run_id: str) -> run_pb2.WorkflowRun:
        """Cancel a run (``CancelRun``).

        Args:
            run_id: The run's id.

        Returns:
            The run: canceled, or still running with ``cancel_requested`` set.
        """
        response = await self._runs.CancelRun(ws_pb.CancelRunRequest(run_id=run_id), timeout=self._timeout)
        return response.run

    # DeadLetterService

    async def list_dead_letters(
        self,
        filter: dl_pb.DeadLetterFilter | None = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        view: run_pb2.RunView.ValueType = run_pb2.RUN_VIEW_BASIC,
    ) -> dl_pb.ListDeadLettersResponse:
        """Return one page of dead letters, oldest first (``ListDeadLetters``).

        Args:
            filter: Selects the entries; ``None`` selects all.
            page_size: The most entries to return; 0 takes the server's default.
            page_token: The previous page's ``next_page_token``; empty for the first page.
            view: ``RUN_VIEW_BASIC`` (no payload, headers or attempt history) or ``RUN_VIEW_FULL``;
                :meth:`get_dead_letter` returns everything.

        Returns:
            The page; its ``next_page_token`` is empty on the last page.
        """
        request = dl_pb.ListDeadLettersRequest(page_size=page_size, page_token=page_token, view=view)
        if filter is not None:
            request.workflow.extend(filter.workflow)
            request.failed_step.extend(filter.failed_step)
            request.hook_state.extend(filter.hook_state)
            request.fail_status.extend(filter.fail_status)
            request.labels.update(filter.labels)
            if filter.HasField("dead_lettered_after"):
                request.dead_lettered_after.CopyFrom(filter.dead_lettered_after)
            if filter.HasField("dead_lettered_before"):
                request.dead_lettered_before.CopyFrom(filter.dead_lettered_before)
        return await self._dlq.ListDeadLetters(request, timeout=self._timeout)

    async def iter_dead_letters(
        self,
        filter: dl_pb.DeadLetterFilter | None = None,
        *,
        page_size: int = 0,
        view: run_pb2.RunView.ValueType = run_pb2.RUN_VIEW_BASIC,
    ) -> AsyncGenerator[dl_pb.DeadLetter, None]:
        """Yield every dead letter that matches, oldest first, fetching page after page.

        Args:
            filter: Selects the entries; ``None`` selects all.
            page_size: Entries per call; 0 takes the server's default.
            view: How much of each entry to fetch (see :meth:`list_dead_letters`).

        Yields:
            The entries (their runs without steps; :meth:`get_dead_letter` returns them).
        """
        token = ""
        while True:
            page = await self.list_dead_letters(filter, page_size=page_size, page_token=token, view=view)
            for entry in page.dead_letters:
                yield entry
            token = page.next_page_token
            if not token:
                return

    async def get_dead_letter(self, dead_letter_id: str) -> dl_pb.DeadLetter:
        """Return one dead letter with its run's steps (``GetDeadLetter``).

        Args:
            dead_letter_id: The entry's id.

        Returns:
            The entry.
        """
        request = dl_pb.GetDeadLetterRequest(dead_letter_id=dead_letter_id)
        return (await self._dlq.GetDeadLetter(request, timeout=self._timeout)).dead_letter

    async def restart_run(self, dead_letter_id: str, *, keep_steps: int = 0) -> run_pb2.WorkflowRun:
        """Run the entry's workflow again from the beginning, or after its first steps (``RestartRun``).

        Args:
            dead_letter_id: The entry's id; the entry is removed.
            keep_steps: How many completed steps the new run keeps (their results replayed);
                0 starts from scratch.

        Returns:
            The new run, linked to the failed one by ``parent_run_id``.
        """
        request = dl_pb.RestartRunRequest(dead_letter_id=dead_letter_id, keep_steps=keep_steps)
        return (await self._dlq.RestartRun(request, timeout=self._timeout)).run

    async def resume_run(
        self,
        dead_letter_id: str,
        *,
        payload: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        replace_headers: bool = False,
        retry_policy: run_pb2.RetryPolicy | None = None,
    ) -> run_pb2.WorkflowRun:
        """Continue the entry's run from the failed step (``ResumeRun``).

        Args:
            dead_letter_id: The entry's id; the entry is removed.
            payload: A new payload; ``None`` keeps the run's.
            headers: Headers merged over the run's (or replacing them, see ``replace_headers``).
            replace_headers: Make ``headers`` replace the run's headers.
            retry_policy: A new retry policy; ``None`` keeps the run's.

        Returns:
            The new run, with the failed run's completed steps.
        """
        request = dl_pb.ResumeRunRequest(
            dead_letter_id=dead_letter_id, headers=dict(headers or {}), replace_headers=replace_headers
        )
        if payload is not None:
            request.payload = payload
        if retry_policy is not None:
            request.retry_policy.CopyFrom(retry_policy)
        return (await self._dlq.ResumeRun(request, timeout=self._timeout)).run

    async def retry_failure_hook(self, dead_letter_id: str) -> dl_pb.DeadLetter:
        """Deliver the entry's failed hook again (``RetryFailureHook``).

        Args:
            dead_letter_id: The entry's id; its hook must be ``HOOK_STATE_FAILED``.

        Returns:
            The entry, its hook pending again.
        """
        request = dl_pb.RetryFailureHookRequest(dead_letter_id=dead_letter_id)
        return (await self._dlq.RetryFailureHook(request, timeout=self._timeout)).dead_letter

    async def delete_dead_letter(self, dead_letter_id: str, *, allow_missing: bool = False) -> bool:
        """Delete an entry for good (``DeleteDeadLetter``); its run stays.

        Args:
            dead_letter_id: The entry's id.
            allow_missing: Succeed when the entry does not exist instead of raising NOT_FOUND.

        Returns:
            Whether an entry was deleted.
        """
        request = dl_pb.DeleteDeadLetterRequest(dead_letter_id=dead_letter_id, allow_missing=allow_missing)
        return (await self._dlq.DeleteDeadLetter(request, timeout=self._timeout)).deleted

    async def bulk_restart(
        self, filter: dl_pb.DeadLetterFilter, *, all: bool = False, limit: int = 0
    ) -> dl_pb.BulkRestartRunsResponse:
        """Restart up to ``limit`` entries selected by ``filter``, oldest first (one call).

        Args:
            filter: Selects the entries.
            all: Confirm that an empty filter means every entry.
            limit: The most entries handled by this call; 0 takes the server's default (500).

        Returns:
            The new runs' ids and how many entries still match; call again while ``remaining``.
        """
        request = dl_pb.BulkRestartRunsRequest(filter=filter, all=all, limit=limit)
        return await self._dlq.BulkRestartRuns(request, timeout=self._bulk_timeout(limit))

    async def bulk_resume(
        self, filter: dl_pb.DeadLetterFilter, *, all: bool = False, limit: int = 0
    ) -> dl_pb.BulkResumeRunsResponse:
        """Resume up to ``limit`` entries selected by ``filter``, oldest first (one call).

        Args:
            filter: Selects the entries.
            all: Confirm that an empty filter means every entry.
            limit: The most entries handled by this call; 0 takes the server's default (500).

        Returns:
            The new runs' ids and how many entries still match; call again while ``remaining``.
        """
        request = dl_pb.BulkResumeRunsRequest(filter=filter, all=all, limit=limit)
        return await self._dlq.BulkResumeRuns(request, timeout=self._bulk_timeout(limit))

    async def bulk_delete(
        self, filter: dl_pb.DeadLetterFilter, *, all: bool = False, limit: int = 0
    ) -> dl_pb.BulkDeleteDeadLettersResponse:
        """Delete up to ``limit`` entries selected by ``filter``, oldest first (one call).

        Args:
            filter: Selects the entries.
            all: Confirm that an empty filter means every entry.
            limit: The most entries handled by this call; 0 takes the server's default (500).

        Returns:
            How many entries were deleted and how many still match; call again while
            ``remaining``.
        """
        request = dl_pb.BulkDeleteDeadLettersRequest(filter=filter, all=all, limit=limit)
        return await self._dlq.BulkDeleteDeadLetters(request, timeout=self._bulk_timeout(limit))

    async def start_bulk_operation(
        self,
        action: dl_pb.BulkAction.ValueType,
        filter: dl_pb.DeadLetterFilter,
        *,
        all: bool = False,
        rate: float = 0.0,
        validate_only: bool = False,
        resume_changes: dl_pb.BulkResumeChanges | None = None,
    ) -> dl_pb.StartBulkOperationResponse:
        """Start a paced, durable bulk job over the entries ``filter`` selects now.

        Args:
            action: What to do to each entry (``dl_pb.BULK_ACTION_RESTART``, ...).
            filter: Selects the entries (a snapshot is taken when the job starts).
            all: Confirm that an empty filter means every entry.
            rate: Entries per second; 0 takes the server's default (50).
            validate_only: Only count the matching entries (and show some ids); start nothing.
            resume_changes: The changes every resumed run gets (``BULK_ACTION_RESUME`` only).

        Returns:
            The started job (RUNNING), or with ``validate_only`` a preview and sample ids.
        """
        request = dl_pb.StartBulkOperationRequest(
            action=action, filter=filter, all=all, rate=rate, validate_only=validate_only
        )
        if resume_changes is not None:
            request.resume_changes.CopyFrom(resume_changes)
        return await self._dlq.StartBulkOperation(request, timeout=self._timeout)

    async def get_bulk_operation(self, operation_id: str) -> dl_pb.BulkOperation:
        """Return a bulk job with its progress.

        Args:
            operation_id: The job's id.

        Returns:
            The job.
        """
        request = dl_pb.GetBulkOperationRequest(operation_id=operation_id)
        return (await self._dlq.GetBulkOperation(request, timeout=self._timeout)).operation

    async def list_bulk_operations(
        self,
        *,
        states: Sequence[dl_pb.BulkOperationState.ValueType] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> dl_pb.ListBulkOperationsResponse:
        """List bulk jobs, newest first (one page).

        Args:
            states: Keep jobs in any of these states; empty keeps all.
            page_size: Jobs per page; 0 takes the server's default (50).
            page_token: The previous page's ``next_page_token``.

        Returns:
            One page of jobs.
        """
        request = dl_pb.ListBulkOperationsRequest(state=states, page_size=page_size, page_token=page_token)
        return await self._dlq.ListBulkOperations(request, timeout=self._timeout)

    async def cancel_bulk_operation(self, operation_id: str) -> dl_pb.BulkOperation:
        """Stop a running bulk job; no entry is started after this returns.

        Args:
            operation_id: The job's id.

        Returns:
            The job, CANCELED.
        """
        request = dl_pb.CancelBulkOperationRequest(operation_id=operation_id)
        return (await self._dlq.CancelBulkOperation(request, timeout=self._timeout)).operation
