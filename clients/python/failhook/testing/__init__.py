"""Test your workflows and failure handlers against a real orchestrator.

:class:`OrchestratorEnvironment` starts the installed ``failhook-orchestrator`` command as a
subprocess, on a temporary SQLite file with throw-away certificates and mutual TLS, as
Temporal's ``testing`` module starts a local server. Nothing is mocked: your workflow runs step
by step as in production, a failing step is retried (in milliseconds by default) and reaches
your failure handler, and the run lands in the dead-letter queue::

    import pytest
    from failhook.testing import OrchestratorEnvironment
    from failhook.v1 import run_pb2

    from myapp.worker import worker  # your Worker and its workflows


    @pytest.fixture
    async def env():
        async with await OrchestratorEnvironment.start() as env:
            yield env


    async def test_a_declined_order_reaches_its_failure_handler(env):
        async with env.serving(worker) as endpoint:
            run = await env.run_to_end("order", endpoint, payload=b'{"amount": 0}')
        assert run.state == run_pb2.RUN_STATE_DEAD_LETTERED
        assert (await env.dead_letter(run)).hook.result == "on-call paged"

The module needs the orchestrator installed in the environment that runs the tests (next to
``sys.executable`` or on ``PATH``) but does not import it.
"""

from failhook.testing._environment import ENDED_STATES, FAST_RETRIES_CONFIG, OrchestratorEnvironment
from failhook.testing._process import (
    EXECUTABLE_NAME,
    OrchestratorNotFoundError,
    OrchestratorStartError,
    find_orchestrator,
)

__all__ = [
    "ENDED_STATES",
    "EXECUTABLE_NAME",
    "FAST_RETRIES_CONFIG",
    "OrchestratorEnvironment",
    "OrchestratorNotFoundError",
    "OrchestratorStartError",
    "find_orchestrator",
]
