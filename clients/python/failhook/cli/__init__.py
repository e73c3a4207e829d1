"""The ``failhook`` command line.

Each command group lives in its own module with an ``add_parser(subparsers)`` function that adds
its parser and sets ``func``, the handler taking the parsed arguments and returning the exit
status. Add a group by appending its ``add_parser`` to :data:`REGISTRARS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from failhook.cli import certs_cmd, dlq_cmd, exit_codes, runs_cmd, targets_cmd
from failhook.console import command as console_cmd

__all__ = ["REGISTRARS", "Registrar", "build_parser", "main"]

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
"""Adds one command group to the ``failhook`` parser."""

REGISTRARS: list[Registrar] = [
    runs_cmd.add_parser,
    dlq_cmd.add_parser,
    targets_cmd.add_parser,
    certs_cmd.add_parser,
    console_cmd.add_parser,
]
"""The command groups, in the order ``failhook --help`` lists them."""


def build_parser(registrars: Sequence[Registrar] | None = None) -> argparse.ArgumentParser:
    """Build the ``failhook`` parser.

    Args:
        registrars: The command groups; :data:`REGISTRARS` by default.

    Returns:
        The parser; each leaf command sets ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="failhook",
        description="Start and watch runs, operate the dead-letter queue, make development certificates.",
        epilog=exit_codes.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS if registrars is None else registrars:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``failhook`` command line.

    Args:
        argv: The arguments without the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit status (usage errors exit with 2 through ``SystemExit``, as argparse does).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)
