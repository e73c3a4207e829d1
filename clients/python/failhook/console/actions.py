"""The dead-letter actions: retry the hook, resume (with an edited payload), restart, delete.

Each action has a confirmation page (``GET /dead-letters/{id}/{action}``) that says what will
happen and holds the form; only its ``POST`` acts, and only with the session's anti-forgery
token (checked by :class:`failhook.console.access.AccessGuard` before this module runs). The
orchestrator's roles apply as to any client: a refusal is shown with its status code.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from failhook.cli.parsing import parse_header, parse_headers
from failhook.client import OrchestratorClient

from .access import form_of
from .pages import client_of
from .rendering import render, render_rpc_error, unknown_action

__all__ = ["ACTIONS", "Action", "confirm_page", "perform"]


class FormError(ValueError):
    """A submitted field cannot be used; the confirmation page shows it again with the message."""


@dataclass(frozen=True)
class Action:
    """One dead-letter action.

    Attributes:
        title: The button's and the confirmation page's title.
        explanation: What happens, in a sentence, shown before confirming.
        run: Perform it: given the client, the entry's id and the form, return where to go next.
        danger: Whether the button is drawn as destructive.
    """

    title: str
    explanation: str
    run: Callable[[OrchestratorClient, str, dict[str, str]], Awaitable[str]]
    danger: bool = False


def _run_link(run_id: str, notice: str) -> str:
    return f"/runs/{quote(run_id, safe='')}?notice={notice}"


def _headers(text: str) -> dict[str, str]:
    try:
        return parse_headers(parse_header(line.strip()) for line in text.splitlines() if line.strip())
    except argparse.ArgumentTypeError as err:
        raise FormError(f"headers: {err}") from None


async def _resume(client: OrchestratorClient, dead_letter_id: str, form: dict[str, str]) -> str:
    payload: bytes | None = None
    if form.get("edit_payload") == "yes":
        # Browsers send a textarea's line breaks as CRLF; keep what the operator typed.
        payload = form.get("payload", "").replace("\r\n", "\n").encode("utf-8")
    headers = _headers(form.get("headers", ""))
    run = await client.resume_run(dead_letter_id, payload=payload, headers=headers)
    return _run_link(run.run_id, "resumed")


async def _restart(client: OrchestratorClient, dead_letter_id: str, form: dict[str, str]) -> str:
    run = await client.restart_run(dead_letter_id)
    return _run_link(run.run_id, "restarted")


async def _retry_hook(client: OrchestratorClient, dead_letter_id: str, form: dict[str, str]) -> str:
    await client.retry_failure_hook(dead_letter_id)
    return f"/dead-letters/{quote(dead_letter_id, safe='')}?notice=hook-retried"


async def _delete(client: OrchestratorClient, dead_letter_id: str, form: dict[str, str]) -> str:
    await client.delete_dead_letter(dead_letter_id)
    return "/dead-letters?notice=deleted"


ACTIONS: dict[str, Action] = {
    "retry-hook": Action(
        "Retry the failure hook",
        "The orchestrator delivers the failure hook again, with the same idempotency key. "
        "Allowed only when its delivery failed.",
        _retry_hook,
    ),
    "resume": Action(
        "Resume the run",
        "A new run continues from the step that failed; the completed steps are kept and not "
        "executed again. The dead letter is removed.",
        _resume,
    ),
    "restart": Action(
        "Restart the run",
        "A new run executes the workflow again from its first step, with the same payload. "
        "The dead letter is removed.",
        _restart,
    ),
    "delete": Action(
        "Delete the dead letter",
        "The entry is removed for good; its run stays, dead-lettered. This cannot be undone.",
        _delete,
        danger=True,
    ),
}
"""The actions by the name their URLs use."""


async def _confirmation(
    request: Request, name: str, status_code: int = 200, error: str | None = None
) -> Response:
    dead_letter_id = request.path_params["dead_letter_id"]
    try:
        entry = await client_of(request).get_dead_letter(dead_letter_id)
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, f"Show dead letter {dead_letter_id}")
    return render(
        request,
        "confirm.html",
        status_code,
        entry=entry,
        name=name,
        action=ACTIONS[name],
        error=error,
        form=form_of(request),
    )


async def confirm_page(request: Request) -> Response:
    """Show what an action will do, with the form that does it."""
    name = request.path_params["action"]
    if name not in ACTIONS:
        return unknown_action(request, "Act on a dead letter", name)
    return await _confirmation(request, name)


async def perform(request: Request) -> Response:
    """Perform a confirmed action, then go to its result (the new run, the entry or the list)."""
    name = request.path_params["action"]
    action = ACTIONS.get(name)
    if action is None:
        return unknown_action(request, "Act on a dead letter", name)
    dead_letter_id = request.path_params["dead_letter_id"]
    try:
        target = await action.run(client_of(request), dead_letter_id, dict(form_of(request)))
    except FormError as err:
        return await _confirmation(request, name, 400, str(err))
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, f"{action.title} ({dead_letter_id})")
    return RedirectResponse(target, status_code=303)
