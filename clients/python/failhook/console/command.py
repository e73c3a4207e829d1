"""``failhook console``: serve the web console and print its URL with the access token.

The connection flags are those of every ``failhook`` command
(:func:`failhook.cli.connection.connection_parent`: ``--target``, ``--tls-*``, ``--insecure``,
``--timeout``); by default the operator's dev identity in ``./var/certs`` is used. ``--listen``
(env ``FAILHOOK_CONSOLE_LISTEN``, default ``127.0.0.1:8081``) is where the console serves
HTTP; port 0 picks a free port, and the printed URL has the real one. The server's access log
is off, so the token never reaches a log; the URL is printed on standard output only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys

from failhook.cli.arguments import leaf_parser
from failhook.cli.connection import (
    CommandError,
    Connection,
    UsageError,
    connect,
    connection_parent,
    resolve_connection,
)
from failhook.cli.exit_codes import ExitCode
from failhook.tls import channel_credentials

from .stats import DEFAULT_SCAN_LIMIT

__all__ = ["DEFAULT_LISTEN", "add_parser", "bind", "run"]

DEFAULT_LISTEN = "127.0.0.1:8081"
"""Where the console listens unless ``--listen`` or ``FAILHOOK_CONSOLE_LISTEN`` says otherwise."""
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``failhook console``.

    Args:
        subparsers: The ``failhook`` command groups.
    """
    parser = leaf_parser(
        subparsers,
        "console",
        help="serve the web console (dead letters, runs, charts)",
        description=(
            "Serve a web console of the dead-letter queue and the runs, as a client of the "
            "orchestrator's API with this command's TLS identity (the operator's by default). "
            "It prints its URL with a random access token; requests without it are refused."
        ),
        parents=[connection_parent()],
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"where to serve HTTP (env FAILHOOK_CONSOLE_LISTEN; default {DEFAULT_LISTEN}; port 0: any)",
    )
    parser.add_argument(
        "--scan-limit",
        type=int,
        default=DEFAULT_SCAN_LIMIT,
        metavar="N",
        help=f"the most dead letters the overview charts read (default {DEFAULT_SCAN_LIMIT})",
    )
    parser.set_defaults(func=run)


def bind(listen: str) -> socket.socket:
    """Open the listening socket.

    Args:
        listen: ``HOST:PORT``; an IPv6 host in brackets (``[::1]:8081``).

    Returns:
        The bound, listening socket.

    Raises:
        UsageError: If ``listen`` is malformed or cannot be bound.
    """
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--listen: expected HOST:PORT, e.g. {DEFAULT_LISTEN}, got {listen!r}")
    try:
        info = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)[0]
    except OSError as err:
        raise UsageError(f"--listen: cannot listen on {listen}: {err}") from err
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it, a response written in two parts waits
        # for the browser's delayed ACK (40 ms) before its body leaves.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise UsageError(f"--listen: cannot listen on {listen}: {err}") from err
    return sock


def _url(sock: socket.socket, token: str) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def _check_tls(connection: Connection) -> None:
    """Fail before listening when the TLS files cannot be read or do not match."""
    if connection.tls is None:
        return
    try:
        channel_credentials(connection.tls)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot use the TLS files: {err}") from err


def run(args: argparse.Namespace) -> int:
    """Serve the console until interrupted.

    Args:
        args: The parsed ``failhook console`` arguments.

    Returns:
        The exit status: 0 after an interrupt, 2 for a usage error.
    """
    try:
        connection = resolve_connection(args)
        if args.scan_limit < 1:
            raise UsageError(f"--scan-limit must be at least 1, got {args.scan_limit}")
        _check_tls(connection)
        sock = bind(args.listen or os.environ.get("FAILHOOK_CONSOLE_LISTEN") or DEFAULT_LISTEN)
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.exit_code)
    # The web stack is loaded here only, so that the other commands start without it.
    import uvicorn  # noqa: PLC0415

    from .access import new_access_token  # noqa: PLC0415
    from .app import create_app  # noqa: PLC0415

    token = new_access_token()
    app = create_app(lambda: connect(connection), token, scan_limit=args.scan_limit)
    host = sock.getsockname()[0]
    if host not in _LOCAL_HOSTS:
        print(
            f"warning: the console listens on {host}, reachable from other machines; "
            "anyone with the URL acts with this command's certificate",
            file=sys.stderr,
        )
    print(f"failhook console for {connection.target}: {_url(sock, token)}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", proxy_headers=False)
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return int(ExitCode.OK)
