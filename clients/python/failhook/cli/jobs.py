"""Bulk jobs from the command line: start one, follow it with a progress bar, list, show, cancel.

``failhook dlq restart|resume|retry-hook|delete --bulk …`` calls :func:`start_and_follow`: it
starts a job (``StartBulkOperation``) and follows it, redrawing a progress bar on stderr (one line
per change when stderr is not a terminal). Ctrl-C stops the following, never the job: the job
runs on in the orchestrator, and the command says how to follow it again or cancel it.
``--dry-run`` asks the server what the job would act on (``validate_only``) and starts nothing.

``failhook dlq jobs list|show|cancel`` reads and cancels jobs (``show --follow`` follows one).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import IO

from failhook.client import OrchestratorClient
from failhook.v1 import dead_letter_service_pb2 as dl_pb

from .arguments import leaf_parser
from .connection import run_with_client
from .exit_codes import ExitCode
from .output import clean, print_json, render_table
from .parsing import parse_positive_rate

__all__ = ["POLL_SECONDS", "add_jobs_parser", "follow", "parse_rate", "progress_bar", "start_and_follow"]

#: How often a followed job is read again.
POLL_SECONDS = 0.5
_BAR = 30
_ENDED = (
    dl_pb.BULK_OPERATION_STATE_SUCCEEDED,
    dl_pb.BULK_OPERATION_STATE_FAILED,
    dl_pb.BULK_OPERATION_STATE_CANCELED,
)
_STATE_CHOICES = ("running", "succeeded", "failed", "canceled")


def parse_rate(text: str) -> float:
    """Parse ``--rate``: entries per second, more than 0."""
    return parse_positive_rate(text, "entries")


def _state(op: dl_pb.BulkOperation) -> str:
    return dl_pb.BulkOperationState.Name(op.state).removeprefix("BULK_OPERATION_STATE_")


def _action(op: dl_pb.BulkOperation) -> str:
    return dl_pb.BulkAction.Name(op.action).removeprefix("BULK_ACTION_").lower().replace("_", "-")


def progress_bar(op: dl_pb.BulkOperation) -> str:
    """One line of progress: ``[#####-----]  50/100  50%  2 failed  RUNNING``."""
    handled = op.done + op.failed
    fraction = handled / op.total if op.total else 1.0
    filled = round(fraction * _BAR)
    return (
        f"[{'#' * filled}{'-' * (_BAR - filled)}] {handled}/{op.total} {fraction:4.0%}"
        f"  {op.failed} failed  {_state(op)}"
    )


def _how_to(operation_id: str) -> str:
    return (
        f"the job goes on in the orchestrator. Follow it: failhook dlq jobs show {operation_id} --follow; "
        f"cancel it: failhook dlq jobs cancel {operation_id}"
    )


async def follow(
    client: OrchestratorClient, operation_id: str, out: IO[str] | None = None
) -> dl_pb.BulkOperation:
    """Read the job every :data:`POLL_SECONDS` and draw its progress until it ends.

    On Ctrl-C (or cancellation) the job is left running and the way to follow or cancel it is
    printed before the interruption goes on.
    """
    stream = out or sys.stderr
    live = stream.isatty()
    last = ""
    try:
        while True:
            op = await client.get_bulk_operation(operation_id)
            line = progress_bar(op)
            if line != last:
                print(f"\r{line}" if live else line, end="" if live else "\n", file=stream, flush=True)
                last = line
            if op.state in _ENDED:
                if live:
                    print(file=stream)
                return op
            await asyncio.sleep(POLL_SECONDS)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\nstopped following bulk operation {operation_id}: {_how_to(operation_id)}", file=stream)
        raise


def _report(op: dl_pb.BulkOperation) -> str:
    text = f"bulk operation {op.operation_id} {_state(op)}: {op.done} done, {op.failed} failed of {op.total}"
    for error in op.errors:
        text += f"\n  {error.dead_letter_id}: {clean(error.message, 200)}"
    return text


def _exit_for(op: dl_pb.BulkOperation) -> int:
    """0 when every entry was acted on; 1 when some failed or the job was canceled."""
    return int(ExitCode.OK if op.state == dl_pb.BULK_OPERATION_STATE_SUCCEEDED else ExitCode.ERROR)


async def start_and_follow(
    args: argparse.Namespace,
    client: OrchestratorClient,
    action: dl_pb.BulkAction.ValueType,
    selected: dl_pb.DeadLetterFilter,
    resume_changes: dl_pb.BulkResumeChanges | None = None,
) -> int:
    """Start a bulk job (or, with ``--dry-run``, only count what it would act on) and follow it."""
    started = await client.start_bulk_operation(
        action,
        selected,
        all=args.all,
        rate=args.rate or 0.0,
        validate_only=args.dry_run,
        resume_changes=resume_changes,
    )
    op = started.operation
    if args.dry_run:
        if args.json:
            print_json(started)
        else:
            print(f"dry run: {op.total} dead letters match; at {op.rate:g}/s the job would take ~{_eta(op)}")
            for dead_letter_id in started.sample_dead_letter_ids:
                print(f"  {dead_letter_id}")
            if op.total > len(started.sample_dead_letter_ids):
                print(f"  … and {op.total - len(started.sample_dead_letter_ids)} more")
        return 0
    print(
        f"started bulk operation {op.operation_id}: {_action(op)} {op.total} dead letters at {op.rate:g}/s",
        file=sys.stderr,
    )
    final = await follow(client, op.operation_id)
    if args.json:
        print_json(dl_pb.GetBulkOperationResponse(operation=final))
    else:
        print(_report(final))
    return _exit_for(final)


def _eta(op: dl_pb.BulkOperation) -> str:
    seconds = op.total / op.rate if op.rate else 0
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}min"


