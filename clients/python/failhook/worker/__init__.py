"""Write durable workflows and typed failure handlers, and serve them to the orchestrator.

::

    from failhook.worker import FailureContext, Worker, WorkflowContext

    worker = Worker(tls=TLSFiles.from_dir(Path("var/certs"), "worker"))

    @worker.workflow("order")
    async def order(ctx: WorkflowContext) -> dict[str, str]:
        charge = await ctx.run("charge", charge_card, ctx.payload)
        await ctx.sleep("cool-off", timedelta(seconds=5))
        return {"charge": charge}

    @order.on_failure
    async def failed(ctx: FailureContext, fail_status: int, fail_response: str,
                     fail_headers: Mapping[str, str]) -> str | None:
        await alert(ctx.workflow_run_id, fail_status, fail_response)
        return "alerted"

    worker.serve("0.0.0.0:50052")

The orchestrator calls ``RunStep`` once per step; the worker replays the workflow function,
answering completed steps from the recorded history, runs the first new step and stops there.
See :mod:`failhook.worker._codec` for how outputs are encoded and :mod:`failhook.worker._errors`
for how exceptions become gRPC statuses.
"""

from failhook.worker._codec import decode_output, encode_output, encode_run_output
from failhook.worker._context import MAX_SLEEP, WorkflowContext
from failhook.worker._errors import (
    MAX_METADATA_BYTES,
    HistoryMismatchError,
    NonRetryableError,
    RetryAfterError,
    StepError,
    StepNotAllowedError,
)
from failhook.worker._failure import FailureContext, FailureHandler
from failhook.worker._idempotency import (
    IdempotencyStore,
    InMemoryIdempotencyStore,
    SQLiteIdempotencyStore,
    idempotent,
)
from failhook.worker._servicers import FailureHookServicer, WorkflowEndpointServicer
from failhook.worker._status import MAX_MESSAGE_BYTES, MAX_RESPONSE_BYTES
from failhook.worker._worker import DEFAULT_MAX_MESSAGE_BYTES, Worker
from failhook.worker._workflow import Workflow

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_SLEEP",
    "FailureContext",
    "FailureHandler",
    "FailureHookServicer",
    "HistoryMismatchError",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "NonRetryableError",
    "RetryAfterError",
    "SQLiteIdempotencyStore",
    "StepError",
    "StepNotAllowedError",
    "Worker",
    "Workflow",
    "WorkflowContext",
    "WorkflowEndpointServicer",
    "decode_output",
    "encode_output",
    "encode_run_output",
    "idempotent",
]
