"""The connection flags every ``runs`` and ``dlq`` command takes, and the command runner.

Connection settings, each from its flag, else its environment variable, else the default:

``--target``            ``FAILHOOK_TARGET``            ``127.0.0.1:50051``
``--tls-ca``            ``FAILHOOK_TLS_CA``            see below
``--tls-cert``          ``FAILHOOK_TLS_CERT``          see below
``--tls-key``           ``FAILHOOK_TLS_KEY``           see below
``--tls-server-name``   ``FAILHOOK_TLS_SERVER_NAME``   the target's host
``--timeout``           (none)                          ``30s`` per call

The connection is mutual TLS. When none of the three TLS files is given and
``./var/certs/operator.pem`` exists (what ``make certs`` or ``failhook certs init var/certs``
makes), the operator's dev identity in ``./var/certs`` is used: ``ca.pem``, ``operator.pem``
and ``operator-key.pem`` (roles ``read`` and ``operate``; starting or canceling runs needs an
identity with ``submit``). ``--insecure`` uses plaintext instead (development servers started
with ``--insecure`` only).

:func:`run_with_client` connects, runs a command's coroutine, and turns every failure into an
exit status (see :mod:`failhook.cli.exit_codes`) and a message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import grpc.aio

from failhook.client import OrchestratorClient
from failhook.tls import TLSFiles

from .exit_codes import ExitCode, exit_code_for_status
from .output import clean
from .parsing import parse_positive_duration

__all__ = [
    "DEFAULT_CERT_DIR",
    "DEFAULT_IDENTITY",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "CommandError",
    "Connection",
    "UsageError",
    "connect",
    "connection_parent",
    "report_rpc_error",
    "resolve_connection",
    "run_with_client",
]

DEFAULT_TARGET = "127.0.0.1:50051"
"""The orchestrator's address when neither ``--target`` nor ``FAILHOOK_TARGET`` is set."""
DEFAULT_CERT_DIR = Path("var/certs")
"""Where the default identity's files are looked for, relative to the working directory."""
DEFAULT_IDENTITY = "operator"
"""The dev identity used from :data:`DEFAULT_CERT_DIR` when no TLS file is given."""
DEFAULT_TIMEOUT = timedelta(seconds=30)
"""The deadline of each call when ``--timeout`` is not given."""


class CommandError(Exception):
    """A command failed; the message goes to stderr as ``error: <message>``.

    Args:
        message: What went wrong.
        exit_code: The exit status.
    """

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CommandError):
    """The command line or a local file cannot be used (exit status 2).

    Args:
        message: What is wrong and how to fix it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


def connection_parent() -> argparse.ArgumentParser:
    """Return a parent parser with the connection and output flags.

    Returns:
        A parser without ``-h``, for ``add_parser(..., parents=[...])``.
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--target",
        metavar="HOST:PORT",
        help=f"the orchestrator's gRPC target (env FAILHOOK_TARGET; default {DEFAULT_TARGET})",
    )
    group.add_argument(
        "--tls-ca",
        type=Path,
        metavar="FILE",
        help=f"CA certificate(s) to verify the orchestrator (env FAILHOOK_TLS_CA; default "
        f"{DEFAULT_CERT_DIR}/ca.pem when {DEFAULT_CERT_DIR}/{DEFAULT_IDENTITY}.pem exists)",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help=f"this client's certificate (env FAILHOOK_TLS_CERT; default "
        f"{DEFAULT_CERT_DIR}/{DEFAULT_IDENTITY}.pem when it exists)",
    )
    group.add_argument(
        "--tls-key",
        type=Path,
        metavar="FILE",
        help=f"this client's private key (env FAILHOOK_TLS_KEY; default "
        f"{DEFAULT_CERT_DIR}/{DEFAULT_IDENTITY}-key.pem when the certificate exists)",
    )
    group.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="verify the orchestrator's certificate for NAME instead of the target's host "
        "(env FAILHOOK_TLS_SERVER_NAME)",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, no TLS: only for an orchestrator started with --insecure (development)",
    )
    group.add_argument(
        "--timeout",
        type=parse_positive_duration,
        default=DEFAULT_TIMEOUT,
        metavar="DURATION",
        help="deadline of each call, e.g. 10s or 2m (default: 30s)",
    )
    output = parent.add_argument_group("output")
    output.add_argument(
        "--json", action="store_true", help="print JSON (one document; lists as an array) for scripts"
    )
    return parent


@dataclass(frozen=True)
class Connection:
    """Where and how to connect.

    Attributes:
        target: The orchestrator's gRPC target.
        tls: The client's TLS files; ``None`` with ``insecure``.
        insecure: Plaintext.
        server_name: The name to verify the server certificate against, if not the host's.
        timeout: The deadline of each call, in seconds.
    """

    target: str
    tls: TLSFiles | None
    insecure: bool
    server_name: str | None
    timeout: float


