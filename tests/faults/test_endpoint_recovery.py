"""Issue 12, defect 10: after an endpoint's outage, the orchestrator reaches it again within about
a second (gRPC's default reconnect backoff grows to minutes), so its runs are not dead-lettered
while it is up."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from failhook.certs import DevCerts
from failhook.v1 import run_pb2
from tests.support.endpoint import Recorder, start_endpoint
from tests.support.harness import started_harness

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

OUTAGE_SECONDS = 6.0  # long enough for gRPC's default backoff to grow past 3 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_recovered_endpoint_is_reached_within_about_a_second(
    dev_certs: DevCerts, tmp_path: object, recorder: Recorder
) -> None:
    port = _free_port()
    database = f"sqlite+aiosqlite:///{tmp_path}/failhook.db"
    async with started_harness(dev_certs, database, f"localhost:{port}") as harness:
        patient = run_pb2.RetryPolicy(max_attempts=100, backoff_multiplier=1.0)
        patient.initial_backoff.FromMilliseconds(100)
        patient.max_backoff.FromMilliseconds(100)
        started = await harness.start({"steps": 1}, retry_policy=patient)
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: the endpoint is down this long
        assert (await harness.get(started.run_id)).state == run_pb2.RUN_STATE_RUNNING
        server, _ = await start_endpoint(dev_certs.tls_files("worker"), recorder, port=port)
        back = time.time()
        try:
            run = await harness.wait(started.run_id, [run_pb2.RUN_STATE_SUCCEEDED], timeout=20)
        finally:
            await server.stop(0)
    reached_after = run.steps[0].complete_time.ToMicroseconds() / 1e6 - back
    assert reached_after < 1.6, f"the endpoint was reached {reached_after:.1f}s after it came back"