def add_jobs_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    """Add ``dlq jobs list|show|cancel``."""
    jobs = actions.add_parser(
        "jobs", help="list, show and cancel bulk jobs", description="Bulk jobs (StartBulkOperation)."
    )
    verbs = jobs.add_subparsers(title="actions", dest="jobs_action", metavar="ACTION", required=True)
    listing = leaf_parser(
        verbs,
        "list",
        help="list bulk jobs, newest first",
        description="List bulk jobs, newest first.",
        parents=parents,
    )
    listing.add_argument(
        "--state",
        action="append",
        choices=_STATE_CHOICES,
        default=[],
        help="keep jobs in this state (repeatable)",
    )
    listing.set_defaults(func=_list_command)
    show = leaf_parser(
        verbs,
        "show",
        help="show a bulk job's progress",
        description="Show a bulk job's progress and first errors.",
        parents=parents,
    )
    show.add_argument("operation_id", metavar="ID")
    show.add_argument("--follow", action="store_true", help="follow it with a progress bar until it ends")
    show.set_defaults(func=_show_command)
    cancel = leaf_parser(
        verbs,
        "cancel",
        help="cancel a running bulk job",
        description="Cancel a running bulk job: no entry is started after it returns.",
        parents=parents,
    )
    cancel.add_argument("operation_id", metavar="ID")
    cancel.set_defaults(func=_cancel_command)


def _list_command(args: argparse.Namespace) -> int:
    async def action(client: OrchestratorClient) -> int:
        states = [dl_pb.BulkOperationState.Value(f"BULK_OPERATION_STATE_{s.upper()}") for s in args.state]
        page = await client.list_bulk_operations(states=states)
        if args.json:
            print_json(page)
            return 0
        rows = [
            [
                op.operation_id,
                _action(op),
                _state(op),
                f"{op.done + op.failed}/{op.total}",
                str(op.failed),
                f"{op.rate:g}/s",
                op.created_by,
            ]
            for op in page.operations
        ]
        if rows:
            print(render_table(["ID", "ACTION", "STATE", "PROGRESS", "FAILED", "RATE", "BY"], rows))
        else:
            print("No bulk jobs.")
        return 0

    return run_with_client(args, action)


def _show_command(args: argparse.Namespace) -> int:
    async def action(client: OrchestratorClient) -> int:
        op = await (
            follow(client, args.operation_id) if args.follow else client.get_bulk_operation(args.operation_id)
        )
        if args.json:
            print_json(dl_pb.GetBulkOperationResponse(operation=op))
        else:
            print(_report(op) if args.follow else f"{_report(op)}\n{progress_bar(op)}")
        return 0

    return run_with_client(args, action)


def _cancel_command(args: argparse.Namespace) -> int:
    async def action(client: OrchestratorClient) -> int:
        op = await client.cancel_bulk_operation(args.operation_id)
        if args.json:
            print_json(dl_pb.CancelBulkOperationResponse(operation=op))
        else:
            print(
                f"canceled bulk operation {op.operation_id} after {op.done + op.failed} of {op.total} entries"
            )
        return 0

    return run_with_client(args, action)
