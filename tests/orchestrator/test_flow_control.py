"""Flow control: limits per target and per flow-control key, from the config only, over real
sockets on both databases. Waiting runs are not failed and use no attempt."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest

from failhook.certs import DevCerts
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook_orchestrator.config import ConfigError, load_settings
from failhook_orchestrator.engine.flow_control import FlowLimits
from failhook_orchestrator.flow_control_config import FlowControlConfig
from tests.api._support import field_violations
from tests.support.endpoint import Recorder
from tests.support.harness import TERMINAL, Harness, started_harness


async def _all_done(harness: Harness, run_ids: list[str], timeout: float = 60) -> list[run_pb2.WorkflowRun]:
    return [await harness.wait(run_id, TERMINAL, timeout=timeout) for run_id in run_ids]


async def test_a_target_limited_to_3_in_flight_never_sees_a_4th_call(
    dev_certs: DevCerts, database_url: str, endpoint: str, recorder: Recorder
) -> None:
    limits = FlowControlConfig(targets={endpoint: FlowLimits(max_in_flight=3)})
    async with started_harness(dev_certs, database_url, endpoint, flow_control=limits) as harness:
        runs = await asyncio.gather(*(harness.start({"steps": 2, "step_delay_ms": 40}) for _ in range(50)))
        done = await _all_done(harness, [r.run_id for r in runs])
    assert {r.state for r in done} == {run_pb2.RUN_STATE_SUCCEEDED}  # waiting failed none
    assert all(not r.pending_attempts for r in done)
    assert recorder.max_in_flight == 3  # the limit was reached, never passed
    assert len(recorder.call_times) == 150  # 2 steps + the final call each: no attempt was used up


async def test_a_rate_limit_holds_within_20_percent(
    dev_certs: DevCerts, database_url: str, endpoint: str, recorder: Recorder
) -> None:
    # 10 calls/s, burst 1, over 30 one-call runs: about 3 s. The window from the first call to
    # the last shows the rate (shortened from 10 s to keep the suite lean; the bucket is the same).
    limits = FlowControlConfig(targets={endpoint: FlowLimits(max_rate=10.0, burst=1)})
    async with started_harness(dev_certs, database_url, endpoint, flow_control=limits) as harness:
        runs = await asyncio.gather(*(harness.start({"steps": 0}) for _ in range(30)))
        await _all_done(harness, [r.run_id for r in runs])
    times = sorted(recorder.call_times)
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 8.0 <= rate <= 12.0, rate
    for i in range(len(times) - 10):  # no second holds more than the rate plus the burst
        assert times[i + 10] - times[i] >= 0.9, (i, times[i + 10] - times[i])


async def test_a_flow_control_key_limits_its_runs_and_get_run_says_what_they_wait_on(
    dev_certs: DevCerts, database_url: str, endpoint: str, recorder: Recorder
) -> None:
    limits = FlowControlConfig(keys={"tenant-acme": FlowLimits(max_in_flight=1)})
    async with started_harness(dev_certs, database_url, endpoint, flow_control=limits) as harness:
        slow = {"steps": 1, "step_delay_ms": 1500}
        first = await harness.start(slow, flow_control_key="tenant-acme")
        await recorder.until(lambda: recorder.in_flight == 1)
        second = await harness.start(slow, flow_control_key="tenant-acme")
        free = await harness.start({"steps": 0}, flow_control_key="no-limits-configured")
        deadline = time.monotonic() + 5
        while not (waiting := (await harness.get(second.run_id)).waiting_on):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert waiting == "flow-control key tenant-acme (max_in_flight 1)"
        assert (await harness.wait(free.run_id, TERMINAL)).state == run_pb2.RUN_STATE_SUCCEEDED
        done = await _all_done(harness, [first.run_id, second.run_id])
        assert [r.flow_control_key for r in done] == ["tenant-acme", "tenant-acme"]
        assert [r.waiting_on for r in done] == ["", ""]
    calls = dict(zip([(a[0], a[1]) for a in recorder.attempts], recorder.call_times, strict=True))
    # The second keyed run's step started only once the first's (1.5 s long) had ended; the
    # unlimited run went meanwhile.
    assert calls[(second.run_id, 0)] - calls[(first.run_id, 0)] >= 1.4
    assert calls[(free.run_id, 0)] < calls[(second.run_id, 0)]


async def test_a_bad_flow_control_key_is_invalid_argument(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.runs.StartRun(
            ws.StartRunRequest(
                workflow="w",
                endpoint=harness.endpoint,
                payload=json.dumps({}).encode(),
                flow_control_key="a b",
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == ["flow_control_key"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[targets."a:1"]\nmax_rate = -1\n', 'targets."a:1".max_rate: must be a number'),
        ('[targets."a:1"]\nmax_in_flight = 0\n', 'targets."a:1".max_in_flight: must be a whole number'),
        ('[flow_control."k"]\nburst = 0\nmax_rate = 1\n', 'flow_control."k".burst: must be a whole number'),
        ('[flow_control."k"]\nmax_inflight = 3\n', 'flow_control."k".max_inflight: unknown key'),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "failhook.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings({"insecure": True}, env={}, config_file=path)
    assert f"{path}: {message}" in str(caught.value), caught.value


def test_limits_are_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "failhook.toml"
    path.write_text(
        '[targets."pay:1"]\nserver_name = "pay"\nmax_in_flight = 20\nmax_rate = 50.0\nburst = 10\n'
        '[flow_control."tenant-acme"]\nmax_in_flight = 5\n'
    )
    settings = load_settings({"insecure": True}, env={}, config_file=path)
    assert settings.runtime.flow_targets == {"pay:1": FlowLimits(max_in_flight=20, max_rate=50.0, burst=10)}
    assert settings.runtime.flow_keys == {"tenant-acme": FlowLimits(max_in_flight=5)}
    assert settings.targets["pay:1"].server_name == "pay"
