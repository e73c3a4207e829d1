"""The contract holds the names DESIGN.md fixes, and every element is documented."""

from __future__ import annotations

import importlib.resources
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from grpc_tools import protoc

from failhook.v1 import (
    dead_letter_service_pb2,
    failure_hook_pb2,
    run_pb2,
    target_service_pb2,
    workflow_endpoint_pb2,
    workflow_service_pb2,
)

FILES = [
    run_pb2,
    workflow_service_pb2,
    workflow_endpoint_pb2,
    failure_hook_pb2,
    dead_letter_service_pb2,
    target_service_pb2,
]
SERVICES = {
    "WorkflowService": {"StartRun", "GetRun", "ListRuns", "CancelRun"},
    "WorkflowEndpoint": {"RunStep"},
    "FailureHook": {"OnWorkflowFailure"},
    "DeadLetterService": {
        "ListDeadLetters",
        "GetDeadLetter",
        "RestartRun",
        "ResumeRun",
        "RetryFailureHook",
        "DeleteDeadLetter",
    },
    "TargetService": {"ListTargets", "GetTarget", "PauseTarget", "ResumeTarget"},
}
FIELDS = {
    "StartRunRequest": [
        "workflow",
        "endpoint",
        "failure_hook",
        "payload",
        "headers",
        "retry_policy",
        "run_id",
    ],
    "RunStepRequest": ["context", "completed_steps", "attempt"],
    "RunContext": ["workflow_run_id", "workflow", "url", "request_payload", "headers"],
    "StepResult": ["name", "output"],
    "RunStepResponse": ["step", "run_output", "sleep"],
    "OnWorkflowFailureRequest": [
        "context",
        "fail_status",
        "fail_response",
        "fail_headers",
        "failure",
        "idempotency_key",
    ],
    "OnWorkflowFailureResponse": ["result"],
    "SleepRequest": ["duration"],
    "WorkflowRun": ["run_id", "workflow", "state", "park_reason", "park_time"],
    "DeadLetter": ["dead_letter_id", "run", "failure", "hook"],
    "FailureHookOutcome": ["state", "attempts", "last_error", "result"],
    "RetryPolicy": ["max_attempts", "initial_backoff", "backoff_multiplier", "max_backoff"],
    "GetRunRequest": ["run_id"],
    "CancelRunRequest": ["run_id"],
    "GetDeadLetterRequest": ["dead_letter_id"],
    "RestartRunRequest": ["dead_letter_id"],
    "ResumeRunRequest": ["dead_letter_id"],
    "RetryFailureHookRequest": ["dead_letter_id"],
    "DeleteDeadLetterRequest": ["dead_letter_id"],
    "ListDeadLettersRequest": ["page_size", "page_token", "workflow"],
    "ListDeadLettersResponse": ["dead_letters", "next_page_token"],
}
FIXED_NUMBERS = {
    "StartRunRequest": {
        "workflow": 1,
        "endpoint": 2,
        "failure_hook": 3,
        "payload": 4,
        "headers": 5,
        "retry_policy": 6,
        "run_id": 7,
    },
    "OnWorkflowFailureRequest": {
        "context": 1,
        "fail_status": 2,
        "fail_response": 3,
        "fail_headers": 4,
        "failure": 5,
    },
    "RunStepResponse": {"step": 1, "run_output": 2, "sleep": 3},
}
ENUMS = {
    "RunState": [
        "RUN_STATE_UNSPECIFIED",
        "RUN_STATE_PENDING",
        "RUN_STATE_RUNNING",
        "RUN_STATE_SLEEPING",
        "RUN_STATE_SUCCEEDED",
        "RUN_STATE_FAILED",
        "RUN_STATE_DEAD_LETTERED",
        "RUN_STATE_CANCELED",
        "RUN_STATE_PARKED",
    ],
    "HookState": [
        "HOOK_STATE_UNSPECIFIED",
        "HOOK_STATE_PENDING",
        "HOOK_STATE_SUCCEEDED",
        "HOOK_STATE_FAILED",
    ],
}


def _messages() -> dict[str, object]:
    found: dict[str, object] = {}
    for module in FILES:
        found.update(module.DESCRIPTOR.message_types_by_name)
    return found


def test_package_and_services() -> None:
    services = {}
    for module in FILES:
        assert module.DESCRIPTOR.package == "failhook.v1"
        services.update(module.DESCRIPTOR.services_by_name)
    for name, rpcs in SERVICES.items():
        assert name in services, name
        assert rpcs <= {m.name for m in services[name].methods}, name


def test_fixed_messages_and_fields() -> None:
    messages = _messages()
    for name, fields in FIELDS.items():
        assert name in messages, name
        assert set(fields) <= set(messages[name].fields_by_name), name  # type: ignore[attr-defined]
    for name, numbers in FIXED_NUMBERS.items():
        by_name = messages[name].fields_by_name  # type: ignore[attr-defined]
        assert {f: by_name[f].number for f in numbers} == numbers
    assert "StepFailure" in messages


def test_enums_start_unspecified() -> None:
    enums = {}
    for module in FILES:
        enums.update(module.DESCRIPTOR.enum_types_by_name)
    for name, values in ENUMS.items():
        assert [v.name for v in enums[name].values] == values
    for enum in enums.values():
        assert enum.values[0].number == 0 and enum.values[0].name.endswith("_UNSPECIFIED")


def _undocumented(file: FileDescriptor) -> list[str]:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)  # the generated descriptors carry no comments: compile them again
    documented = {tuple(loc.path) for loc in _source_info(file).location if loc.leading_comments.strip()}
    missing = []
    for i, message in enumerate(proto.message_type):
        if (4, i) not in documented:
            missing.append(message.name)
        missing += [
            f"{message.name}.{f.name}" for j, f in enumerate(message.field) if (4, i, 2, j) not in documented
        ]
    for i, service in enumerate(proto.service):
        if (6, i) not in documented:
            missing.append(service.name)
        missing += [
            f"{service.name}.{m.name}" for j, m in enumerate(service.method) if (6, i, 2, j) not in documented
        ]
    for i, enum in enumerate(proto.enum_type):
        if (5, i) not in documented:
            missing.append(enum.name)
        missing += [v.name for j, v in enumerate(enum.value) if (5, i, 2, j) not in documented]
    return missing


def _source_info(file: FileDescriptor) -> descriptor_pb2.SourceCodeInfo:
    # The same compiler as `make generate`, asked to keep the comments.
    root = Path(__file__).resolve().parents[2] / "proto"
    include = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.bin"
        code = protoc.main(
            [
                "protoc",
                f"-I{root}",
                f"-I{include}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                file.name,
            ]
        )
        assert code == 0
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return descriptor_set.file[0].source_code_info


def test_every_element_is_commented() -> None:
    for module in FILES:
        assert _undocumented(module.DESCRIPTOR) == [], module.DESCRIPTOR.name
