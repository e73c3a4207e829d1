"""The console's Starlette application: routes, the access guard, the client's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from failhook.client import OrchestratorClient

from . import actions, pages, targets
from .access import AccessGuard, Sessions
from .rendering import PACKAGE_DIR
from .snapshots import OverviewSnapshots
from .stats import DEFAULT_SCAN_LIMIT

__all__ = ["create_app"]


def create_app(
    connect: Callable[[], OrchestratorClient],
    access_token: str,
    *,
    sessions: Sessions | None = None,
    scan_limit: int = DEFAULT_SCAN_LIMIT,
) -> Starlette:
    """Build the console.

    Args:
        connect: Opens the orchestrator client; called once, inside the server's event loop, at
            start-up (the client is closed at shutdown).
        access_token: The token the console's URL carries (see :mod:`failhook.console.access`).
        sessions: The live sessions; a new registry by default.
        scan_limit: The most dead letters the overview reads.

    Returns:
        The ASGI application.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = connect()
        app.state.client = client
        app.state.snapshots = OverviewSnapshots(client, scan_limit)
        try:
            yield
        finally:
            await app.state.snapshots.close()
            await client.close()

    routes = [
        Route("/", pages.home),
        Route("/dead-letters", pages.dead_letters_page),
        Route("/dead-letters/{dead_letter_id}", pages.dead_letter_page),
        Route("/dead-letters/{dead_letter_id}/{action}", actions.confirm_page, methods=["GET"]),
        Route("/dead-letters/{dead_letter_id}/{action}", actions.perform, methods=["POST"]),
        Route("/runs", pages.runs_page),
        Route("/runs/{run_id}", pages.run_page),
        Route("/overview", pages.overview_page),
        Route("/targets", targets.targets_page),
        Route("/target", targets.target_page),
        Route("/target/{action}", targets.target_action_page, methods=["GET"]),
        Route("/target/{action}", targets.perform_target_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static"),
    ]
    middleware = [Middleware(AccessGuard, access_token=access_token, sessions=sessions)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
