"""Mutual TLS over real sockets: who gets through the handshake, and what the server sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest

from failhook.certs import WORKER_IDENTITY, DevCerts, issue_certificate, make_ca
from failhook.tls import (
    Identity,
    TLSFiles,
    channel_credentials,
    channel_options,
    server_credentials,
)

from ._support import SERVING, CountingHealth, OpenChannel, Serve, check


def _files(directory: Path, name: str, ca: bytes, cert: bytes, key: bytes) -> TLSFiles:
    files = TLSFiles(
        ca=directory / f"{name}-ca.pem", cert=directory / f"{name}.pem", key=directory / f"{name}.key"
    )
    files.ca.write_bytes(ca)
    files.cert.write_bytes(cert)
    files.key.write_bytes(key)
    return files


async def _assert_refused(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
async def tls_port(serve: Serve, dev_certs: DevCerts, health: CountingHealth) -> int:
    """A health server requiring client certificates from the dev CA."""
    return await serve(server_credentials(dev_certs.tls_files("orchestrator")), servicer=health)


async def test_mutual_tls_call_succeeds_and_server_sees_client_identity(
    tls_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    channel = open_channel(tls_port, channel_credentials(dev_certs.tls_files("worker")))

    assert await check(channel) == SERVING
    assert health.identities == [
        (Identity.uri(WORKER_IDENTITY), Identity.dns("localhost"), Identity.common_name("worker"))
    ]


async def test_client_without_certificate_is_refused(
    tls_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    anonymous = grpc.ssl_channel_credentials(root_certificates=dev_certs.ca.read_bytes())

    await _assert_refused(open_channel(tls_port, anonymous))
    assert health.calls == 0


async def test_client_certificate_from_another_ca_is_refused(
    tls_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel, tmp_path: Path
) -> None:
    rogue_ca, rogue_key = make_ca("rogue CA")
    cert, key = issue_certificate(rogue_ca, rogue_key, "worker", server=False, client=True)
    # The client trusts the real CA, so only the server's verification can fail.
    files = _files(tmp_path, "rogue", dev_certs.ca.read_bytes(), cert, key)

    await _assert_refused(open_channel(tls_port, channel_credentials(files)))
    assert health.calls == 0


async def test_expired_client_certificate_is_refused(
    tls_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    cert, key = issue_certificate(
        dev_certs.ca.read_bytes(),
        dev_certs.ca_key.read_bytes(),
        "worker",
        server=False,
        client=True,
        not_before=now - timedelta(days=10),
        not_after=now - timedelta(days=1),
    )
    files = _files(tmp_path, "expired", dev_certs.ca.read_bytes(), cert, key)

    await _assert_refused(open_channel(tls_port, channel_credentials(files)))
    assert health.calls == 0


async def test_plaintext_client_is_refused(
    tls_port: int, health: CountingHealth, open_channel: OpenChannel
) -> None:
    await _assert_refused(open_channel(tls_port, None))
    assert health.calls == 0


async def test_client_rejects_server_from_untrusted_ca(
    tls_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel, tmp_path: Path
) -> None:
    other_ca, _ = make_ca("other CA")
    worker = dev_certs.tls_files("worker")
    files = _files(tmp_path, "distrustful", other_ca, worker.cert.read_bytes(), worker.key.read_bytes())

    await _assert_refused(open_channel(tls_port, channel_credentials(files)))
    assert health.calls == 0


async def test_client_rejects_server_certificate_for_another_name(
    tls_port: int, dev_certs: DevCerts, open_channel: OpenChannel
) -> None:
    channel = open_channel(
        tls_port, channel_credentials(dev_certs.tls_files("worker")), server_name="elsewhere"
    )

    await _assert_refused(channel)


async def test_without_client_auth_a_certless_client_is_admitted_without_identity(
    serve: Serve, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    port = await serve(
        server_credentials(dev_certs.tls_files("orchestrator"), require_client_auth=False), servicer=health
    )
    anonymous = grpc.ssl_channel_credentials(root_certificates=dev_certs.ca.read_bytes())

    assert await check(open_channel(port, anonymous)) == SERVING
    assert health.identities == [()]


def test_server_credentials_reject_a_key_of_another_certificate(dev_certs: DevCerts, tmp_path: Path) -> None:
    orchestrator, worker = dev_certs.tls_files("orchestrator"), dev_certs.tls_files("worker")
    mismatched = TLSFiles(ca=orchestrator.ca, cert=orchestrator.cert, key=worker.key)

    with pytest.raises(ValueError, match="does not match"):
        server_credentials(mismatched)
    with pytest.raises(ValueError, match="does not match"):
        channel_credentials(mismatched)
    with pytest.raises(FileNotFoundError):
        server_credentials(TLSFiles.from_dir(tmp_path, "nobody"))


def test_channel_options() -> None:
    keepalive = [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    assert channel_options() == keepalive
    assert channel_options("localhost") == [*keepalive, ("grpc.ssl_target_name_override", "localhost")]


def test_tls_files_layout(tmp_path: Path) -> None:
    assert TLSFiles.from_dir(tmp_path, "worker") == TLSFiles(
        ca=tmp_path / "ca.pem", cert=tmp_path / "worker.pem", key=tmp_path / "worker-key.pem"
    )
