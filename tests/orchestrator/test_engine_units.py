"""Unit tests of the pure parts: state machine, retry policy, decisions, tokens, settings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from failhook_orchestrator.api.errors import ApiError
from failhook_orchestrator.api.pagination import page_size
from failhook_orchestrator.config import ConfigError, load_settings
from failhook_orchestrator.engine.decisions import Next, apply_outcome
from failhook_orchestrator.engine.model import FailureReason, Run
from failhook_orchestrator.engine.outcomes import RunCompleted, SleepRequested, StepCompleted, StepErrored
from failhook_orchestrator.engine.policy import RetryPolicy
from failhook_orchestrator.engine.states import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransitionError,
    RunState,
    check_transition,
)
from failhook_orchestrator.telemetry.setup import build_providers


def _run(policy: RetryPolicy | None = None) -> Run:
    return Run(
        run_id="r",
        workflow="w",
        state=RunState.PENDING,
        endpoint="localhost:1",
        failure_hook="",
        payload=b"",
        headers={},
        retry_policy=policy or RetryPolicy(),
        create_time=0,
        update_time=0,
    )


def test_transition_table() -> None:
    assert {RunState.SUCCEEDED, RunState.DEAD_LETTERED, RunState.CANCELED} == TERMINAL_STATES
    assert TRANSITIONS[RunState.FAILED] == {RunState.DEAD_LETTERED}  # a failing run cannot be canceled
    for state in (RunState.PENDING, RunState.RUNNING, RunState.SLEEPING):
        assert RunState.CANCELED in TRANSITIONS[state]
    with pytest.raises(IllegalTransitionError, match="SUCCEEDED to RUNNING"):
        check_transition(RunState.SUCCEEDED, RunState.RUNNING)


@given(
    initial=st.floats(0, 100),
    multiplier=st.floats(1, 10),
    cap=st.floats(0, 1000),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 50),
    seed=st.integers(),
)
def test_backoff_is_capped_and_jittered_downwards(
    initial: float, multiplier: float, cap: float, jitter: float, attempt: int, seed: int
) -> None:
    cap = max(cap, initial)
    policy = RetryPolicy(
        initial_backoff=initial, backoff_multiplier=multiplier, max_backoff=cap, jitter=jitter
    )
    base = min(cap, initial * multiplier ** (attempt - 1))
    delay = policy.backoff(attempt, random.Random(seed))
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9
    assert delay <= cap + 1e-9


@given(failures=st.integers(0, 10), max_attempts=st.integers(1, 6))
def test_attempts_never_exceed_the_policy(failures: int, max_attempts: int) -> None:
    run = _run(RetryPolicy(max_attempts=max_attempts, initial_backoff=0, max_backoff=0))
    for i in range(failures):
        decision = apply_outcome(
            run, StepErrored(status_code=14, message="down"), start_time=i, end_time=i + 1
        )
        if decision.next is Next.FAILED:
            break
    if failures >= max_attempts:
        assert run.state is RunState.FAILED and run.failure is not None
        assert run.failure.reason is FailureReason.ATTEMPTS_EXHAUSTED
        assert len(run.failure.attempts) == max_attempts
    else:
        assert run.state is (RunState.RUNNING if failures else RunState.PENDING)
        assert len(run.pending_attempts) == failures
        done = apply_outcome(run, StepCompleted("a", b"1"), start_time=100, end_time=101)
        assert done.next is Next.DISPATCH and done.new_step is not None
        assert len(done.new_step.attempts) == failures and run.pending_attempts == []


def test_decisions_for_each_outcome() -> None:
    run = _run()
    assert apply_outcome(run, StepCompleted("a", b"x"), start_time=0, end_time=5).next is Next.DISPATCH
    sleep = apply_outcome(run, SleepRequested("nap", 1_000), start_time=5, end_time=10)
    assert sleep.next is Next.WAIT and run.state is RunState.SLEEPING and run.due_time == 1_010
    assert apply_outcome(run, RunCompleted(b"out"), start_time=2_000, end_time=2_001).next is Next.SUCCEEDED
    assert run.state.name == "SUCCEEDED" and run.output == b"out" and run.finish_time == 2_001

    retry_after = _run()
    decision = apply_outcome(
        retry_after, StepErrored(14, "busy", retry_after_us=7_000_000), start_time=0, end_time=1
    )
    assert decision.next is Next.WAIT and retry_after.due_time == 7_000_001

    non_retryable = _run()
    apply_outcome(non_retryable, StepErrored(3, "bad input"), start_time=0, end_time=1)
    assert non_retryable.failure is not None and non_retryable.failure.reason is FailureReason.NON_RETRYABLE

    mismatch = _run()
    apply_outcome(mismatch, StepCompleted("a", b""), start_time=0, end_time=1)
    apply_outcome(mismatch, StepCompleted("a", b""), start_time=1, end_time=2)
    assert mismatch.failure is not None and mismatch.failure.reason is FailureReason.HISTORY_MISMATCH
    assert "already completed" in mismatch.failure.last.message


def test_page_size_rules() -> None:
    assert (page_size(0), page_size(10), page_size(10**6)) == (50, 10, 1000)
    with pytest.raises(ApiError, match="page_size"):
        page_size(-1)


def test_settings_precedence_and_errors(tmp_path: Path) -> None:
    config = tmp_path / "f.toml"
    config.write_text('listen = "127.0.0.1:1"\ngrace_period = 3\n[step_policy]\nmax_attempts = 7\n')
    settings = load_settings(
        {"listen": "127.0.0.1:3", "insecure": True},
        env={"FAILHOOK_LISTEN": "127.0.0.1:2", "FAILHOOK_GRACE_PERIOD": "4"},
        config_file=config,
    )
    assert settings.listen == "127.0.0.1:3" and settings.grace_period == 4.0
    assert settings.step_policy.max_attempts == 7 and settings.step_policy.initial_backoff == 1.0
    with pytest.raises(ConfigError, match="--tls-ca"):
        load_settings({}, env={})
    with pytest.raises(ConfigError, match="grace_period"):
        load_settings({"insecure": True}, env={"FAILHOOK_GRACE_PERIOD": "soon"})
    config.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings({"insecure": True}, env={}, config_file=config)


def test_telemetry_samples_nothing_unless_something_is_exported() -> None:
    quiet, _ = build_providers("failhook", {})
    assert quiet.sampler is ALWAYS_OFF  # ids exist, nothing is recorded
    console, _ = build_providers("failhook", {"OTEL_TRACES_EXPORTER": "console"})
    assert console.sampler is not ALWAYS_OFF
    otlp, _ = build_providers("failhook", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert otlp.sampler is not ALWAYS_OFF
    assert otlp.resource.attributes["service.name"] == "failhook"
    for provider in (quiet, console, otlp):
        provider.shutdown()


def test_telemetry_measures_nothing_unless_metrics_are_exported() -> None:
    _, quiet = build_providers("failhook", {})
    assert isinstance(quiet, NoOpMeterProvider)  # no reader: nothing to aggregate for
    _, console = build_providers("failhook", {"OTEL_METRICS_EXPORTER": "console"})
    assert isinstance(console, MeterProvider)
    console.shutdown()
