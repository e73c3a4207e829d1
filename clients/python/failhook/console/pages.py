"""The read-only pages: the dead-letter queue, one dead letter, runs, one run, the overview.

Each page makes its calls through the orchestrator's public API with the console's client; a
failed call is shown with its status code (see :func:`failhook.console.rendering.render_rpc_error`).
"""

from __future__ import annotations

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from failhook.client import OrchestratorClient

from .filters import FilterError, dead_letter_query, run_query
from .rendering import render, render_rpc_error
from .snapshots import OverviewSnapshots

__all__ = [
    "NOTICES",
    "client_of",
    "dead_letter_page",
    "dead_letters_page",
    "home",
    "overview_page",
    "run_page",
    "runs_page",
]

NOTICES = {
    "resumed": "Resumed: this is the new run, continuing from the failed step.",
    "restarted": "Restarted: this is the new run, from the beginning.",
    "hook-retried": "The failure hook is being delivered again.",
    "deleted": "The dead letter was deleted (its run stays).",
}
"""The messages an action's redirect may ask a page to show (by code, never free text)."""


def client_of(request: Request) -> OrchestratorClient:
    """Return the console's orchestrator client.

    Args:
        request: Any request of the console.

    Returns:
        The client opened at start-up.
    """
    client: OrchestratorClient = request.app.state.client
    return client


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


async def home(request: Request) -> Response:
    """Send the operator to the dead-letter queue."""
    return RedirectResponse("/dead-letters", status_code=303)


async def dead_letters_page(request: Request) -> Response:
    """List dead letters, filtered as the query says, one page at a time."""
    try:
        query = dead_letter_query(request.query_params)
    except FilterError as err:
        return render(request, "dead_letters.html", 400, error=str(err), query=None, entries=[], next_link="")
    try:
        page = await client_of(request).list_dead_letters(
            query.filter, page_size=query.page_size, page_token=query.page_token
        )
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, "List the dead letters")
    return render(
        request,
        "dead_letters.html",
        error=None,
        query=query,
        entries=list(page.dead_letters),
        next_link=query.page_link(page.next_page_token) if page.next_page_token else "",
        notice=_notice(request),
    )


async def dead_letter_page(request: Request) -> Response:
    """Show one dead letter: the failure, its attempts, the hook, the run, the actions."""
    dead_letter_id = request.path_params["dead_letter_id"]
    try:
        entry = await client_of(request).get_dead_letter(dead_letter_id)
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, f"Show dead letter {dead_letter_id}")
    return render(request, "dead_letter.html", entry=entry, notice=_notice(request))


async def runs_page(request: Request) -> Response:
    """List runs, newest first, filtered as the query says."""
    try:
        query = run_query(request.query_params)
    except FilterError as err:
        return render(request, "runs.html", 400, error=str(err), query=None, runs=[], next_link="")
    try:
        page = await client_of(request).list_runs(
            workflow=query.workflow,
            state=query.state,
            created_after=query.created_after,
            created_before=query.created_before,
            page_size=query.page_size,
            page_token=query.page_token,
        )
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, "List the runs")
    return render(
        request,
        "runs.html",
        error=None,
        query=query,
        runs=list(page.runs),
        next_link=query.page_link(page.next_page_token) if page.next_page_token else "",
    )


async def run_page(request: Request) -> Response:
    """Show one run with its steps and their attempts."""
    run_id = request.path_params["run_id"]
    try:
        run = await client_of(request).get_run(run_id)
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, f"Show run {run_id}")
    return render(request, "run.html", run=run, notice=_notice(request))


async def overview_page(request: Request) -> Response:
    """Chart dead letters over the last 24 hours and 7 days, and list the top failing targets."""
    snapshots: OverviewSnapshots = request.app.state.snapshots
    if request.query_params.get("refresh") == "1":
        await snapshots.get(refresh=True)
        return RedirectResponse("/overview", status_code=303)  # so that reloads do not count again
    snapshot = await snapshots.get()
    if isinstance(snapshot.error, grpc.aio.AioRpcError):
        return render_rpc_error(request, snapshot.error, "Count the dead letters")
    if snapshot.error is not None:
        raise snapshot.error
    return render(request, "overview.html", snapshot=snapshot, overview=snapshot.overview)
