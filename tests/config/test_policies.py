"""``[step_policy]`` and ``[hook_policy]`` obey the rules a request's policy obeys (one source:
``engine/limits.py``): what the API refuses, the config file refuses, naming the same field."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from failhook.v1 import run_pb2
from failhook_orchestrator.api.errors import ApiError
from failhook_orchestrator.api.validation import resolve_policy
from failhook_orchestrator.config import ConfigError
from failhook_orchestrator.engine.policy import DEFAULT_STEP_POLICY

from .conftest import Load

# (TOML line, the same policy as a request, the field both name)
RULES: list[tuple[str, dict[str, Any], str]] = [
    ("max_attempts = 0", {"max_attempts": 0}, "max_attempts"),
    ("max_attempts = 101", {"max_attempts": 101}, "max_attempts"),
    ("max_backoff = 864000.0", {"max_backoff": Duration(seconds=864_000)}, "max_backoff"),
    ("initial_backoff = 400.0", {"initial_backoff": Duration(seconds=400)}, "max_backoff"),  # above max 300
    ("attempt_timeout = 7200.0", {"attempt_timeout": Duration(seconds=7200)}, "attempt_timeout"),
    ("attempt_timeout = 0.0", {"attempt_timeout": Duration()}, "attempt_timeout"),
    ("backoff_multiplier = 0.5", {"backoff_multiplier": 0.5}, "backoff_multiplier"),
    ("jitter = 2.0", {"jitter": 2.0}, "jitter"),
    (
        "non_retryable_codes = [0, 3]",
        {"non_retryable_status_codes": run_pb2.StatusCodeList(codes=[0, 3])},
        "non_retryable",
    ),
]


@pytest.mark.parametrize("table", ["step_policy", "hook_policy"])
@pytest.mark.parametrize(("line", "request_fields", "field"), RULES, ids=[r[0] for r in RULES])
def test_the_file_refuses_what_the_api_refuses(
    load: Load, table: str, line: str, request_fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError, match=f"retry_policy.{field}"):
        resolve_policy("retry_policy", run_pb2.RetryPolicy(**request_fields), DEFAULT_STEP_POLICY)
    with pytest.raises(ConfigError, match=f"{table}.{field}"):
        load(f"[{table}]\n{line}")


def test_policies_load_and_refuse_unknown_or_mistyped_keys(load: Load) -> None:
    settings = load("[step_policy]\nmax_attempts = 6\nmax_backoff = 60\n[hook_policy]\nmax_attempts = 2")
    assert (settings.step_policy.max_attempts, settings.step_policy.max_backoff) == (6, 60.0)
    assert settings.runtime.hook_policy.max_attempts == 2
    for toml, key in [
        ("[step_policy]\nmax_atempts = 6", "unknown setting 'step_policy.max_atempts'"),
        ('[step_policy]\nmax_attempts = "6"', "step_policy.max_attempts"),
        ("[hook_policy]\nnon_retryable_codes = 3", "hook_policy.non_retryable_codes"),
        ("step_policy = 3", "step_policy: must be a table"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load(toml)
