"""The orchestrator process: store, scheduler, servicers, health and reflection on one server.

Shutdown is graceful: health turns NOT_SERVING first (load balancers stop sending), the server
stops accepting and lets in-flight calls finish within the grace period, the scheduler lets
in-flight steps finish and releases its leases, then the store flushes its last writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from sqlalchemy.engine import make_url

from failhook import tls
from failhook.v1 import (
    dead_letter_service_pb2,
    target_service_pb2,
    workflow_service_pb2,
)

from .api import registration as api
from .config import Settings
from .dispatch import ChannelPool, GrpcDispatcher
from .dispatch.channels import ChannelFactory
from .engine.bulk_jobs import BulkJobRunner, BulkOperation, EntryError
from .engine.model import now_us
from .engine.ports import DeadLetterQuery
from .engine.runtime import Runtime
from .engine.service import Engine
from .engine.targets import TargetRegistry
from .security import AuthorizationInterceptor, RoleMap
from .security.authz import audit_log
from .store import SqlRunStore, open_store
from .store.bulk_operations import SqlBulkOperationStore
from .telemetry import Metrics

__all__ = ["INSECURE_HEALTH_SERVICE", "Orchestrator", "serve"]

log = logging.getLogger("failhook.orchestrator")

#: Reported SERVING in health on a plaintext server, so probes and dashboards can see it.
INSECURE_HEALTH_SERVICE = "failhook.insecure-plaintext-dev-mode"
SERVICE_NAMES = (
    workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    dead_letter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"].full_name,
    target_service_pb2.DESCRIPTOR.services_by_name["TargetService"].full_name,
)
_PURGE_INTERVAL_SECONDS = 3600.0
_DEPTH_INTERVAL_SECONDS = 15.0
#: A RunStepRequest carries every completed step's output, so it outgrows gRPC's 4 MiB default;
#: trailers carry the StepError of a failed step.
#: Reconnects after an endpoint's outage are tried at most a second apart (gRPC's default grows to
#: 120 s, so a recovered endpoint was reached only after its runs' retries were spent).
_OUTBOUND_LIMITS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_metadata_size", 64 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class Orchestrator:
    """One orchestrator: call :meth:`start`, then :meth:`stop` (or use :func:`serve`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self._server: grpc.aio.Server | None = None
        # grpc_health's type stubs do not know its asyncio servicer.
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._store: SqlRunStore | None = None
        self._pool: ChannelPool | None = None
        self._dispatcher: GrpcDispatcher | None = None
        self._runtime: Runtime | None = None
        self._engine: Engine | None = None
        self._bulk: BulkJobRunner | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._depth_task: asyncio.Task[None] | None = None
        self._dlq_depth: int | None = None
        self._serving = False
        self._health_tasks: set[asyncio.Task[None]] = set()
        # The targets' breakers: [breaker] and [targets."host:port".breaker] (breaker_config.py).
        self.targets = TargetRegistry(settings.breaker.settings, settings.breaker.overrides)

    @property
    def engine(self) -> Engine:
        """The engine (after start)."""
        assert self._engine is not None, "not started"
        return self._engine

    @property
    def bulk_jobs(self) -> BulkJobRunner:
        """The bulk jobs' runner (after start)."""
        assert self._bulk is not None, "not started"
        return self._bulk

    @property
    def store(self) -> SqlRunStore:
        """The store (after start)."""
        assert self._store is not None, "not started"
        return self._store

    async def start(self) -> int:
        """Open the store, recover unfinished runs, and serve; return the bound port."""
        s = self.settings
        if s.insecure:
            log.warning(
                "!!! INSECURE: plaintext gRPC, no client authentication, every caller is admin. "
                "Development only: never expose this orchestrator. !!!"
            )
        self._store = await open_store(
            s.database.url,
            pool_size=s.database.pool_size,
            sqlite_synchronous=s.database.sqlite_synchronous,
        )
        self._store.on_health(lambda _writable: self._refresh_health())
        self._pool = ChannelPool(self._channel_factory())
        self._metrics = Metrics(
            in_flight=lambda: self.engine.runtime.in_flight, dlq_depth=lambda: self._dlq_depth
        )
        self._dispatcher = GrpcDispatcher(self._pool)
        self._runtime = Runtime(self._store, self._dispatcher, s.runtime, self._metrics, targets=self.targets)
        self._runtime.on_loop_died = lambda _name: self._refresh_health()
        self._engine = Engine(self._store, self._runtime)
        await self._runtime.start(steal_leases=self._store.single_node)
        self._bulk = BulkJobRunner(
            SqlBulkOperationStore(self._store),
            self._engine,
            self._runtime.clock,
            owner=self._runtime.owner,
            lease_us=self._runtime.lease_us,
            heartbeat_us=int(s.runtime.heartbeat_seconds * 1_000_000),
            claim_interval_us=int(s.runtime.claim_interval_seconds * 1_000_000),
            audit=_audit_bulk_entry,
        )
        await self._bulk.start(steal_leases=self._store.single_node)

        roles = RoleMap(s.roles) if s.roles else RoleMap.dev_default()
        server = grpc.aio.server(
            # Tracing first, so that refused calls are traced too.
            interceptors=[
                _tracing_server_interceptor(),
                AuthorizationInterceptor(roles, insecure=s.insecure),
                *api.interceptors(),
            ],
            options=[
                *tls.server_options(),
                ("grpc.max_receive_message_length", s.api.max_payload_bytes + 64 * 1024),
            ],
        )
        await api.add_services(server, self._engine, self._runtime.target_control(), s, self._bulk)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        if s.insecure:
            self.port = server.add_insecure_port(s.listen)
        else:
            assert s.tls.ca and s.tls.cert and s.tls.key
            creds = tls.server_credentials(tls.TLSFiles(ca=s.tls.ca, cert=s.tls.cert, key=s.tls.key))
            self.port = server.add_secure_port(s.listen, creds)
        if self.port == 0:
            raise OSError(f"cannot listen on {s.listen}")
        await server.start()
        self._server = server
        self._serving = True
        await self._apply_health()
        if s.insecure:
            await self._health.set(INSECURE_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self._depth_task = asyncio.get_running_loop().create_task(
            self._depth_loop(), name="failhook-dlq-depth"
        )
        # What start-up allocated lives as long as the process: keep it out of the collector's
        # full passes, whose pauses otherwise showed in ListDeadLetters' p99 (bench/README.md).
        gc.collect()
        gc.freeze()
        if s.dlq.retention_days > 0:
            self._purge_task = asyncio.get_running_loop().create_task(
                self._purge_loop(), name="failhook-dlq-retention"
            )
        host = s.listen.rsplit(":", 1)[0]
        log.info(
            "failhook orchestrator listening on %s:%d (%s, database %s)",
            host,
            self.port,
            "PLAINTEXT" if s.insecure else "mTLS",
            _redact(s.database.url),
        )
        return self.port

    def reload_certificates(self) -> None:
        """Pick up rotated certificate files now (SIGHUP).

        The server's own credentials already reload on each new handshake when the files change;
        this also renews the outbound channels, whose client certificate is read when they are made.
        """
        if self._dispatcher is not None:
            self._dispatcher.refresh()
        log.info("certificates reloaded: new outbound connections use the current files")

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully within ``grace`` seconds (default: the configured grace period)."""
        grace = self.settings.grace_period if grace is None else grace
        started = time.monotonic()
        self._serving = False
        await self._health.enter_graceful_shutdown()
        for task in (self._purge_task, self._depth_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            await self._server.stop(grace)
        if self._bulk is not None:
            await self._bulk.stop(max(0.0, grace - (time.monotonic() - started)))
        if self._runtime is not None:
            await self._runtime.stop(max(0.0, grace - (time.monotonic() - started)))
        if self._pool is not None:
            await self._pool.close()
        if self._store is not None:
            await self._store.close()
        log.info("failhook orchestrator stopped in %.2fs", time.monotonic() - started)

    @property
    def healthy(self) -> bool:
        """Serving, the store writable and every background loop alive."""
        return (
            self._serving
            and self._store is not None
            and self._store.writable
            and not (self._runtime is not None and self._runtime.dead_loops)
        )

    def _refresh_health(self) -> None:
        """Re-derive health after the store or a loop changed (called from callbacks)."""
        if self._serving:
            task = asyncio.get_running_loop().create_task(self._apply_health(), name="failhook-health")
            self._health_tasks.add(task)
            task.add_done_callback(self._health_tasks.discard)

    async def _apply_health(self) -> None:
        """NOT_SERVING while the store cannot write or a background loop is dead, else SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    def _channel_factory(self) -> ChannelFactory:
        s = self.settings

        def factory(target: str) -> grpc.aio.Channel:
            override = s.targets.get(target)
            options = [*tls.channel_options(override.server_name if override else None), *_OUTBOUND_LIMITS]
            # No client interceptor: the dispatcher makes the client spans and injects traceparent.
            if s.insecure:
                return grpc.aio.insecure_channel(target, options=options)
            assert s.tls.ca and s.tls.cert and s.tls.key
            files = tls.TLSFiles(ca=(override and override.ca) or s.tls.ca, cert=s.tls.cert, key=s.tls.key)
            return grpc.aio.secure_channel(target, tls.channel_credentials(files), options=options)

        return factory

    async def _depth_loop(self) -> None:
        """Refresh the DLQ depth the metrics report (observable gauges cannot await a query)."""
        while True:
            try:
                self._dlq_depth = await self.store.count_dead_letters(DeadLetterQuery(page_size=1))
            except Exception:
                log.exception("counting the dead letters failed")
            await asyncio.sleep(_DEPTH_INTERVAL_SECONDS)

    async def _purge_loop(self) -> None:
        retention_us = int(self.settings.dlq.retention_days * 86400 * 1_000_000)
        while True:
            try:
                purged = await self.engine.purge_dead_letters(now_us() - retention_us)
                if purged:
                    log.info(
                        "purged %d dead letters older than %s days", purged, self.settings.dlq.retention_days
                    )
            except Exception:
                log.exception("purging old dead letters failed")
            await asyncio.sleep(_PURGE_INTERVAL_SECONDS)


def _audit_bulk_entry(operation: BulkOperation, dead_letter_id: str, error: EntryError | None) -> None:
    """Each entry a bulk job acts on is audited under the identity that started the job."""
    audit_log(
        f"dlq.bulk.{operation.action.name.lower()}",
        operation.created_by,
        operation_id=operation.operation_id,
        dead_letter_id=dead_letter_id,
        outcome="done" if error is None else f"failed: {error.message}",
    )


def _tracing_server_interceptor() -> grpc.aio.ServerInterceptor[Any, Any]:
    """OpenTelemetry's gRPC server interceptor: server spans continuing the caller's traceparent.

    Health checks are left out: probes would only add noise, and the interceptor wraps streaming
    handlers in a way that breaks the health servicer's ``Watch`` (it answered UNKNOWN).
    """
    skip_health = filters.negate(filters.health_check())
    interceptor: grpc.aio.ServerInterceptor[Any, Any] = aio_server_interceptor(filter_=skip_health)  # type: ignore[no-untyped-call]
    return interceptor


def _redact(url: str) -> str:
    """A database URL without its password (secrets never reach the logs)."""
    return make_url(url).render_as_string(hide_password=True)


async def serve(settings: Settings) -> None:
    """Run an orchestrator until SIGTERM or SIGINT, then stop gracefully."""
    orchestrator = Orchestrator(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, orchestrator.reload_certificates)
    await orchestrator.start()
    try:
        await stop.wait()
        log.info("shutdown requested; finishing in-flight work (grace %.1fs)", settings.grace_period)
    finally:
        await orchestrator.stop()
