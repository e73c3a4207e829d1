"""Tell a call that never reached the server from an answer of the server.

Both come back as ``UNAVAILABLE``; the circuit breaker counts a connection or TLS failure as an
availability failure whatever its configured codes (``trip_on_connection_failure``), so the
dispatcher marks it (``CallResult.connection_failure``). gRPC says so only in the status
message, which its core writes as below when no connection could be made:

* ``failed to connect to all addresses; last error: ...: Connection refused`` (nothing listens),
* ``failed to connect to all addresses; last error: ...: Tls handshake failed ...`` (TLS),
* ``errors resolving host:port: ...`` (the name does not resolve).

A server's own ``UNAVAILABLE`` carries the server's message instead.
"""

from __future__ import annotations

import grpc

__all__ = ["is_connection_failure"]

_CONNECT_FAILURES = ("failed to connect to all addresses", "errors resolving ")


def is_connection_failure(error: grpc.aio.AioRpcError) -> bool:
    """Whether a failed call never reached the server (resolve, connect or TLS handshake failed)."""
    code: grpc.StatusCode = error.code()
    return code is grpc.StatusCode.UNAVAILABLE and (error.details() or "").startswith(_CONNECT_FAILURES)
