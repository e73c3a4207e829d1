"""The targets pages: every gRPC target runs call, with its circuit breaker; pause and resume.

``GET /targets`` lists them (``ListTargets``, filtered by breaker state and pause), ``GET
/target?name=HOST:PORT`` shows one (``GetTarget``; a query parameter, since a target may hold
any character). Pausing and resuming each have a confirmation page holding the form (the reason
and duration of a pause, the release rate of a resume); only its ``POST`` acts, with the
session's anti-forgery token. Looking needs the ``read`` role, acting ``operate``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from urllib.parse import urlencode

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from failhook.cli.parsing import parse_positive_duration
from failhook.cli.targets_cmd import parse_breaker_state, parse_release_rate
from failhook.client import OrchestratorClient
from failhook.v1 import target_service_pb2 as pb
from failhook.v1 import target_service_pb2_grpc as pb_grpc

from .access import form_of
from .filters import FilterError, page_size_of, values_of
from .pages import client_of
from .rendering import render, render_rpc_error, unknown_action

__all__ = ["perform_target_action", "target_action_page", "target_page", "targets_page"]

NOTICES = {
    "paused": "Paused: runs bound for this target wait (parked) until it is resumed.",
    "resumed": "Resumed: the parked runs are released at the release rate.",
}
"""The messages a target action's redirect may ask the target's page to show."""

TITLES = {"pause": "Pause the target", "resume": "Resume the target"}
"""The actions by the name their URLs use."""


def _stub(client: OrchestratorClient) -> pb_grpc.TargetServiceAsyncStub:
    stub: pb_grpc.TargetServiceAsyncStub = pb_grpc.TargetServiceStub(client.channel)
    return stub


def _link(name: str, **extra: str) -> str:
    return "/target?" + urlencode({"name": name, **extra})


def _list_request(params: QueryParams) -> pb.ListTargetsRequest:
    try:
        states = [parse_breaker_state(value) for value in values_of(params, "state")]
    except argparse.ArgumentTypeError as err:
        raise FilterError("state", str(err)) from None
    return pb.ListTargetsRequest(
        state=states,
        paused_only=params.get("paused") == "yes",
        page_size=page_size_of(params),
        page_token=params.get("page_token", ""),
    )


async def targets_page(request: Request) -> Response:
    """List the targets with their breakers."""
    params = request.query_params
    form = {name: params.getlist(name) for name in ("state", "paused", "page_size")}
    try:
        listing = _list_request(params)
    except FilterError as err:
        return render(request, "targets.html", 400, error=str(err), targets=[], form=form, next_link="")
    try:
        page = await _stub(client_of(request)).ListTargets(listing, timeout=30)
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, "List the targets")
    pairs = [(name, value) for name, values in form.items() for value in values if value]
    next_link = (
        "?" + urlencode([*pairs, ("page_token", page.next_page_token)]) if page.next_page_token else ""
    )
    return render(
        request,
        "targets.html",
        error=None,
        targets=list(page.targets),
        form=form,
        first_link="?" + urlencode(pairs),
        next_link=next_link,
    )


async def _get(request: Request, name: str) -> pb.Target:
    response = await _stub(client_of(request)).GetTarget(pb.GetTargetRequest(target=name), timeout=30)
    return response.target


async def target_page(request: Request) -> Response:
    """Show one target: its breaker, its pause, its counters, and the pause/resume buttons."""
    name = request.query_params.get("name", "")
    try:
        target = await _get(request, name)
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, f"Show target {name}")
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return render(request, "target.html", target=target, notice=notice)


async def _confirmation(request: Request, action: str, name: str, status: int, error: str | None) -> Response:
    try:
        target = await _get(request, name)
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, f"Show target {name}")
    return render(
        request,
        "target_confirm.html",
        status,
        target=target,
        action=action,
        title=TITLES[action],
        error=error,
        form=form_of(request),
    )


async def target_action_page(request: Request) -> Response:
    """Show what pausing or resuming does, with the form that does it."""
    action = request.path_params["action"]
    if action not in TITLES:
        return unknown_action(request, "Act on a target", action)
    return await _confirmation(request, action, request.query_params.get("name", ""), 200, None)


def _pause_request(name: str, fields: dict[str, str]) -> pb.PauseTargetRequest:
    request = pb.PauseTargetRequest(target=name, reason=fields.get("reason", "").strip())
    duration = fields.get("for", "").strip()
    if duration:
        try:
            length = parse_positive_duration(duration)
        except argparse.ArgumentTypeError as err:
            raise FilterError("for", str(err)) from None
        until = Timestamp()
        until.FromDatetime(datetime.now(UTC) + length)
        request.until.CopyFrom(until)
    return request


def _resume_request(name: str, fields: dict[str, str]) -> pb.ResumeTargetRequest:
    request = pb.ResumeTargetRequest(target=name)
    rate = fields.get("rate", "").strip()
    if rate:
        try:
            request.release_rate = parse_release_rate(rate)
        except argparse.ArgumentTypeError as err:
            raise FilterError("rate", str(err)) from None
    return request


async def perform_target_action(request: Request) -> Response:
    """Pause or resume a target as confirmed, then show it."""
    action = request.path_params["action"]
    if action not in TITLES:
        return unknown_action(request, "Act on a target", action)
    fields = dict(form_of(request))
    name = fields.get("name", "")
    stub = _stub(client_of(request))
    try:
        if action == "pause":
            await stub.PauseTarget(_pause_request(name, fields), timeout=30)
        else:
            await stub.ResumeTarget(_resume_request(name, fields), timeout=30)
    except FilterError as err:
        return await _confirmation(request, action, name, 400, str(err))
    except grpc.aio.AioRpcError as err:
        return render_rpc_error(request, err, f"{TITLES[action]} {name}")
    return RedirectResponse(_link(name, notice="paused" if action == "pause" else "resumed"), status_code=303)
