"""An example worker: an ``order`` workflow whose charge step fails on a zero amount, and its
typed failure handler. Run it next to ``make run`` (it uses the development certificates)::

    .venv/bin/python examples/orders.py

then start runs with the CLI (see the README's walkthrough).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from failhook.tls import TLSFiles
from failhook.worker import FailureContext, NonRetryableError, Worker, WorkflowContext

CERTS = Path("var/certs")
worker = Worker(tls=TLSFiles.from_dir(CERTS, "worker"))
log = logging.getLogger("orders")


def charge_card(payload: bytes) -> str:
    """Pretend to charge a card; a zero amount is refused for good."""
    order = json.loads(payload or b"{}")
    if not order.get("amount"):
        raise NonRetryableError("card declined: amount is zero", response=b'{"reason": "zero amount"}')
    return f"charged {order['amount']}"


@worker.workflow("order")
async def order(ctx: WorkflowContext) -> dict[str, str]:
    """Charge, wait a little, then ship."""
    charge = await ctx.run("charge", charge_card, ctx.payload)
    await ctx.sleep("cool-off", timedelta(seconds=1))
    shipment = await ctx.run("ship", lambda: "shipped")
    return {"charge": charge, "shipment": shipment}


@order.on_failure
async def order_failed(
    ctx: FailureContext, fail_status: int, fail_response: str, fail_headers: Mapping[str, str]
) -> str | None:
    """Called once the run has failed for good, before it moves to the dead-letter queue."""
    log.warning("order %s failed (status %d): %s", ctx.workflow_run_id, fail_status, fail_response)
    return "on-call paged"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    worker.serve("127.0.0.1:50052")
