"""Role-based authorization of the orchestrator's API over real mutual TLS."""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from failhook.certs import OPERATOR_IDENTITY, ORCHESTRATOR_IDENTITY, WORKER_IDENTITY, DevCerts
from failhook.tls import channel_credentials, server_credentials
from failhook.v1 import (
    dead_letter_service_pb2,
    dead_letter_service_pb2_grpc,
    failure_hook_pb2,
    failure_hook_pb2_grpc,
    target_service_pb2,
    workflow_service_pb2,
)
from failhook_orchestrator.security import (
    INSECURE_IDENTITY,
    METHOD_ROLES,
    AuthorizationInterceptor,
    Role,
    RoleMap,
    audit_log,
    caller_identity,
)

from ._support import SERVING, CountingHealth, OpenChannel, Serve, check


class FakeOrchestrator:
    """Stand-in handlers for a few orchestrator methods, recording who ran them."""

    def __init__(self) -> None:
        self.callers: list[tuple[str, str]] = []

    async def restart_run(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self.callers.append(("RestartRun", caller_identity(context)))
        return dead_letter_service_pb2.RestartRunResponse()

    async def list_dead_letters(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self.callers.append(("ListDeadLetters", caller_identity(context)))
        return dead_letter_service_pb2.ListDeadLettersResponse()

    async def on_workflow_failure(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self.callers.append(("OnWorkflowFailure", caller_identity(context)))
        return failure_hook_pb2.OnWorkflowFailureResponse()

    def handlers(self) -> list[grpc.GenericRpcHandler[Any, Any]]:
        dlq = dead_letter_service_pb2
        hook = failure_hook_pb2
        return [
            grpc.method_handlers_generic_handler(
                "failhook.v1.DeadLetterService",
                {
                    "RestartRun": grpc.unary_unary_rpc_method_handler(
                        self.restart_run,
                        request_deserializer=dlq.RestartRunRequest.FromString,
                        response_serializer=dlq.RestartRunResponse.SerializeToString,
                    ),
                    "ListDeadLetters": grpc.unary_unary_rpc_method_handler(
                        self.list_dead_letters,
                        request_deserializer=dlq.ListDeadLettersRequest.FromString,
                        response_serializer=dlq.ListDeadLettersResponse.SerializeToString,
                    ),
                },
            ),
            # Not an orchestrator method: it needs admin.
            grpc.method_handlers_generic_handler(
                "failhook.v1.FailureHook",
                {
                    "OnWorkflowFailure": grpc.unary_unary_rpc_method_handler(
                        self.on_workflow_failure,
                        request_deserializer=hook.OnWorkflowFailureRequest.FromString,
                        response_serializer=hook.OnWorkflowFailureResponse.SerializeToString,
                    )
                },
            ),
        ]


@pytest.fixture
def orchestrator() -> FakeOrchestrator:
    return FakeOrchestrator()


@pytest.fixture
async def authz_port(
    serve: Serve, dev_certs: DevCerts, health: CountingHealth, orchestrator: FakeOrchestrator
) -> int:
    return await serve(
        server_credentials(dev_certs.tls_files("orchestrator")),
        servicer=health,
        interceptors=[AuthorizationInterceptor(RoleMap.dev_default())],
        handlers=orchestrator.handlers(),
    )


def _as(name: str, dev_certs: DevCerts, port: int, open_channel: OpenChannel) -> grpc.aio.Channel:
    return open_channel(port, channel_credentials(dev_certs.tls_files(name)))


async def test_missing_role_is_denied_naming_role_and_identity_before_the_handler(
    authz_port: int,
    dev_certs: DevCerts,
    orchestrator: FakeOrchestrator,
    open_channel: OpenChannel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dlq = dead_letter_service_pb2_grpc.DeadLetterServiceStub(
        _as("worker", dev_certs, authz_port, open_channel)
    )
    caplog.set_level(logging.INFO, logger="failhook.audit")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await dlq.RestartRun(dead_letter_service_pb2.RestartRunRequest(dead_letter_id="dl-1"), timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == (
        f"identity {WORKER_IDENTITY!r} lacks role 'operate' for DeadLetterService.RestartRun"
    )
    assert orchestrator.callers == []
    [record] = [r for r in caplog.records if r.name == "failhook.audit"]
    assert json.loads(record.getMessage()) == {
        "action": "authz.denied",
        "identity": WORKER_IDENTITY,
        "method": "/failhook.v1.DeadLetterService/RestartRun",
        "role": "operate",
    }


async def test_granted_roles_reach_the_handler_with_the_caller_identity(
    authz_port: int, dev_certs: DevCerts, orchestrator: FakeOrchestrator, open_channel: OpenChannel
) -> None:
    worker = dead_letter_service_pb2_grpc.DeadLetterServiceStub(
        _as("worker", dev_certs, authz_port, open_channel)
    )
    operator = dead_letter_service_pb2_grpc.DeadLetterServiceStub(
        _as("operator", dev_certs, authz_port, open_channel)
    )
    admin = dead_letter_service_pb2_grpc.DeadLetterServiceStub(
        _as("orchestrator", dev_certs, authz_port, open_channel)
    )

    await worker.ListDeadLetters(dead_letter_service_pb2.ListDeadLettersRequest(), timeout=5)
    await operator.RestartRun(dead_letter_service_pb2.RestartRunRequest(dead_letter_id="dl-1"), timeout=5)
    await admin.RestartRun(dead_letter_service_pb2.RestartRunRequest(dead_letter_id="dl-2"), timeout=5)

    assert orchestrator.callers == [
        ("ListDeadLetters", WORKER_IDENTITY),
        ("RestartRun", OPERATOR_IDENTITY),
        ("RestartRun", ORCHESTRATOR_IDENTITY),
    ]


async def test_unlisted_failhook_method_needs_admin(
    authz_port: int, dev_certs: DevCerts, orchestrator: FakeOrchestrator, open_channel: OpenChannel
) -> None:
    request = failure_hook_pb2.OnWorkflowFailureRequest()
    operator = failure_hook_pb2_grpc.FailureHookStub(_as("operator", dev_certs, authz_port, open_channel))
    admin = failure_hook_pb2_grpc.FailureHookStub(_as("orchestrator", dev_certs, authz_port, open_channel))

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await operator.OnWorkflowFailure(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "lacks role 'admin' for FailureHook.OnWorkflowFailure" in (info.value.details() or "")
    await admin.OnWorkflowFailure(request, timeout=5)
    assert orchestrator.callers == [("OnWorkflowFailure", ORCHESTRATOR_IDENTITY)]


async def test_health_is_exempt_by_default(
    authz_port: int, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    # The operator has no role for health checks, and needs none.
    assert await check(_as("operator", dev_certs, authz_port, open_channel)) == SERVING
    assert health.callers == [OPERATOR_IDENTITY]


async def test_wildcard_grants_every_authenticated_identity(
    serve: Serve, dev_certs: DevCerts, health: CountingHealth, open_channel: OpenChannel
) -> None:
    interceptor = AuthorizationInterceptor(
        RoleMap({"*": ["read"]}),
        method_roles={"/grpc.health.v1.Health/Check": "read", "/grpc.health.v1.Health/List": "operate"},
        exempt_services=(),
    )
    port = await serve(
        server_credentials(dev_certs.tls_files("orchestrator")), servicer=health, interceptors=[interceptor]
    )
    channel = _as("operator", dev_certs, port, open_channel)

    assert await check(channel) == SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5)
    assert info.value.details() == f"identity {OPERATOR_IDENTITY!r} lacks role 'operate' for Health.List"
    assert health.callers == [OPERATOR_IDENTITY]


async def test_caller_without_identity_is_unauthenticated(
    serve: Serve, dev_certs: DevCerts, orchestrator: FakeOrchestrator, open_channel: OpenChannel
) -> None:
    port = await serve(
        server_credentials(dev_certs.tls_files("orchestrator"), require_client_auth=False),
        interceptors=[AuthorizationInterceptor(RoleMap.dev_default())],
        handlers=orchestrator.handlers(),
    )
    dlq = dead_letter_service_pb2_grpc.DeadLetterServiceStub(
        open_channel(port, grpc.ssl_channel_credentials(root_certificates=dev_certs.ca.read_bytes()))
    )

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await dlq.ListDeadLetters(dead_letter_service_pb2.ListDeadLettersRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert orchestrator.callers == []


async def test_insecure_server_admits_everything_as_insecure_dev(
    serve: Serve, orchestrator: FakeOrchestrator, open_channel: OpenChannel, caplog: pytest.LogCaptureFixture
) -> None:
    interceptor = AuthorizationInterceptor(RoleMap({}), insecure=True)
    assert "INSECURE" in caplog.text
    port = await serve(None, interceptors=[interceptor], handlers=orchestrator.handlers())
    dlq = dead_letter_service_pb2_grpc.DeadLetterServiceStub(open_channel(port, None))

    await dlq.RestartRun(dead_letter_service_pb2.RestartRunRequest(dead_letter_id="dl-1"), timeout=5)
    assert orchestrator.callers == [("RestartRun", INSECURE_IDENTITY)]


def test_method_roles_cover_every_orchestrator_method() -> None:
    services = [
        workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
        dead_letter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"],
        target_service_pb2.DESCRIPTOR.services_by_name["TargetService"],
    ]
    methods = {f"/{service.full_name}/{method.name}" for service in services for method in service.methods}

    assert set(METHOD_ROLES) == methods
    assert METHOD_ROLES["/failhook.v1.WorkflowService/StartRun"] == Role.SUBMIT
    assert METHOD_ROLES["/failhook.v1.WorkflowService/CancelRun"] == Role.SUBMIT
    assert METHOD_ROLES["/failhook.v1.WorkflowService/GetRun"] == Role.READ
    assert METHOD_ROLES["/failhook.v1.WorkflowService/ListRuns"] == Role.READ
    dlq = {m.rpartition("/")[2]: r for m, r in METHOD_ROLES.items() if "DeadLetterService" in m}
    reads = {"ListDeadLetters", "GetDeadLetter", "ListBulkOperations", "GetBulkOperation"}
    assert {m for m, r in dlq.items() if r == Role.READ} == reads
    assert {r for m, r in dlq.items() if m not in reads} == {Role.OPERATE}
    assert dlq["StartBulkOperation"] == dlq["CancelBulkOperation"] == Role.OPERATE
    targets = {m.rpartition("/")[2]: r for m, r in METHOD_ROLES.items() if "TargetService" in m}
    assert targets == {
        "ListTargets": Role.READ,
        "GetTarget": Role.READ,
        "PauseTarget": Role.OPERATE,
        "ResumeTarget": Role.OPERATE,
    }


def test_role_map_grants() -> None:
    roles = RoleMap.dev_default()

    assert roles.roles_for([WORKER_IDENTITY]) == {Role.SUBMIT, Role.READ}
    assert roles.allows([ORCHESTRATOR_IDENTITY], Role.OPERATE)  # admin implies every role
    assert roles.allows([OPERATOR_IDENTITY], Role.OPERATE)
    assert not roles.allows([WORKER_IDENTITY], Role.OPERATE)
    assert not roles.allows(["spiffe://failhook.dev/stranger"], Role.READ)
    # Grants of several identities of one caller add up.
    assert roles.roles_for([WORKER_IDENTITY, OPERATOR_IDENTITY]) == {Role.SUBMIT, Role.READ, Role.OPERATE}


def test_role_map_wildcard_applies_only_to_authenticated_callers() -> None:
    roles = RoleMap({"*": ["read"], "spiffe://x/ops": ["operate"]})

    assert roles.roles_for(["spiffe://x/anyone"]) == {Role.READ}
    assert roles.roles_for(["spiffe://x/ops"]) == {Role.READ, Role.OPERATE}
    assert roles.roles_for([]) == frozenset()


def test_role_map_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        RoleMap({"spiffe://x/a": ["reed"]})
    with pytest.raises(ValueError, match="must be a list"):
        RoleMap({"spiffe://x/a": "read"})


def test_audit_log_writes_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="failhook.audit")

    audit_log("dlq.restart", OPERATOR_IDENTITY, dead_letter_id="dl-1", note='quote " and\nnewline')

    [record] = caplog.records
    assert record.name == "failhook.audit"
    assert "\n" not in record.getMessage()
    assert json.loads(record.getMessage()) == {
        "action": "dlq.restart",
        "identity": OPERATOR_IDENTITY,
        "dead_letter_id": "dl-1",
        "note": 'quote " and\nnewline',
    }
