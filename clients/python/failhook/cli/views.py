"""Readable views of runs and dead letters: one-line table rows and detailed views."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from failhook.v1 import dead_letter_service_pb2 as dl_pb
from failhook.v1 import run_pb2

from .output import (
    EMPTY,
    clean,
    format_bytes,
    format_duration,
    format_time,
    render_fields,
    render_table,
    status_name,
)

__all__ = [
    "dead_letter_detail",
    "dead_letter_table",
    "failure_detail",
    "hook_state_name",
    "run_detail",
    "run_state_name",
    "run_table",
]

_MESSAGE_WIDTH = 60


def run_state_name(state: run_pb2.RunState.ValueType) -> str:
    """Return a run state without its prefix, e.g. ``DEAD_LETTERED``.

    Args:
        state: The state.

    Returns:
        Its short name.
    """
    return run_pb2.RunState.Name(state).removeprefix("RUN_STATE_")


def hook_state_name(state: dl_pb.HookState.ValueType) -> str:
    """Return a hook state without its prefix, e.g. ``FAILED``.

    Args:
        state: The state.

    Returns:
        Its short name.
    """
    return dl_pb.HookState.Name(state).removeprefix("HOOK_STATE_")


def _step_label(failure: run_pb2.StepFailure) -> str:
    return failure.step_name or f"#{failure.step_index}"


def run_table(runs: Iterable[run_pb2.WorkflowRun]) -> str:
    """Render runs as a table: id, workflow, state, completed steps, origin, created and updated times.

    Args:
        runs: The runs.

    Returns:
        The table.
    """
    rows = [
        (
            run.run_id,
            run.workflow,
            run_state_name(run.state) + (" (cancel requested)" if run.cancel_requested else ""),
            str(run.step_count),
            run_pb2.RunOrigin.Name(run.origin).removeprefix("RUN_ORIGIN_"),
            format_time(run.create_time),
            format_time(run.update_time),
        )
        for run in runs
    ]
    return render_table(("RUN ID", "WORKFLOW", "STATE", "STEPS", "ORIGIN", "CREATED", "UPDATED"), rows)


def dead_letter_table(entries: Iterable[dl_pb.DeadLetter]) -> str:
    """Render dead letters as a table: id, workflow, failed step, status, hook, attempts, time.

    Args:
        entries: The dead letters.

    Returns:
        The table.
    """
    rows = [
        (
            entry.dead_letter_id,
            entry.run.workflow,
            _step_label(entry.failure),
            status_name(entry.failure.status_code),
            hook_state_name(entry.hook.state),
            str(entry.failure.attempt),
            format_time(entry.dead_letter_time),
        )
        for entry in entries
    ]
    headers = ("DEAD LETTER ID", "WORKFLOW", "FAILED STEP", "STATUS", "HOOK", "ATTEMPTS", "DEAD-LETTERED")
    return render_table(headers, rows)


def _attempts_table(attempts: Sequence[run_pb2.StepAttempt], indent: str) -> str:
    rows = [
        (
            str(a.attempt),
            a.step_name,
            f"{status_name(a.status_code)} ({a.status_code})",
            format_time(a.start_time),
            format_duration(a.duration),
            format_duration(a.retry_delay) if a.HasField("retry_delay") else EMPTY,
            clean(a.message, _MESSAGE_WIDTH),
        )
        for a in attempts
    ]
    table = render_table(("ATTEMPT", "STEP", "STATUS", "STARTED", "TOOK", "RETRY AFTER", "MESSAGE"), rows)
    return "\n".join(indent + line for line in table.splitlines())


def _policy_summary(policy: run_pb2.RetryPolicy) -> str:
    parts = [f"{policy.max_attempts} attempts" if policy.HasField("max_attempts") else ""]
    if policy.HasField("initial_backoff"):
        parts.append(f"backoff {format_duration(policy.initial_backoff)}")
    if policy.HasField("backoff_multiplier"):
        parts.append(f"x{policy.backoff_multiplier:g}")
    if policy.HasField("max_backoff"):
        parts.append(f"up to {format_duration(policy.max_backoff)}")
    if policy.HasField("jitter"):
        parts.append(f"jitter {policy.jitter:g}")
    if policy.HasField("attempt_timeout"):
        parts.append(f"timeout {format_duration(policy.attempt_timeout)}")
    if policy.HasField("non_retryable_status_codes"):
        codes = ", ".join(status_name(c) for c in policy.non_retryable_status_codes.codes) or "none"
        parts.append(f"never retried: {codes}")
    return ", ".join(p for p in parts if p)


def failure_detail(failure: run_pb2.StepFailure, indent: int = 2) -> str:
    """Render a step failure: step, reason, status, message, body, trailers and every attempt.

    Args:
        failure: The failure.
        indent: Spaces before each line.

    Returns:
        The lines joined.
    """
    trailers = ", ".join(f"{k}={v}" for k, v in sorted(failure.trailing_metadata.items()))
    fields = [
        ("Step", f"{failure.step_name or EMPTY} (index {failure.step_index})"),
        ("Reason", run_pb2.FailureReason.Name(failure.reason).removeprefix("FAILURE_REASON_")),
        ("Status", f"{status_name(failure.status_code)} ({failure.status_code})"),
        ("Message", clean(failure.message)),
        ("Response", format_bytes(failure.response)),
        ("Trailers", clean(trailers)),
        ("Attempts", str(failure.attempt)),
        ("Failed at", format_time(failure.time)),
    ]
    text = render_fields(fields, indent)
    if failure.attempts:
        text += "\n\n" + _attempts_table(failure.attempts, " " * indent)
    return text


def run_detail(run: run_pb2.WorkflowRun) -> str:
    """Render a run with its steps, pending attempts, failure and output.

    Args:
        run: The run, as ``GetRun`` returns it.

    Returns:
        The lines joined.
    """
    headers = ", ".join(f"{k}={v}" for k, v in sorted(run.headers.items()))
    labels = ", ".join(f"{k}={v}" for k, v in sorted(run.labels.items()))
    optional = {
        "Labels": labels,
        "Parent run": run.parent_run_id,
        "Dead letter": run.dead_letter_id,
        "Finished": format_time(run.finish_time),
        "Next attempt": format_time(run.next_attempt_time),
        "Wakes": format_time(run.wake_time),
    }
    fields = [
        ("Run", run.run_id),
        ("Workflow", run.workflow),
        ("State", run_state_name(run.state) + (" (cancel requested)" if run.cancel_requested else "")),
        ("Origin", run_pb2.RunOrigin.Name(run.origin).removeprefix("RUN_ORIGIN_")),
        ("Labels", clean(labels)),
        ("Parent run", optional["Parent run"]),
        ("Dead letter", optional["Dead letter"]),
        ("Endpoint", run.endpoint),
        ("Failure hook", run.failure_hook),
        ("Created", format_time(run.create_time)),
        ("Updated", format_time(run.update_time)),
        ("Finished", optional["Finished"]),
        ("Next attempt", optional["Next attempt"]),
        ("Wakes", optional["Wakes"]),
        ("Trace id", run.trace_id),
        ("Retry policy", _policy_summary(run.retry_policy)),
        ("Headers", clean(headers)),
        ("Payload", format_bytes(run.payload)),
        ("Output", format_bytes(run.output)),
    ]
    shown = [(label, value) for label, value in fields if optional.get(label, "x") not in ("", EMPTY)]
    sections = [render_fields(shown)]
    if run.steps:
        rows = [
            (
                str(i),
                step.name,
                run_pb2.StepKind.Name(step.kind).removeprefix("STEP_KIND_"),
                str(len(step.attempts) + 1),
                format_time(step.complete_time),
                format_bytes(step.output, _MESSAGE_WIDTH),
            )
            for i, step in enumerate(run.steps)
        ]
        table = render_table(("#", "STEP", "KIND", "ATTEMPTS", "COMPLETED", "OUTPUT"), rows)
        sections.append(
            f"Steps ({len(run.steps)}):\n" + "\n".join("  " + line for line in table.splitlines())
        )
        retried = [(i, step) for i, step in enumerate(run.steps) if step.attempts]
        for i, step in retried:
            sections.append(
                f"Failed attempts of step {i} ({step.name}):\n" + _attempts_table(step.attempts, "  ")
            )
    else:
        sections.append("Steps: none")
    # A failed run's last attempts are its failure's; they are shown there.
    if run.pending_attempts and not run.HasField("failure"):
        sections.append(
            "Failed attempts of the current step:\n" + _attempts_table(run.pending_attempts, "  ")
        )
    if run.HasField("failure"):
        sections.append("Failure:\n" + failure_detail(run.failure))
    return "\n\n".join(sections)


def dead_letter_detail(entry: dl_pb.DeadLetter) -> str:
    """Render a dead letter: the entry, the hook's outcome, the failure, then its run.

    Args:
        entry: The entry, as ``GetDeadLetter`` returns it.

    Returns:
        The lines joined.
    """
    hook = entry.hook
    last_status = (
        f"{status_name(hook.last_status_code)} ({hook.last_status_code})" if hook.attempts else EMPTY
    )
    entry_fields = [
        ("Dead letter", entry.dead_letter_id),
        ("Run", entry.run.run_id),
        ("Workflow", entry.run.workflow),
        ("Dead-lettered", format_time(entry.dead_letter_time)),
        ("Trace id", entry.trace_id),
    ]
    hook_fields = [
        ("State", hook_state_name(hook.state)),
        ("Target", hook.target),
        ("Attempts", str(hook.attempts)),
        ("Last status", last_status),
        ("Last error", clean(hook.last_error)),
        ("Last attempt", format_time(hook.last_attempt_time)),
        ("Result", clean(hook.result)),
        ("Idempotency key", hook.idempotency_key),
    ]
    sections = [
        render_fields(entry_fields),
        "Failure hook:\n" + render_fields(hook_fields, 2),
        "Failure:\n" + failure_detail(entry.failure),
        "Run:\n"
        + "\n".join(
            "  " + line if line else line for line in run_detail(_without_failure(entry.run)).splitlines()
        ),
    ]
    return "\n\n".join(sections)


def _without_failure(run: run_pb2.WorkflowRun) -> run_pb2.WorkflowRun:
    """A copy of ``run`` without its failure, which the dead letter's view shows already."""
    copy = run_pb2.WorkflowRun()
    copy.CopyFrom(run)
    copy.ClearField("failure")
    return copy
