"""``failhook targets``: the circuit breakers of the targets runs call; pause and resume them.

=======================================================================  ========================
``targets list [--state S] [--paused] [--limit N]``                      ListTargets, a table
``targets show TARGET``                                                  GetTarget
``targets pause TARGET --reason TEXT [--for DURATION | --until TIME]``   PauseTarget
``targets resume TARGET [--rate RUNS_PER_SECOND]``                       ResumeTarget
=======================================================================  ========================

Listing needs the ``read`` role, pausing and resuming ``operate``. With ``--json`` a command prints
the RPC's response message and ``targets list`` a JSON array of ``Target`` objects (proto3 JSON
mapping, proto field names). Exit statuses: see :mod:`failhook.cli.exit_codes`.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncGenerator, Iterable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from failhook.client import OrchestratorClient
from failhook.v1 import target_service_pb2 as pb
from failhook.v1 import target_service_pb2_grpc as pb_grpc

from .arguments import leaf_parser
from .connection import UsageError, connection_parent, run_with_client
from .exit_codes import EXIT_CODES_HELP
from .output import (
    EMPTY,
    clean,
    format_duration,
    format_time,
    print_json,
    print_listing,
    render_fields,
    render_table,
)
from .parsing import (
    _enum_name,
    parse_non_negative_int,
    parse_positive_duration,
    parse_positive_rate,
    parse_time,
)

__all__ = [
    "BREAKER_STATE_CHOICES",
    "add_parser",
    "breaker_state_name",
    "list_command",
    "parse_breaker_state",
    "pause_command",
    "resume_command",
    "show_command",
    "target_detail",
    "target_table",
]

_MAX_PAGE = 1000
# The positional TARGET is stored as ``target_name``: ``args.target`` is the orchestrator's address.
_ERROR_WIDTH = 50

BREAKER_STATE_CHOICES: tuple[str, ...] = tuple(
    name.removeprefix("BREAKER_STATE_").lower().replace("_", "-")
    for name in pb.BreakerState.keys()  # noqa: SIM118 - an enum wrapper, not a dict
    if not name.endswith("_UNSPECIFIED")
)
"""The breaker states ``targets list --state`` accepts."""


def parse_breaker_state(text: str) -> pb.BreakerState.ValueType:
    """Parse a breaker state: ``open``, ``half-open``, ``BREAKER_STATE_CLOSED``, ...

    Args:
        text: The state, in any case, with or without the ``BREAKER_STATE_`` prefix.

    Returns:
        The state's value.

    Raises:
        argparse.ArgumentTypeError: If ``text`` names no state.
    """
    name = _enum_name(text, "BREAKER_STATE_")
    if name == "BREAKER_STATE_UNSPECIFIED" or name not in pb.BreakerState.keys():  # noqa: SIM118
        raise argparse.ArgumentTypeError(
            f"invalid breaker state {text!r} (choose from {', '.join(BREAKER_STATE_CHOICES)})"
        )
    return pb.BreakerState.Value(name)


def parse_release_rate(text: str) -> float:
    """Parse a release rate in runs per second (more than 0).

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not a positive number.
    """
    return parse_positive_rate(text, "runs")


def breaker_state_name(state: pb.BreakerState.ValueType) -> str:
    """Return a breaker state without its prefix, e.g. ``HALF_OPEN``."""
    return pb.BreakerState.Name(state).removeprefix("BREAKER_STATE_")


def _state_cell(target: pb.Target) -> str:
    state = breaker_state_name(target.state)
    if not target.breaker_enabled:
        state += " (breaker off)"
    return state + (" (paused)" if target.HasField("pause") else "")


def _pause_text(target: pb.Target) -> str:
    if not target.HasField("pause"):
        return EMPTY
    pause = target.pause
    source = pb.PauseSource.Name(pause.source).removeprefix("PAUSE_SOURCE_").lower()
    until = f" until {format_time(pause.until)}" if pause.HasField("until") else " until resumed"
    return f"by {pause.paused_by} ({source}){until}: {clean(pause.reason)}"


def target_table(targets: Iterable[pb.Target]) -> str:
    """Render targets as a table: target, state, failures, failing runs, parked, in flight, error.

    Args:
        targets: The targets.

    Returns:
        The table.
    """
    rows = [
        (
            t.target,
            _state_cell(t),
            str(t.consecutive_failures),
            str(t.failing_runs),
            str(t.parked_runs),
            str(t.in_flight_calls),
            format_time(t.next_probe_time),
            clean(t.last_error, _ERROR_WIDTH),
        )
        for t in targets
    ]
    headers = ("TARGET", "STATE", "FAILURES", "RUNS", "PARKED", "IN-FLIGHT", "NEXT-PROBE", "LAST ERROR")
    return render_table(headers, rows)


def target_detail(t: pb.Target) -> str:
    """Render one target with every field.

    Args:
        t: The target.

    Returns:
        The lines.
    """
    return render_fields(
        [
            ("target", t.target),
            ("state", _state_cell(t)),
            ("consecutive failures", str(t.consecutive_failures)),
            ("failing runs", str(t.failing_runs)),
            ("last error", clean(t.last_error)),
            ("last error time", format_time(t.last_error_time)),
            ("last success time", format_time(t.last_success_time)),
            ("opened at", format_time(t.open_time)),
            ("next probe", format_time(t.next_probe_time)),
            ("cooldown", format_duration(t.cooldown)),
            ("trips", str(t.trips)),
            ("parked runs", str(t.parked_runs)),
            ("in-flight calls", str(t.in_flight_calls)),
            ("paused", _pause_text(t)),
            ("release rate", f"{t.release_rate:g} runs/s" if t.release_rate else EMPTY),
            ("last seen", format_time(t.last_seen_time)),
        ]
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``targets list|show|pause|resume`` to the ``failhook`` command line.

    Args:
        subparsers: The ``failhook`` parser's subcommands.
    """
    targets = subparsers.add_parser(
        "targets",
        help="see the targets' circuit breakers; pause and resume targets",
        description="See the circuit breakers of the targets runs call; pause and resume them "
        "(TargetService).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = targets.add_subparsers(title="actions", dest="targets_action", metavar="ACTION", required=True)
    parents = [connection_parent()]

    listing = leaf_parser(
        actions,
        "list",
        help="list the targets called recently",
        description="List the targets called recently with their breaker state, failures and parked runs.",
        parents=parents,
    )
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        type=parse_breaker_state,
        metavar="STATE",
        help=f"keep targets whose breaker is STATE (repeatable): {', '.join(BREAKER_STATE_CHOICES)}",
    )
    listing.add_argument("--paused", action="store_true", help="keep only the paused targets")
    listing.add_argument(
        "--limit",
        type=parse_non_negative_int,
        default=100,
        metavar="N",
        help="show at most N targets; 0: all (default: 100)",
    )
    listing.set_defaults(func=list_command)

    show = leaf_parser(
        actions, "show", help="show a target", description="Show a target and its breaker.", parents=parents
    )
    show.add_argument("target_name", metavar="TARGET", help="the gRPC target, e.g. pay.internal:50052")
    show.set_defaults(func=show_command)

    pause = leaf_parser(
        actions,
        "pause",
        help="park every call bound for a target",
        description="Park every step call and hook delivery bound for TARGET, until a time or "
        "`targets resume`. Needs the `operate` role.",
        parents=parents,
    )
    pause.add_argument("target_name", metavar="TARGET", help="the gRPC target")
    pause.add_argument("--reason", required=True, metavar="TEXT", help="why (shown to operators, audited)")
    ends = pause.add_mutually_exclusive_group()
    ends.add_argument(
        "--for",
        dest="for_",
        type=parse_positive_duration,
        metavar="DURATION",
        help="end the pause after DURATION, e.g. 30m",
    )
    ends.add_argument(
        "--until", type=parse_time, metavar="TIME", help="end the pause at TIME (ISO 8601, UTC by default)"
    )
    pause.set_defaults(func=pause_command)

    resume = leaf_parser(
        actions,
        "resume",
        help="lift a pause, close the breaker, release the parked runs",
        description="Lift any pause on TARGET, close its breaker and release its parked runs, oldest "
        "first: at a slow start (10 runs/s doubling each second by default) or at --rate. Needs "
        "the `operate` role.",
        parents=parents,
    )
    resume.add_argument("target_name", metavar="TARGET", help="the gRPC target")
    resume.add_argument(
        "--rate",
        type=parse_release_rate,
        metavar="RUNS_PER_SECOND",
        help="release at this constant rate instead of the slow start",
    )
    resume.set_defaults(func=resume_command)


