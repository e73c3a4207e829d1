"""Flags shared by several commands (payload, headers, retry policy, dead-letter filter) and the
conversion of their parsed values into request messages."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2

from .connection import UsageError
from .exit_codes import EXIT_CODES_HELP
from .parsing import (
    HOOK_STATE_CHOICES,
    parse_duration,
    parse_header,
    parse_headers,
    parse_hook_state,
    parse_positive_duration,
    parse_status_code,
    parse_time,
)

__all__ = [
    "add_dead_letter_filter_arguments",
    "add_headers_argument",
    "add_payload_arguments",
    "add_retry_policy_arguments",
    "dead_letter_filter_from",
    "filter_is_empty",
    "headers_from",
    "leaf_parser",
    "payload_from",
    "retry_policy_from",
]


def leaf_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    parents: list[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add a command whose ``--help`` ends with the exit statuses.

    Args:
        actions: The group's subcommands.
        name: The command's name.
        help: The one-line help in the group's list.
        description: The command's description.
        parents: Parent parsers (the connection flags).

    Returns:
        The command's parser.
    """
    return actions.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 100),
        parents=parents,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_payload_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--payload TEXT`` and ``--payload-file FILE`` (exclusive).

    Args:
        parser: The command's parser.
        what: What the payload is, for the help, e.g. ``"the run's input"``.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--payload", metavar="TEXT", help=f"{what}, as UTF-8 text")
    group.add_argument(
        "--payload-file", type=Path, metavar="FILE", help=f"{what}, read from FILE ('-': stdin)"
    )


def payload_from(args: argparse.Namespace) -> bytes | None:
    """Return the payload the flags give.

    Args:
        args: Parsed ``--payload`` / ``--payload-file``.

    Returns:
        The payload, or ``None`` when neither flag is given.

    Raises:
        UsageError: If the file cannot be read.
    """
    if args.payload is not None:
        text: str = args.payload
        return text.encode("utf-8")
    path: Path | None = args.payload_file
    if path is None:
        return None
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read --payload-file: {err}") from err


def add_headers_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """Add ``--header KEY=VALUE`` (repeatable).

    Args:
        parser: The command's parser.
        help: The flag's help.
    """
    parser.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=parse_header,
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )


def add_labels_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str) -> None:
    """Add ``--label KEY=VALUE`` (repeatable).

    Args:
        parser: The command's parser (or one of its groups).
        help: The flag's help.
    """
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=parse_header,
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )


def labels_from(args: argparse.Namespace) -> dict[str, str]:
    """Return the labels the flags give.

    Raises:
        UsageError: If a key is given twice.
    """
    try:
        return parse_headers(args.labels)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"--label: {str(err).replace('header', 'label')}") from err


def headers_from(args: argparse.Namespace) -> dict[str, str]:
    """Return the headers the flags give.

    Args:
        args: Parsed ``--header`` flags.

    Returns:
        The headers by key.

    Raises:
        UsageError: If a key is given twice.
    """
    try:
        return parse_headers(args.headers)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"--header: {err}") from err


def add_retry_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the retry-policy flags; an unset flag keeps the server's (or the run's) value.

    Args:
        parser: The command's parser.
    """
    group = parser.add_argument_group("retry policy (unset flags keep the default)")
    group.add_argument(
        "--max-attempts", type=int, metavar="N", help="attempts of one step, the first included (1: no retry)"
    )
    group.add_argument(
        "--initial-backoff", type=parse_duration, metavar="DURATION", help="delay before the first retry"
    )
    group.add_argument("--backoff-multiplier", type=float, metavar="X", help="delay growth per retry (>= 1)")
    group.add_argument("--max-backoff", type=parse_duration, metavar="DURATION", help="cap of the delay")
    group.add_argument(
        "--jitter", type=float, metavar="FRACTION", help="randomised fraction of each delay (0 to 1)"
    )
    group.add_argument(
        "--attempt-timeout",
        type=parse_positive_duration,
        metavar="DURATION",
        help="deadline of one step call",
    )
    group.add_argument(
        "--non-retryable",
        dest="non_retryable",
        action="append",
        type=parse_status_code,
        metavar="CODE",
        help="a status code that fails the step at once (repeatable; replaces the default list)",
    )


def retry_policy_from(args: argparse.Namespace) -> run_pb2.RetryPolicy | None:
    """Return the retry policy the flags give.

    Args:
        args: Parsed retry-policy flags.

    Returns:
        The policy with the given fields set, or ``None`` when no flag is given.
    """
    policy = run_pb2.RetryPolicy()
    given = False
    if args.max_attempts is not None:
        policy.max_attempts, given = args.max_attempts, True
    if args.backoff_multiplier is not None:
        policy.backoff_multiplier, given = args.backoff_multiplier, True
    if args.jitter is not None:
        policy.jitter, given = args.jitter, True
    for name in ("initial_backoff", "max_backoff", "attempt_timeout"):
        value = getattr(args, name)
        if value is not None:
            duration = Duration()
            duration.FromTimedelta(value)
            getattr(policy, name).CopyFrom(duration)
            given = True
    if args.non_retryable:
        policy.non_retryable_status_codes.codes.extend(args.non_retryable)
        given = True
    return policy if given else None


def add_dead_letter_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the dead-letter filter flags (ANDed across flags, ORed within a repeated flag).

    Args:
        parser: The command's parser.
    """
    group = parser.add_argument_group("filter (flags are ANDed; a repeated flag matches any of its values)")
    group.add_argument("--workflow", action="append", default=[], metavar="NAME", help="the run's workflow")
    group.add_argument(
        "--failed-step", action="append", default=[], metavar="NAME", help="the name of the step that failed"
    )
    group.add_argument(
        "--hook-state",
        action="append",
        default=[],
        type=parse_hook_state,
        metavar="STATE",
        help=f"the failure hook's state: {', '.join(HOOK_STATE_CHOICES)}",
    )
    group.add_argument(
        "--fail-status",
        action="append",
        default=[],
        type=parse_status_code,
        metavar="CODE",
        help="the failed step's gRPC status, as a number (14) or a name (UNAVAILABLE)",
    )
    group.add_argument(
        "--after",
        type=parse_time,
        metavar="TIME",
        help="dead-lettered at or after TIME (ISO 8601, or an age: 2h)",
    )
    group.add_argument(
        "--before",
        type=parse_time,
        metavar="TIME",
        help="dead-lettered before TIME (ISO 8601, or an age: 2h)",
    )
    add_labels_argument(group, "the run carries this label (repeatable: every one, ANDed)")


def dead_letter_filter_from(args: argparse.Namespace) -> dl_pb.DeadLetterFilter:
    """Return the filter the flags give.

    Args:
        args: Parsed filter flags.

    Returns:
        The filter; empty when no flag is given.
    """
    selected = dl_pb.DeadLetterFilter(
        workflow=args.workflow,
        failed_step=args.failed_step,
        hook_state=args.hook_state,
        fail_status=args.fail_status,
        labels=labels_from(args),
    )
    for name, value in (("dead_lettered_after", args.after), ("dead_lettered_before", args.before)):
        if value is not None:
            stamp = Timestamp()
            stamp.FromDatetime(value)
            getattr(selected, name).CopyFrom(stamp)
    return selected


def filter_is_empty(selected: dl_pb.DeadLetterFilter) -> bool:
    """Return whether a filter selects every entry.

    Args:
        selected: The filter.

    Returns:
        Whether no field is set.
    """
    return selected.ByteSize() == 0
