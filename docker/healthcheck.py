"""The container's health probe: ``grpc.health.v1.Health/Check`` over mutual TLS.

Run by the image's ``HEALTHCHECK`` as ``python /opt/failhook/healthcheck.py``; exits 0 when the
orchestrator answers SERVING, 1 otherwise (one line on stdout says why). It reads the same
``FAILHOOK_*`` variables as the orchestrator, so it needs no arguments:

- the port (and host, ``localhost`` for a wildcard address) from ``FAILHOOK_LISTEN``,
  or ``FAILHOOK_HEALTHCHECK_TARGET`` (``HOST:PORT``) when set;
- the CA from ``FAILHOOK_TLS_CA``; the client identity from ``FAILHOOK_HEALTHCHECK_CERT`` /
  ``FAILHOOK_HEALTHCHECK_KEY``, by default the orchestrator's own ``FAILHOOK_TLS_CERT`` /
  ``FAILHOOK_TLS_KEY`` (its certificate also has the clientAuth usage, and the health service
  needs no role);
- ``FAILHOOK_HEALTHCHECK_SERVER_NAME``: the name to verify in the server's certificate when it
  has no ``localhost`` SAN;
- ``FAILHOOK_INSECURE``: plaintext, matching an orchestrator started with ``--insecure``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORT = 50051
TIMEOUT_SECONDS = 5.0
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})  # noqa: S104 - compared, not bound
_TRUE = frozenset({"1", "true", "yes", "on"})


def target(env: Mapping[str, str]) -> str:
    """The address to probe: ``FAILHOOK_HEALTHCHECK_TARGET``, else derived from ``FAILHOOK_LISTEN``.

    Args:
        env: The environment.

    Returns:
        ``HOST:PORT``, with ``localhost`` in place of a wildcard listen address.
    """
    explicit = env.get("FAILHOOK_HEALTHCHECK_TARGET", "").strip()
    if explicit:
        return explicit
    listen = env.get("FAILHOOK_LISTEN", "").strip()
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        host, port = "", str(DEFAULT_PORT)
    if host in _WILDCARDS:
        host = "localhost"
    return f"{host}:{port}"


def _file(env: Mapping[str, str], *names: str) -> bytes:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return Path(value).read_bytes()
    raise FileNotFoundError(f"none of {', '.join(names)} is set")


def channel(env: Mapping[str, str], address: str) -> grpc.Channel:
    """An mTLS (or, with ``FAILHOOK_INSECURE``, plaintext) channel to ``address``.

    Args:
        env: The environment naming the certificate files.
        address: ``HOST:PORT``.

    Returns:
        The channel.

    Raises:
        OSError: If a certificate file cannot be read.
    """
    if env.get("FAILHOOK_INSECURE", "").strip().lower() in _TRUE:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_file(env, "FAILHOOK_TLS_CA"),
        private_key=_file(env, "FAILHOOK_HEALTHCHECK_KEY", "FAILHOOK_TLS_KEY"),
        certificate_chain=_file(env, "FAILHOOK_HEALTHCHECK_CERT", "FAILHOOK_TLS_CERT"),
    )
    options: list[tuple[str, str]] = []
    server_name = env.get("FAILHOOK_HEALTHCHECK_SERVER_NAME", "").strip()
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(address, credentials, options=options)


def probe(env: Mapping[str, str]) -> tuple[bool, str]:
    """Ask the orchestrator's health service (service ``""``) once.

    Args:
        env: The environment.

    Returns:
        Whether it answered SERVING, and a line saying what happened.
    """
    address = target(env)
    service = env.get("FAILHOOK_HEALTHCHECK_SERVICE", "")
    try:
        with channel(env, address) as chan:
            stub = health_pb2_grpc.HealthStub(chan)
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_SECONDS)
    except OSError as exc:
        return False, f"cannot read the TLS files: {exc}"
    except grpc.RpcError as exc:
        return False, f"{address}: {exc.code().name if isinstance(exc, grpc.Call) else exc}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING), f"{address}: {status}"


def main() -> int:
    """Probe once; 0 when SERVING, else 1."""
    healthy, message = probe(os.environ)
    print(message, flush=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