def _stub(client: OrchestratorClient) -> pb_grpc.TargetServiceAsyncStub:
    stub: pb_grpc.TargetServiceAsyncStub = pb_grpc.TargetServiceStub(client.channel)
    return stub


def list_command(args: argparse.Namespace) -> int:
    """``targets list``: print the targets, sorted by target.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """
    timeout = args.timeout.total_seconds()

    async def pages(client: OrchestratorClient) -> AsyncGenerator[pb.Target, None]:
        token = ""
        size = min(args.limit + 1, _MAX_PAGE) if args.limit else _MAX_PAGE
        while True:
            request = pb.ListTargetsRequest(
                page_size=size, page_token=token, state=args.state, paused_only=args.paused
            )
            page = await _stub(client).ListTargets(request, timeout=timeout)
            for target in page.targets:
                yield target
            token = page.next_page_token
            if not token:
                return

    async def action(client: OrchestratorClient) -> int:
        await print_listing(
            pages(client), limit=args.limit, as_json=args.json, table=target_table, noun="targets"
        )
        return 0

    return run_with_client(args, action)


def show_command(args: argparse.Namespace) -> int:
    """``targets show``: print one target.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """

    async def action(client: OrchestratorClient) -> int:
        request = pb.GetTargetRequest(target=args.target_name)
        response = await _stub(client).GetTarget(request, timeout=args.timeout.total_seconds())
        if args.json:
            print_json(response)
        else:
            print(target_detail(response.target))
        return 0

    return run_with_client(args, action)


