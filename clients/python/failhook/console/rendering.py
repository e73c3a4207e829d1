"""The templates and the helpers they call (formatting of times, states, codes and bodies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from failhook.cli.output import EMPTY, format_duration, format_time, status_name
from failhook.cli.views import hook_state_name, run_state_name
from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2
from failhook.v1 import target_service_pb2 as target_pb

from . import charts
from .access import CSRF_FIELD, csrf_token_of

__all__ = ["HTTP_STATUS", "TEMPLATES", "body_text", "render", "render_rpc_error", "unknown_action"]

PACKAGE_DIR = Path(__file__).parent

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
"""The HTTP status of a page whose gRPC call failed with a code; 502 for the others."""

_HINTS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.PERMISSION_DENIED: (
        "The orchestrator refused the console's certificate for this call: its identity lacks "
        "the role (read for the pages, operate for the dead-letter actions). Start the console "
        "with an identity that has it (--tls-cert/--tls-key), or ask for the role."
    ),
    grpc.StatusCode.UNAVAILABLE: (
        "The orchestrator cannot be reached: check that it runs, and the console's --target and TLS files."
    ),
    grpc.StatusCode.FAILED_PRECONDITION: "The entry is not in a state that allows this action.",
    grpc.StatusCode.NOT_FOUND: "It may have been removed by another operator or by retention.",
}


def body_text(data: bytes) -> str:
    """Return a payload, output or error body for display: indented when it is JSON.

    Args:
        data: The bytes.

    Returns:
        The text; ``<N bytes, not UTF-8 text>`` when it is binary, :data:`EMPTY` when empty.
    """
    if not data:
        return EMPTY
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, not UTF-8 text>"
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def editable_text(data: bytes) -> str | None:
    """Return a payload as the text an operator edits, or ``None`` when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _path(value: str) -> str:
    return quote(value, safe="")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=format_time,
        duration=format_duration,
        status=status_name,
        run_state=run_state_name,
        hook_state=hook_state_name,
        body=body_text,
        path=_path,
        origin=lambda value: run_pb2.RunOrigin.Name(value).removeprefix("RUN_ORIGIN_"),
        reason=lambda value: run_pb2.FailureReason.Name(value).removeprefix("FAILURE_REASON_"),
        kind=lambda value: run_pb2.StepKind.Name(value).removeprefix("STEP_KIND_"),
        breaker=lambda value: target_pb.BreakerState.Name(value).removeprefix("BREAKER_STATE_"),
        pause_source=lambda value: target_pb.PauseSource.Name(value).removeprefix("PAUSE_SOURCE_").lower(),
    )
    env.globals.update(
        EMPTY=EMPTY,
        CSRF_FIELD=CSRF_FIELD,
        stacked_bars=charts.stacked_bars,
        bar_list=charts.bar_list,
        swatch=charts.swatch,
        timeline=charts.attempt_timeline,
        editable_text=editable_text,
        RUN_STATES=[n.removeprefix("RUN_STATE_") for n in run_pb2.RunState.keys()][1:],  # noqa: SIM118
        HOOK_STATES=[n.removeprefix("HOOK_STATE_") for n in dl_pb.HookState.keys()][1:],  # noqa: SIM118
        STATUS_CODES=[code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK],
        HOOK_FAILED=dl_pb.HOOK_STATE_FAILED,
        BREAKER_STATES=[n.removeprefix("BREAKER_STATE_") for n in target_pb.BreakerState.keys()][1:],  # noqa: SIM118
    )
    return env


TEMPLATES = Jinja2Templates(env=_environment())
"""The console's templates (``templates/``), escaping everything by default."""


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """Render a template with the session's anti-forgery token and the current path.

    Args:
        request: The request.
        template: The template's file name.
        status_code: The HTTP status.
        **context: The template's variables.

    Returns:
        The HTML response.
    """
    context.setdefault("notice", None)
    context.update(csrf_token=csrf_token_of(request), current_path=request.url.path)
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def render_rpc_error(request: Request, error: grpc.aio.AioRpcError, action: str) -> Response:
    """Show a failed call: its status code, the server's message and a hint, never hiding it.

    Args:
        request: The request.
        error: The failed call.
        action: What the console was doing, e.g. ``"Resume the run"``.

    Returns:
        The error page, with the HTTP status matching the gRPC code.
    """
    code: grpc.StatusCode = error.code()
    return render(
        request,
        "error.html",
        HTTP_STATUS.get(code, 502),
        action=action,
        code=code.name,
        details=error.details() or "",
        hint=_HINTS.get(code, ""),
    )


def unknown_action(request: Request, what: str, name: str) -> Response:
    """Show that an action's URL names no action (404).

    Args:
        request: The request.
        what: What the console was asked to do, e.g. ``"Act on a dead letter"``.
        name: The unknown action's name.

    Returns:
        The error page.
    """
    return render(
        request,
        "error.html",
        404,
        action=what,
        code="NOT_FOUND",
        details=f"no action named {name!r}",
        hint="",
    )
