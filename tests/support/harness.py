"""An orchestrator started for real (in this process) with clients over mTLS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from failhook import tls
from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import dead_letter_service_pb2_grpc as dl_grpc
from failhook.v1 import run_pb2
from failhook.v1 import workflow_service_pb2 as ws
from failhook.v1 import workflow_service_pb2_grpc as ws_grpc
from failhook_orchestrator.config import Settings, replace_settings
from failhook_orchestrator.engine.policy import RetryPolicy
from failhook_orchestrator.server import Orchestrator

FAST_STEP_POLICY = RetryPolicy(
    max_attempts=4, initial_backoff=0.01, max_backoff=0.05, jitter=0.0, attempt_timeout=5.0
)
FAST_HOOK_POLICY = RetryPolicy(
    max_attempts=3, initial_backoff=0.01, max_backoff=0.05, jitter=0.0, attempt_timeout=5.0
)


#: Names the tests used before settings had sections, still accepted as overrides.
_OLD_NAMES = {
    "lease_seconds": "runtime_lease_seconds",
    "heartbeat_seconds": "runtime_heartbeat_seconds",
    "claim_interval_seconds": "runtime_claim_interval_seconds",
    "max_concurrent_dispatches": "runtime_max_concurrent_dispatches",
    "dlq_retention_days": "dlq_retention_days",
    "max_payload_bytes": "api_max_payload_bytes",
    "sensitive_headers": "api_sensitive_headers",
    "page_token_secret": "api_page_token_secret",
}


def test_settings(certs: DevCerts, database: str, **overrides: Any) -> Settings:
    """Settings of a fast orchestrator for tests (short leases and backoffs).

    ``overrides`` name settings as flags do (``runtime_lease_seconds=1.0``, ``database=url``),
    or ``step_policy`` / ``hook_policy`` / ``roles`` / ``targets``.
    """
    files = certs.tls_files("orchestrator")
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "database": database,
        "tls_ca": files.ca,
        "tls_cert": files.cert,
        "tls_key": files.key,
        "grace_period": 5.0,
        "runtime_lease_seconds": 3.0,
        "runtime_heartbeat_seconds": 0.5,
        "runtime_claim_interval_seconds": 0.5,
        "step_policy": FAST_STEP_POLICY,
        "hook_policy": FAST_HOOK_POLICY,
        "dlq_retention_days": 0,
    }
    values.update({_OLD_NAMES.get(name, name): value for name, value in overrides.items()})
    return replace_settings(Settings(), **values)


def client_channel(certs: DevCerts, port: int, identity: str = "orchestrator") -> grpc.aio.Channel:
    """An mTLS channel to the orchestrator as ``identity`` (a dev certificate name)."""
    return grpc.aio.secure_channel(
        f"localhost:{port}", tls.channel_credentials(certs.tls_files(identity)), options=tls.channel_options()
    )


@dataclass
class Harness:
    """A started orchestrator with WorkflowService and DeadLetterService clients."""

    orchestrator: Orchestrator
    channel: grpc.aio.Channel
    runs: ws_grpc.WorkflowServiceAsyncStub
    dlq: dl_grpc.DeadLetterServiceAsyncStub
    endpoint: str

    async def start(self, payload: Mapping[str, Any] | None = None, **fields: Any) -> run_pb2.WorkflowRun:
        """StartRun of the scripted workflow with ``payload``; returns the run."""
        fields.setdefault("workflow", "scripted")
        fields.setdefault("endpoint", self.endpoint)
        request = ws.StartRunRequest(payload=json.dumps(dict(payload or {})).encode(), **fields)
        return (await self.runs.StartRun(request)).run

    async def get(self, run_id: str) -> run_pb2.WorkflowRun:
        """GetRun."""
        return (await self.runs.GetRun(ws.GetRunRequest(run_id=run_id))).run

    async def wait(self, run_id: str, states: Iterable[int], timeout: float = 15.0) -> run_pb2.WorkflowRun:
        """Poll GetRun until the run is in one of ``states``."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            run = await self.get(run_id)
            if run.state in wanted:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} stayed {run_pb2.RunState.Name(run.state)}; wanted {wanted}"
                )
            await asyncio.sleep(0.02)

    async def dead_letter(self, dead_letter_id: str) -> dl.DeadLetter:
        """GetDeadLetter."""
        return (
            await self.dlq.GetDeadLetter(dl.GetDeadLetterRequest(dead_letter_id=dead_letter_id))
        ).dead_letter


TERMINAL = (
    run_pb2.RUN_STATE_SUCCEEDED,
    run_pb2.RUN_STATE_DEAD_LETTERED,
    run_pb2.RUN_STATE_CANCELED,
)


@asynccontextmanager
async def started_harness(
    certs: DevCerts, database: str, endpoint: str, **overrides: Any
) -> AsyncIterator[Harness]:
    """Start an orchestrator (mTLS, fast retries) on ``database``; clients use the admin identity."""
    orchestrator = Orchestrator(test_settings(certs, database, **overrides))
    port = await orchestrator.start()
    channel = client_channel(certs, port)
    try:
        yield Harness(
            orchestrator=orchestrator,
            channel=channel,
            runs=ws_grpc.WorkflowServiceStub(channel),
            dlq=dl_grpc.DeadLetterServiceStub(channel),
            endpoint=endpoint,
        )
    finally:
        await channel.close(None)
        await orchestrator.stop(grace=2.0)
