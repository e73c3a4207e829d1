"""``failhook dlq``: query and act on the dead-letter queue.

=============================================================  =================================
``dlq list [filter flags] [--limit N]``                        ListDeadLetters, oldest first
``dlq show ID``                                                GetDeadLetter
``dlq restart ID [--keep-steps N]``                            RestartRun
``dlq restart --bulk (filter flags | --all) [--rate N]``       StartBulkOperation, followed
``dlq resume ID [--payload ...] [--header K=V] [policy]``      ResumeRun
``dlq resume --bulk (filter flags | --all) [changes]``         StartBulkOperation (RESUME)
``dlq retry-hook ID``                                          RetryFailureHook
``dlq retry-hook --bulk (filter flags | --all)``               StartBulkOperation (RETRY_HOOK)
``dlq delete ID [--allow-missing]``                            DeleteDeadLetter
``dlq delete --bulk (filter flags | --all)``                   StartBulkOperation (DELETE)
``dlq jobs list|show ID [--follow]|cancel ID``                 the bulk jobs
=============================================================  =================================

A ``--bulk`` action starts a durable bulk job in the orchestrator (a snapshot of the matching
entries, worked through at ``--rate`` entries per second, 50 by default) and follows it with a
progress bar on stderr; Ctrl-C stops the following, not the job, and prints how to follow or
cancel it. ``--dry-run`` shows how many entries match (and some of their ids) and starts nothing.
``--batched`` (or ``--batch-size N``) uses the older synchronous Bulk RPCs instead, described below.

Filter flags: ``--workflow``, ``--failed-step``, ``--hook-state``, ``--fail-status`` (each
repeatable), ``--after`` and ``--before``. Bulk actions ask no question: ``--bulk`` plus a filter
(or ``--all`` for every entry) is the confirmation. Batched, they call the Bulk RPC while entries remain,
``--batch-size`` (alias ``--limit``) entries per call, print progress such as
``restarted 500/1234`` on stderr, and act on at most as many entries as matched after their
first call, so runs that fail again into the same filter are not looped over forever.

With ``--json`` a command prints the RPC's response message, ``dlq list`` a JSON array of
``DeadLetter`` objects, and a bulk action one response message summing all its calls. Exit
statuses: see :mod:`failhook.cli.exit_codes`.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from failhook.client import OrchestratorClient
from failhook.v1 import dead_letter_service_pb2 as dl_pb

from .arguments import (
    add_dead_letter_filter_arguments,
    add_headers_argument,
    add_payload_arguments,
    add_retry_policy_arguments,
    dead_letter_filter_from,
    filter_is_empty,
    headers_from,
    leaf_parser,
    payload_from,
    retry_policy_from,
)
from .bulk import BatchResult, BulkOutcome, run_bulk
from .connection import UsageError, connection_parent, run_with_client
from .exit_codes import EXIT_CODES_HELP
from .jobs import add_jobs_parser, parse_rate, start_and_follow
from .output import print_json, print_listing
from .parsing import parse_non_negative_int
from .views import dead_letter_detail, dead_letter_table, hook_state_name

__all__ = [
    "add_parser",
    "delete_command",
    "list_command",
    "restart_command",
    "resume_command",
    "retry_hook_command",
    "show_command",
]

_MAX_PAGE = 1000
_MAX_BATCH = 5000


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dlq list|show|restart|resume|retry-hook|delete`` to the ``failhook`` command line.

    Args:
        subparsers: The ``failhook`` parser's subcommands.
    """
    dlq = subparsers.add_parser(
        "dlq",
        help="query and act on the dead-letter queue",
        description=textwrap.fill(
            "Query and act on the dead-letter queue (DeadLetterService). Listing and showing need the "
            "`read` role, everything else `operate`.",
            100,
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(title="actions", dest="dlq_action", metavar="ACTION", required=True)
    parents = [connection_parent()]

    listing = leaf_parser(
        actions,
        "list",
        help="list dead letters, oldest first",
        description="List dead letters, oldest first.",
        parents=parents,
    )
    add_dead_letter_filter_arguments(listing)
    listing.add_argument(
        "--limit",
        type=parse_non_negative_int,
        default=100,
        metavar="N",
        help="show at most N entries; 0: all (default: 100)",
    )
    listing.add_argument(
        "--page-size",
        type=parse_non_negative_int,
        default=0,
        metavar="N",
        help="entries per call (default: fits --limit)",
    )
    listing.set_defaults(func=list_command)

    show = leaf_parser(
        actions,
        "show",
        help="show a dead letter",
        description="Show a dead letter: the failure, every attempt, the hook's outcome and the run.",
        parents=parents,
    )
    show.add_argument("dead_letter_id", metavar="ID")
    show.set_defaults(func=show_command)

    restart = _acting_parser(
        actions,
        "restart",
        help="run failed workflows again from the beginning",
        description="Start the entry's workflow again from the beginning as a new linked run, and "
        "remove the entry. With --bulk, every entry the filter selects.",
        parents=parents,
    )
    restart.add_argument(
        "--keep-steps",
        type=parse_non_negative_int,
        default=0,
        metavar="N",
        help="keep the run's first N completed steps (their results replayed); 0: from scratch",
    )
    restart.set_defaults(func=restart_command)

    resume = _acting_parser(
        actions,
        "resume",
        help="continue failed runs from the failed step",
        description="Continue the entry's run from the step that failed, as a new linked run that keeps "
        "the completed steps, optionally with a new payload, headers or retry policy; remove the "
        "entry. With --bulk, every entry the filter selects, unchanged.",
        parents=parents,
    )
    add_payload_arguments(resume, "a new payload for the resumed run")
    add_headers_argument(resume, "a header merged over the run's headers (repeatable)")
    resume.add_argument(
        "--replace-headers", action="store_true", help="replace the run's headers with the --header flags"
    )
    add_retry_policy_arguments(resume)
    resume.set_defaults(func=resume_command)

    retry_hook = _acting_parser(
        actions,
        "retry-hook",
        help="deliver a failed failure hook again",
        description="Deliver the entry's failure hook again, in the background, with the same idempotency "
        "key. Only a hook in state FAILED can be retried (otherwise exit status 4). With --bulk, every "
        "entry the filter selects (as a job).",
        parents=parents,
    )
    retry_hook.set_defaults(func=retry_hook_command)

    delete = _acting_parser(
        actions,
        "delete",
        help="delete dead letters for good",
        description="Delete the entry for good; its run stays, DEAD_LETTERED. With --bulk, every entry "
        "the filter selects.",
        parents=parents,
    )
    delete.add_argument(
        "--allow-missing", action="store_true", help="succeed when the entry does not exist (single entry)"
    )
    delete.set_defaults(func=delete_command)

    add_jobs_parser(actions, parents)


def _acting_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    parents: list[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """A command acting on one entry by id, or on many with ``--bulk`` and a filter."""
    parser = leaf_parser(actions, name, help=help, description=description, parents=parents)
    parser.add_argument("dead_letter_id", nargs="?", metavar="ID", help="the entry (omit with --bulk)")
    bulk = parser.add_argument_group("bulk")
    bulk.add_argument("--bulk", action="store_true", help="act on every entry the filter flags select")
    bulk.add_argument("--all", action="store_true", help="with --bulk and no filter flag: every entry")
    bulk.add_argument(
        "--rate",
        type=parse_rate,
        default=None,
        metavar="N",
        help="entries per second of the bulk job (default: the server's, 50)",
    )
    bulk.add_argument("--dry-run", action="store_true", help="show how many entries match and start nothing")
    bulk.add_argument(
        "--batched",
        action="store_true",
        help="use the synchronous Bulk RPCs, batch by batch, instead of a job (superseded)",
    )
    bulk.add_argument(
        "--batch-size",
        "--limit",
        dest="batch_size",
        type=parse_non_negative_int,
        default=None,
        metavar="N",
        help=f"with --batched (implied): entries per Bulk call, at most {_MAX_BATCH} (default: 500)",
    )
    add_dead_letter_filter_arguments(parser)
    return parser


def _bulk_filter(
    args: argparse.Namespace, single_only: tuple[str, ...] = (), not_batched: tuple[str, ...] = ()
) -> dl_pb.DeadLetterFilter | None:
    """Return the bulk filter, or ``None`` to act on the one entry; check the flags agree.

    ``single_only`` flags are refused with ``--bulk``; ``not_batched`` ones only with ``--batched``.
    """
    selected = dead_letter_filter_from(args)
    job_flags = [
        flag for flag, given in (("--rate", args.rate is not None), ("--dry-run", args.dry_run)) if given
    ]
    if args.dead_letter_id is not None:
        if args.bulk or args.all or not filter_is_empty(selected) or _batched(args):
            raise UsageError("give either an ID, or --bulk with filter flags or --all, not both")
        if job_flags:
            raise UsageError(f"{', '.join(job_flags)} only applies with --bulk")
        return None
    if not args.bulk:
        raise UsageError("give the ID of a dead letter, or --bulk with filter flags or --all")
    if filter_is_empty(selected) and not args.all:
        raise UsageError("--bulk needs filter flags, or --all to act on every dead letter")
    if (args.batch_size or 0) > _MAX_BATCH:
        raise UsageError(f"--batch-size must be at most {_MAX_BATCH}")
    if single_only:
        raise UsageError(f"{', '.join(single_only)} cannot be used with --bulk")
    if _batched(args):
        if job_flags:
            raise UsageError(f"{', '.join(job_flags)} applies to bulk jobs, not to --batched")
        if not_batched:
            raise UsageError(f"{', '.join(not_batched)} cannot be used with --bulk --batched")
    return selected


def _batched(args: argparse.Namespace) -> bool:
    """Whether a bulk action uses the older synchronous Bulk RPCs (``--batched``, or
    ``--batch-size`` given, even 0 for the server's batch)."""
    return bool(args.batched or args.batch_size is not None)


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def _report_bulk(args: argparse.Namespace, outcome: BulkOutcome, verb: str, response: Message) -> None:
    if args.json:
        print_json(response)
    elif outcome.handled == 0 and outcome.remaining == 0:
        print("No dead letters match.")
    else:
        print(f"{verb} {outcome.handled} dead letter{'' if outcome.handled == 1 else 's'}")
    if outcome.remaining:
        print(
            f"note: the filter still selects {_entries(outcome.remaining)}: they entered the queue "
            "while the action ran (e.g. runs that failed again); run it again to act on them",
            file=sys.stderr,
        )


def list_command(args: argparse.Namespace) -> int:
    """``dlq list``: print the entries that match, oldest first.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        limit: int = args.limit
        page_size: int = args.page_size or (min(limit + 1, _MAX_PAGE) if limit else _MAX_PAGE)
        pages = client.iter_dead_letters(dead_letter_filter_from(args), page_size=page_size)
        await print_listing(
            pages, limit=limit, as_json=args.json, table=dead_letter_table, noun="dead letters"
        )
        return 0

    return run_with_client(args, action)


def show_command(args: argparse.Namespace) -> int:
    """``dlq show``: print one entry in detail.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        entry = await client.get_dead_letter(args.dead_letter_id)
        if args.json:
            print_json(dl_pb.GetDeadLetterResponse(dead_letter=entry))
        else:
            print(dead_letter_detail(entry))
        return 0

    return run_with_client(args, action)


_BulkRuns = Callable[
    [dl_pb.DeadLetterFilter, bool, int],
    Awaitable[dl_pb.BulkRestartRunsResponse | dl_pb.BulkResumeRunsResponse],
]


async def _bulk_runs(
    args: argparse.Namespace, selected: dl_pb.DeadLetterFilter, call: _BulkRuns, verb: str
) -> BulkOutcome:
    async def one_batch(limit: int) -> BatchResult:
        response = await call(selected, args.all, limit)
        return BatchResult(len(response.run_ids), response.remaining, list(response.run_ids))

    return await run_bulk(one_batch, verb=verb, batch_size=args.batch_size or 0)


def restart_command(args: argparse.Namespace) -> int:
    """``dlq restart``: restart one entry, or every entry a filter selects.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        selected = _bulk_filter(args, ("--keep-steps",) if args.keep_steps else ())
        if selected is None:
            run = await client.restart_run(args.dead_letter_id, keep_steps=args.keep_steps)
            if args.json:
                print_json(dl_pb.RestartRunResponse(run=run))
            else:
                print(f"restarted dead letter {args.dead_letter_id} as run {run.run_id}")
            return 0

        if not _batched(args):
            return await start_and_follow(args, client, dl_pb.BULK_ACTION_RESTART, selected)

        async def call(f: dl_pb.DeadLetterFilter, all_: bool, limit: int) -> dl_pb.BulkRestartRunsResponse:
            return await client.bulk_restart(f, all=all_, limit=limit)

        outcome = await _bulk_runs(args, selected, call, "restarted")
        summary = dl_pb.BulkRestartRunsResponse(run_ids=outcome.run_ids, remaining=outcome.remaining)
        _report_bulk(args, outcome, "restarted", summary)
        return 0

    return run_with_client(args, action)


def resume_command(args: argparse.Namespace) -> int:
    """``dlq resume``: resume one entry (optionally changed), or every entry a filter selects.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        changes = [
            flag
            for flag, given in (
                ("--payload", args.payload is not None or args.payload_file is not None),
                ("--header", bool(args.headers)),
                ("--replace-headers", args.replace_headers),
                ("retry-policy flags", retry_policy_from(args) is not None),
            )
            if given
        ]
        selected = _bulk_filter(args, not_batched=tuple(changes))
        if selected is None:
            run = await client.resume_run(
                args.dead_letter_id,
                payload=payload_from(args),
                headers=headers_from(args),
                replace_headers=args.replace_headers,
                retry_policy=retry_policy_from(args),
            )
            if args.json:
                print_json(dl_pb.ResumeRunResponse(run=run))
            else:
                print(f"resumed dead letter {args.dead_letter_id} as run {run.run_id}")
            return 0

        if not _batched(args):
            return await start_and_follow(args, client, dl_pb.BULK_ACTION_RESUME, selected, _changes(args))

        async def call(f: dl_pb.DeadLetterFilter, all_: bool, limit: int) -> dl_pb.BulkResumeRunsResponse:
            return await client.bulk_resume(f, all=all_, limit=limit)

        outcome = await _bulk_runs(args, selected, call, "resumed")
        summary = dl_pb.BulkResumeRunsResponse(run_ids=outcome.run_ids, remaining=outcome.remaining)
        _report_bulk(args, outcome, "resumed", summary)
        return 0

    return run_with_client(args, action)


def _changes(args: argparse.Namespace) -> dl_pb.BulkResumeChanges:
    """The resume flags as the changes a bulk resume job applies to every run."""
    changes = dl_pb.BulkResumeChanges(headers=headers_from(args), replace_headers=args.replace_headers)
    payload = payload_from(args)
    if payload is not None:
        changes.payload = payload
    policy = retry_policy_from(args)
    if policy is not None:
        changes.retry_policy.CopyFrom(policy)
    return changes


def retry_hook_command(args: argparse.Namespace) -> int:
    """``dlq retry-hook``: deliver an entry's failed hook again.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        selected = _bulk_filter(args)
        if selected is not None:
            if _batched(args):
                raise UsageError("retry-hook --bulk runs as a job: --batched and --batch-size do not apply")
            return await start_and_follow(args, client, dl_pb.BULK_ACTION_RETRY_HOOK, selected)
        entry = await client.retry_failure_hook(args.dead_letter_id)
        if args.json:
            print_json(dl_pb.RetryFailureHookResponse(dead_letter=entry))
        else:
            state = hook_state_name(entry.hook.state)
            print(f"dead letter {entry.dead_letter_id}: failure hook {state}, redelivery in the background")
        return 0

    return run_with_client(args, action)


def delete_command(args: argparse.Namespace) -> int:
    """``dlq delete``: delete one entry, or every entry a filter selects.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        selected = _bulk_filter(args, ("--allow-missing",) if args.allow_missing else ())
        if selected is None:
            deleted = await client.delete_dead_letter(args.dead_letter_id, allow_missing=args.allow_missing)
            if args.json:
                print_json(dl_pb.DeleteDeadLetterResponse(deleted=deleted))
            elif deleted:
                print(f"deleted dead letter {args.dead_letter_id}")
            else:
                print(f"dead letter {args.dead_letter_id} did not exist")
            return 0

        if not _batched(args):
            return await start_and_follow(args, client, dl_pb.BULK_ACTION_DELETE, selected)

        async def one_batch(limit: int) -> BatchResult:
            response = await client.bulk_delete(selected, all=args.all, limit=limit)
            return BatchResult(int(response.deleted_count), int(response.remaining))

        outcome = await run_bulk(one_batch, verb="deleted", batch_size=args.batch_size or 0)
        summary = dl_pb.BulkDeleteDeadLettersResponse(
            deleted_count=outcome.handled, remaining=outcome.remaining
        )
        _report_bulk(args, outcome, "deleted", summary)
        return 0

    return run_with_client(args, action)