def pause_command(args: argparse.Namespace) -> int:
    """``targets pause``: pause a target.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """
    request = pb.PauseTargetRequest(target=args.target_name, reason=args.reason)
    until: datetime | None = args.until
    if args.for_ is not None:
        until = datetime.now(UTC) + args.for_
    if until is not None:
        stamp = Timestamp()
        stamp.FromDatetime(until)
        request.until.CopyFrom(stamp)

    async def action(client: OrchestratorClient) -> int:
        if not request.reason.strip():
            raise UsageError("--reason must not be empty")
        response = await _stub(client).PauseTarget(request, timeout=args.timeout.total_seconds())
        if args.json:
            print_json(response)
        else:
            print(f"target {response.target.target}: paused {_pause_text(response.target)}")
        return 0

    return run_with_client(args, action)


def resume_command(args: argparse.Namespace) -> int:
    """``targets resume``: resume a target.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """
    request = pb.ResumeTargetRequest(target=args.target_name)
    if args.rate is not None:
        request.release_rate = args.rate

    async def action(client: OrchestratorClient) -> int:
        response = await _stub(client).ResumeTarget(request, timeout=args.timeout.total_seconds())
        target = response.target
        if args.json:
            print_json(response)
        elif target.parked_runs:
            print(
                f"target {target.target}: {breaker_state_name(target.state)}; releasing "
                f"{target.parked_runs} parked runs at {target.release_rate:g} runs/s"
                + ("" if args.rate else ", doubling each second")
            )
        else:
            print(f"target {target.target}: {breaker_state_name(target.state)}; no parked runs")
        return 0

    return run_with_client(args, action)
