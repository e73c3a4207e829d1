"""The API on a server: its interceptors, its servicers and what they share (one place for the server).

``server.py`` calls :func:`interceptors` when it makes the gRPC server and :func:`add_services`
once the engine is ready; everything the API needs from the settings is read here.
"""

from __future__ import annotations

import hashlib
from typing import Any

import grpc

from failhook.v1 import (
    dead_letter_service_pb2,
    dead_letter_service_pb2_grpc,
    target_service_pb2,
    target_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from failhook_orchestrator import wire
from failhook_orchestrator.config import Settings
from failhook_orchestrator.engine.bulk_jobs import BulkJobRunner
from failhook_orchestrator.engine.service import Engine
from failhook_orchestrator.engine.target_control import TargetControl
from failhook_orchestrator.store.secrets import shared_secret

from .dead_letter_service import DeadLetterServicer
from .decoding import RequestDecodingInterceptor
from .pagination import PageTokens
from .shared import ApiShared
from .target_service import TargetServicer
from .validation import Limits
from .workflow_service import WorkflowServicer

__all__ = ["add_services", "interceptors", "page_token_key"]

_SERVICES = (
    workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
    dead_letter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"],
    target_service_pb2.DESCRIPTOR.services_by_name["TargetService"],
)


def interceptors() -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """The API's server interceptors, to come after tracing and authorization."""
    return [RequestDecodingInterceptor.for_services(*_SERVICES)]


async def page_token_key(settings: Settings) -> bytes:
    """The HMAC key of page tokens: from ``page_token_secret``, else the database's shared one."""
    if settings.api.page_token_secret:
        return hashlib.sha256(b"failhook page tokens\0" + settings.api.page_token_secret.encode()).digest()
    return await shared_secret(settings.database.url, "page_token_key")


async def add_services(
    server: grpc.aio.Server,
    engine: Engine,
    targets: TargetControl,
    settings: Settings,
    bulk_jobs: BulkJobRunner,
) -> None:
    """Add WorkflowService and DeadLetterService (served by ``engine`` and ``bulk_jobs``) and
    TargetService to ``server``."""
    tokens = PageTokens(await page_token_key(settings))
    shared = ApiShared(
        limits=Limits(settings.api.max_payload_bytes),
        default_policy=settings.step_policy,
        tokens=tokens,
        reading=wire.Reading(sensitive_headers=frozenset(settings.api.sensitive_headers)),
        default_execution_timeout_us=round(settings.api.default_execution_timeout_seconds * 1_000_000)
        or None,
    )
    workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(engine, shared), server)
    dead_letter_service_pb2_grpc.add_DeadLetterServiceServicer_to_server(
        DeadLetterServicer(engine, shared, bulk_jobs), server
    )
    target_service_pb2_grpc.add_TargetServiceServicer_to_server(TargetServicer(targets, tokens), server)
