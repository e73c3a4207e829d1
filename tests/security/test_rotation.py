"""Certificate rotation on a running server: no restart, no failed call, new handshakes use it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import pytest

from failhook.certs import DevCerts, issue_certificate, make_ca
from failhook.tls import TLSFiles, channel_credentials, server_credentials

from ._support import SERVING, CountingHealth, OpenChannel, Serve, check, fresh_channel_options, write_atomic

ROTATED_NAME = "rotated.failhook.test"


@dataclass
class Tally:
    """What the call loops saw."""

    calls: int = 0
    handshakes: int = 0
    failures: list[grpc.aio.AioRpcError] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def more_calls(self, count: int = 20, timeout: float = 20.0) -> None:
        """Wait until ``count`` more calls have been made (the loops keep calling meanwhile)."""
        target = self.calls + count
        async with asyncio.timeout(timeout):
            while self.calls < target:
                self.changed.clear()
                await self.changed.wait()


async def _call_loop(
    port: int, credentials: grpc.ChannelCredentials, stop: asyncio.Event, tally: Tally
) -> None:
    """Call on one long-lived connection and, alternately, on a new connection each time."""
    target = f"127.0.0.1:{port}"
    async with grpc.aio.secure_channel(target, credentials, options=fresh_channel_options()) as long_lived:
        while not stop.is_set():
            try:
                assert await check(long_lived) == SERVING
                tally.calls += 1
                async with grpc.aio.secure_channel(
                    target, credentials, options=fresh_channel_options()
                ) as fresh:
                    assert await check(fresh) == SERVING
                tally.calls += 1
                tally.handshakes += 1
                tally.changed.set()
            except grpc.aio.AioRpcError as err:
                tally.failures.append(err)


async def _succeeds(channel: grpc.aio.Channel) -> bool:
    try:
        return bool(await check(channel, seconds=2.0) == SERVING)
    except grpc.aio.AioRpcError:
        return False


async def _eventually(condition: Callable[[], Awaitable[bool]], attempts: int = 200) -> None:
    for _ in range(attempts):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not become true")


def _server_files(dev_certs: DevCerts, directory: Path) -> TLSFiles:
    """A copy of the orchestrator's files that the test can rotate."""
    directory.mkdir()
    source = dev_certs.tls_files("orchestrator")
    files = TLSFiles.from_dir(directory, "orchestrator")
    for src, dst in ((source.ca, files.ca), (source.cert, files.cert), (source.key, files.key)):
        shutil.copyfile(src, dst)
    return files


async def test_rotation_to_a_certificate_of_the_same_ca_drops_no_call(
    serve: Serve, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel, tmp_path: Path
) -> None:
    files = _server_files(dev_certs, tmp_path / "server")
    port = await serve(server_credentials(files), servicer=health)
    worker = channel_credentials(dev_certs.tls_files("worker"))
    assert not await _succeeds(open_channel(port, worker, server_name=ROTATED_NAME))
    cert, key = issue_certificate(
        dev_certs.ca.read_bytes(),
        dev_certs.ca_key.read_bytes(),
        "orchestrator",
        server=True,
        client=True,
        dns_names=("localhost", ROTATED_NAME),
    )
    stop, tally = asyncio.Event(), Tally()
    loops = [asyncio.create_task(_call_loop(port, worker, stop, tally)) for _ in range(4)]
    try:
        await tally.more_calls()
        # Certificate first, key later: handshakes in between must keep the old pair.
        write_atomic(files.cert, cert)
        await tally.more_calls()
        write_atomic(files.key, key)
        await _eventually(lambda: _succeeds(open_channel(port, worker, server_name=ROTATED_NAME)))
        await tally.more_calls()
    finally:
        stop.set()
        await asyncio.gather(*loops)

    assert tally.failures == []
    assert tally.handshakes > 10
    assert health.calls >= tally.calls > 20


async def test_rotation_to_a_new_ca_through_a_ca_bundle_drops_no_call(
    serve: Serve, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel, tmp_path: Path
) -> None:
    files = _server_files(dev_certs, tmp_path / "server")
    port = await serve(server_credentials(files), servicer=health)
    old_ca = dev_certs.ca.read_bytes()
    new_ca, new_ca_key = make_ca("failhook dev CA 2")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(old_ca + new_ca)
    worker = dev_certs.tls_files("worker")
    # Clients trust both CAs before the server switches.
    both = channel_credentials(TLSFiles(ca=bundle, cert=worker.cert, key=worker.key))
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new_worker = TLSFiles(ca=new_dir / "ca.pem", cert=new_dir / "worker.pem", key=new_dir / "worker-key.pem")
    new_worker.ca.write_bytes(new_ca)
    new_cert, new_key = issue_certificate(new_ca, new_ca_key, "worker", server=True, client=True)
    new_worker.cert.write_bytes(new_cert)
    new_worker.key.write_bytes(new_key)
    server_cert, server_key = issue_certificate(new_ca, new_ca_key, "orchestrator", server=True, client=True)
    assert not await _succeeds(open_channel(port, channel_credentials(new_worker)))

    stop, tally = asyncio.Event(), Tally()
    loops = [asyncio.create_task(_call_loop(port, both, stop, tally)) for _ in range(4)]
    try:
        await tally.more_calls()
        # Stage 1: the server trusts clients of both CAs.
        write_atomic(files.ca, old_ca + new_ca)
        await tally.more_calls()
        # Stage 2: the server presents a certificate of the new CA.
        write_atomic(files.key, server_key)
        write_atomic(files.cert, server_cert)
        await _eventually(lambda: _succeeds(open_channel(port, channel_credentials(new_worker))))
        await tally.more_calls()
    finally:
        stop.set()
        await asyncio.gather(*loops)

    assert tally.failures == []
    assert tally.handshakes > 10
    # Clients that trust only the old CA no longer accept the server.
    assert not await _succeeds(open_channel(port, channel_credentials(worker)))


async def test_unreadable_rotation_keeps_the_loaded_certificate(
    serve: Serve,
    dev_certs: DevCerts,
    health: CountingHealth,
    open_channel: OpenChannel,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = _server_files(dev_certs, tmp_path / "server")
    port = await serve(server_credentials(files), servicer=health)
    worker = channel_credentials(dev_certs.tls_files("worker"))

    write_atomic(files.cert, b"-----BEGIN CERTIFICATE-----\ntruncated")
    assert await _succeeds(open_channel(port, worker))
    files.key.unlink()
    assert await _succeeds(open_channel(port, worker))
    assert "keeping the loaded certificate" in caplog.text

    cert, key = issue_certificate(
        dev_certs.ca.read_bytes(),
        dev_certs.ca_key.read_bytes(),
        "orchestrator",
        server=True,
        client=True,
        dns_names=(ROTATED_NAME,),
    )
    write_atomic(files.key, key)
    write_atomic(files.cert, cert)
    assert await _succeeds(open_channel(port, worker, server_name=ROTATED_NAME))
