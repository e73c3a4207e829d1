"""``failhook runs``: start, inspect, list and cancel workflow runs.

=========================================================  ==================================
``runs start WORKFLOW --endpoint T [flags]``               StartRun; prints the run
``runs get RUN_ID``                                        GetRun; the run with its steps
``runs list [--workflow W] [--state S] [--limit N] ...``   ListRuns, newest first, a table
``runs cancel RUN_ID``                                     CancelRun
=========================================================  ==================================

With ``--json`` a command prints the RPC's response message (``StartRunResponse``,
``GetRunResponse``, ``CancelRunResponse``) and ``runs list`` prints a JSON array of
``WorkflowRun`` objects, all in the proto3 JSON mapping with the proto's field names (bytes in
base64). Exit statuses: see :mod:`failhook.cli.exit_codes`.
"""

from __future__ import annotations

import argparse
import sys

from failhook.client import OrchestratorClient
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws_pb

from .arguments import (
    add_headers_argument,
    add_labels_argument,
    add_payload_arguments,
    add_retry_policy_arguments,
    headers_from,
    labels_from,
    leaf_parser,
    payload_from,
    retry_policy_from,
)
from .connection import connection_parent, run_with_client
from .exit_codes import EXIT_CODES_HELP
from .output import print_json, print_listing
from .parsing import RUN_STATE_CHOICES, parse_non_negative_int, parse_run_state, parse_time
from .views import run_detail, run_state_name, run_table

__all__ = ["add_parser", "cancel_command", "get_command", "list_command", "start_command"]

_MAX_PAGE = 1000


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``runs start|get|list|cancel`` to the ``failhook`` command line.

    Args:
        subparsers: The ``failhook`` parser's subcommands.
    """
    runs = subparsers.add_parser(
        "runs",
        help="start, inspect, list and cancel workflow runs",
        description="Start, inspect, list and cancel workflow runs (WorkflowService).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = runs.add_subparsers(title="actions", dest="runs_action", metavar="ACTION", required=True)
    parents = [connection_parent()]

    start = leaf_parser(
        actions,
        "start",
        help="start a run",
        description="Start a run of WORKFLOW at a WorkflowEndpoint. Needs the `submit` role.",
        parents=parents,
    )
    start.add_argument("workflow", metavar="WORKFLOW", help="the workflow's name")
    start.add_argument(
        "--endpoint", required=True, metavar="TARGET", help="gRPC target of the WorkflowEndpoint"
    )
    start.add_argument(
        "--failure-hook",
        default="",
        metavar="TARGET",
        help="gRPC target of the FailureHook (default: the endpoint)",
    )
    add_payload_arguments(start, "the run's input")
    add_headers_argument(start, "a header forwarded to every step and to the hook (repeatable)")
    add_labels_argument(start, "a label to select the run by later, e.g. tenant=acme (repeatable)")
    start.add_argument(
        "--run-id",
        default="",
        metavar="ID",
        help="your id for the run; starting it again returns the same run",
    )
    add_retry_policy_arguments(start)
    start.set_defaults(func=start_command)

    get = leaf_parser(
        actions,
        "get",
        help="show a run",
        description="Show a run with its steps, attempts and failure.",
        parents=parents,
    )
    get.add_argument("run_id", metavar="RUN_ID")
    get.set_defaults(func=get_command)

    listing = leaf_parser(
        actions,
        "list",
        help="list runs, newest first",
        description="List runs, newest first.",
        parents=parents,
    )
    listing.add_argument(
        "--workflow", action="append", default=[], metavar="NAME", help="keep runs of NAME (repeatable)"
    )
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        type=parse_run_state,
        metavar="STATE",
        help=f"keep runs in STATE (repeatable): {', '.join(RUN_STATE_CHOICES)}",
    )
    listing.add_argument(
        "--created-after",
        type=parse_time,
        metavar="TIME",
        help="created at or after TIME (ISO 8601, or an age: 2h)",
    )
    listing.add_argument(
        "--created-before",
        type=parse_time,
        metavar="TIME",
        help="created before TIME (ISO 8601, or an age: 2h)",
    )
    listing.add_argument(
        "--limit",
        type=parse_non_negative_int,
        default=100,
        metavar="N",
        help="show at most N runs; 0: all (default: 100)",
    )
    listing.add_argument(
        "--page-size",
        type=parse_non_negative_int,
        default=0,
        metavar="N",
        help="runs per call (default: fits --limit)",
    )
    add_labels_argument(listing, "keep runs that carry this label (repeatable: every one, ANDed)")
    listing.set_defaults(func=list_command)

    cancel = leaf_parser(
        actions,
        "cancel",
        help="cancel a run",
        description="Cancel a run: at once, or after its in-flight step. Needs the `submit` role.",
        parents=parents,
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.set_defaults(func=cancel_command)


def start_command(args: argparse.Namespace) -> int:
    """``runs start``: start a run and print it.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        response = await client.start_run(
            args.workflow,
            args.endpoint,
            payload=payload_from(args) or b"",
            headers=headers_from(args),
            failure_hook=args.failure_hook,
            retry_policy=retry_policy_from(args),
            run_id=args.run_id,
            labels=labels_from(args),
        )
        if response.deduplicated:
            print(
                f"note: run {response.run.run_id} already existed; it is returned unchanged", file=sys.stderr
            )
        if args.json:
            print_json(response)
        else:
            print(run_detail(response.run))
        return 0

    return run_with_client(args, action)


def get_command(args: argparse.Namespace) -> int:
    """``runs get``: print a run with its steps.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        run = await client.get_run(args.run_id)
        if args.json:
            print_json(ws_pb.GetRunResponse(run=run))
        else:
            print(run_detail(run))
        return 0

    return run_with_client(args, action)


def list_command(args: argparse.Namespace) -> int:
    """``runs list``: print the runs that match, newest first.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        limit: int = args.limit
        page_size: int = args.page_size or (min(limit + 1, _MAX_PAGE) if limit else _MAX_PAGE)
        pages = client.iter_runs(
            workflow=args.workflow,
            state=args.state,
            created_after=args.created_after,
            created_before=args.created_before,
            page_size=page_size,
            labels=labels_from(args),
        )
        await print_listing(pages, limit=limit, as_json=args.json, table=run_table, noun="runs")
        return 0

    return run_with_client(args, action)


def cancel_command(args: argparse.Namespace) -> int:
    """``runs cancel``: cancel a run.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        run = await client.cancel_run(args.run_id)
        if args.json:
            print_json(ws_pb.CancelRunResponse(run=run))
        elif run.state == run_pb2.RUN_STATE_CANCELED:
            print(f"run {run.run_id}: {run_state_name(run.state)}")
        else:
            print(f"run {run.run_id}: cancel requested; it stops after its in-flight step")
        return 0

    return run_with_client(args, action)
