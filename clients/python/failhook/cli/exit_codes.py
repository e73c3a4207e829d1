"""The exit statuses of the ``failhook`` command line, the one place that maps errors to them.

======  ==============================================================================
Status  Meaning
======  ==============================================================================
0       success
1       the server refused or failed the call (any other gRPC status, e.g.
        INVALID_ARGUMENT or ALREADY_EXISTS), or a bulk action stopped making progress
2       usage error: bad flags or arguments, unreadable TLS or payload files
3       not found (NOT_FOUND)
4       failed precondition (FAILED_PRECONDITION), e.g. retrying a hook that succeeded
5       orchestrator unavailable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED)
6       permission denied (PERMISSION_DENIED, UNAUTHENTICATED)
130     interrupted (Ctrl-C)
======  ==============================================================================

A gRPC error is reported on stderr as ``error: <CODE>: <message>``.
"""

from __future__ import annotations

import enum
from types import MappingProxyType

import grpc

__all__ = ["EXIT_CODES_HELP", "ExitCode", "exit_code_for_status"]


class ExitCode(enum.IntEnum):
    """The statuses scripts can rely on."""

    OK = 0
    """Success."""
    ERROR = 1
    """The server refused or failed the call for a reason without its own status."""
    USAGE = 2
    """Bad flags or arguments (argparse's status too), or unreadable local files."""
    NOT_FOUND = 3
    """The run or dead letter does not exist."""
    FAILED_PRECONDITION = 4
    """The action is not allowed in the resource's current state."""
    UNAVAILABLE = 5
    """The orchestrator cannot be reached or did not answer in time."""
    PERMISSION_DENIED = 6
    """The caller's identity lacks the role, or presented none."""
    INTERRUPTED = 130
    """Interrupted by the user."""


_BY_STATUS = MappingProxyType(
    {
        grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION: ExitCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE: ExitCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNAVAILABLE,
        grpc.StatusCode.PERMISSION_DENIED: ExitCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED: ExitCode.PERMISSION_DENIED,
    }
)


def exit_code_for_status(code: grpc.StatusCode) -> ExitCode:
    """Return the exit status for a failed call's gRPC status.

    Args:
        code: The call's status code.

    Returns:
        Its exit status; :attr:`ExitCode.ERROR` for codes without their own.
    """
    return _BY_STATUS.get(code, ExitCode.ERROR)


EXIT_CODES_HELP = """\
exit status:
  0  success
  1  the server refused or failed the call (e.g. INVALID_ARGUMENT, ALREADY_EXISTS)
  2  usage error (bad flags, unreadable TLS or payload files)
  3  not found (NOT_FOUND)
  4  failed precondition (FAILED_PRECONDITION)
  5  orchestrator unavailable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED)
  6  permission denied (PERMISSION_DENIED, UNAUTHENTICATED)
gRPC errors are printed on stderr as "error: <CODE>: <message>"."""
"""The exit statuses, for the epilog of ``--help``."""