def _tls_files(args: argparse.Namespace, environ: Mapping[str, str], cwd: Path) -> TLSFiles:
    names = ("ca", "cert", "key")
    given: dict[str, Path | None] = {}
    for name in names:
        flag: Path | None = getattr(args, f"tls_{name}", None)
        env = environ.get(f"FAILHOOK_TLS_{name.upper()}")
        given[name] = flag if flag is not None else (Path(env) if env else None)
    if all(path is None for path in given.values()):
        directory = cwd / DEFAULT_CERT_DIR
        if (directory / f"{DEFAULT_IDENTITY}.pem").is_file():
            return TLSFiles.from_dir(directory, DEFAULT_IDENTITY)
        raise UsageError(
            "no TLS identity: pass --tls-ca, --tls-cert and --tls-key (or set FAILHOOK_TLS_CA, "
            f"FAILHOOK_TLS_CERT and FAILHOOK_TLS_KEY), or create {DEFAULT_CERT_DIR}/ with "
            f"`failhook certs init {DEFAULT_CERT_DIR}`; --insecure for a plaintext dev server"
        )
    missing = [f"--tls-{name} (or FAILHOOK_TLS_{name.upper()})" for name in names if given[name] is None]
    if missing:
        raise UsageError(f"incomplete TLS identity: missing {', '.join(missing)}")
    ca, cert, key = (given[name] for name in names)
    assert ca is not None and cert is not None and key is not None
    return TLSFiles(ca=ca, cert=cert, key=key)


def resolve_connection(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Connection:
    """Work out the connection from the flags, the environment and the defaults.

    Args:
        args: Parsed arguments of a parser made with :func:`connection_parent`.
        environ: The environment; ``os.environ`` by default.
        cwd: The directory :data:`DEFAULT_CERT_DIR` is relative to; the working directory by
            default.

    Returns:
        The connection.

    Raises:
        UsageError: If ``--insecure`` is given with TLS flags, or the TLS identity is incomplete
            or missing.
    """
    env = os.environ if environ is None else environ
    target = args.target or env.get("FAILHOOK_TARGET") or DEFAULT_TARGET
    server_name = args.tls_server_name or env.get("FAILHOOK_TLS_SERVER_NAME") or None
    timeout: timedelta = args.timeout
    if args.insecure:
        flags = [f"--tls-{n}" for n in ("ca", "cert", "key") if getattr(args, f"tls_{n}") is not None]
        if flags:
            raise UsageError(f"--insecure excludes {', '.join(flags)}")
        return Connection(target, None, True, None, timeout.total_seconds())
    files = _tls_files(args, env, Path.cwd() if cwd is None else cwd)
    return Connection(target, files, False, server_name, timeout.total_seconds())


Action = Callable[[OrchestratorClient], Awaitable[int]]
"""A command's work: given the connected client, return the exit status."""


def connect(connection: Connection) -> OrchestratorClient:
    """A client of the orchestrator for ``connection`` (unreadable TLS files are a usage error)."""
    try:
        return OrchestratorClient.connect(
            connection.target,
            tls=connection.tls,
            insecure=connection.insecure,
            server_name_override=connection.server_name,
            timeout=connection.timeout,
        )
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot use the TLS files: {err}") from err


async def _connect_and_run(connection: Connection, action: Action) -> int:
    client = connect(connection)
    async with client:
        return await action(client)


def report_rpc_error(error: grpc.aio.AioRpcError, connection: Connection) -> ExitCode:
    """Print a failed call as ``error: <CODE>: <message>`` and return its exit status.

    Args:
        error: The failed call.
        connection: Where the call went, for the hint when the server cannot be reached.

    Returns:
        The exit status for the call's code.
    """
    code: grpc.StatusCode = error.code()
    print(f"error: {code.name}: {clean(error.details() or '')}", file=sys.stderr)
    if code is grpc.StatusCode.UNAVAILABLE:
        print(
            f"hint: is the orchestrator running at {connection.target}? Check --target and the TLS files.",
            file=sys.stderr,
        )
    return exit_code_for_status(code)


def run_with_client(args: argparse.Namespace, action: Action) -> int:
    """Connect as the flags say, run ``action`` and map any failure to an exit status.

    Args:
        args: Parsed arguments of a parser made with :func:`connection_parent`.
        action: The command's coroutine function.

    Returns:
        The exit status: the action's, or the failure's (see :mod:`failhook.cli.exit_codes`).
    """
    try:
        connection = resolve_connection(args)
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.exit_code)
    try:
        return asyncio.run(_connect_and_run(connection, action))
    except grpc.aio.AioRpcError as err:
        return int(report_rpc_error(err, connection))
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
