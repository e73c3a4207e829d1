"""``failhook.testing`` itself: finding the command, start-up errors, waiting, stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest

from failhook.testing import (
    OrchestratorEnvironment,
    OrchestratorNotFoundError,
    OrchestratorStartError,
    find_orchestrator,
)
from failhook.v1 import run_pb2
from failhook.worker import Workflow, WorkflowContext

pytestmark = pytest.mark.slow


async def _nap(ctx: WorkflowContext) -> str:
    await ctx.sleep("nap", timedelta(hours=1))
    return "rested"


NAP = Workflow("nap", _nap)


def test_importing_it_does_not_import_the_orchestrator() -> None:
    probe = (
        "import sys, failhook.testing; "
        "print(sorted(m for m in ('failhook_orchestrator', 'sqlalchemy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.strip() == "[]"


def test_a_missing_orchestrator_command_is_named_with_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(OrchestratorNotFoundError) as missing:
        find_orchestrator()
    message = str(missing.value)
    assert "'failhook-orchestrator'" in message
    assert str(tmp_path / "bin" / "python") in message
    assert "PATH" in message
    with pytest.raises(OrchestratorNotFoundError, match="is not an executable file"):
        find_orchestrator(tmp_path / "nowhere")


def test_the_command_is_found_next_to_the_python_running_the_tests() -> None:
    assert find_orchestrator() == Path(sys.executable).with_name("failhook-orchestrator")


async def test_a_failed_start_says_why_with_the_orchestrator_log(tmp_path: Path) -> None:
    with pytest.raises(OrchestratorStartError) as failed:
        await OrchestratorEnvironment.start(tmp_path, config="bogus_setting = 1\n")
    message = str(failed.value)
    assert "exited with status 2" in message
    assert "unknown setting 'bogus_setting'" in message


async def test_runs_are_started_and_waited_for_and_stop_cleans_up() -> None:
    env = await OrchestratorEnvironment.start()
    directory = env.directory
    assert (directory / "failhook.db").exists()
    async with env.serving([NAP]) as endpoint:
        run = await env.start_run("nap", endpoint)
        sleeping = await env.wait_for_end(run.run_id, states={run_pb2.RUN_STATE_SLEEPING})
        assert sleeping.wake_time.seconds > 0

        with pytest.raises(TimeoutError, match=r"is still RUN_STATE_SLEEPING after 0.2 s"):
            await env.wait_for_end(run.run_id, timeout=0.2)
        with pytest.raises(ValueError, match="not dead-lettered"):
            await env.dead_letter(sleeping)
        # The operator identity may not start runs: the environment's roles are the real ones.
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await env.connect("operator").start_run("nap", endpoint)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        canceled = await env.client.cancel_run(run.run_id)
        assert canceled.state == run_pb2.RUN_STATE_CANCELED

    assert await env.stop() == 0
    assert not directory.exists()
    assert await env.stop() == 0


async def test_a_dead_orchestrator_is_reported_with_its_log() -> None:
    async with await OrchestratorEnvironment.start() as env:
        async with env.serving([NAP]) as endpoint:
            run = await env.start_run("nap", endpoint)
            os.kill(env.pid, signal.SIGKILL)

            with pytest.raises(RuntimeError, match=r"exited with status -9(.|\n)*listening on"):
                await env.wait_for_end(run.run_id)
