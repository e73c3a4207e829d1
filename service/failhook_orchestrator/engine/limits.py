"""Limits on what an endpoint or a hook may hand back, applied before anything is stored.

A worker's answer is untrusted input: a name too long for its column, a NUL byte that
PostgreSQL's text and JSONB types refuse, a delay beyond what a BIGINT of microseconds holds,
or an output too large for a client to read back would otherwise fail the write again at every
retry. Names that identify steps are refused (the run fails, non-retryable: cutting a name would
break the replay of the workflow's history); free text is cut and cleaned; delays are capped.
The same rules hold on SQLite and PostgreSQL. ``docs/runbook.md`` documents the figures.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_STEP_OUTPUT_BYTES",
    "MAX_DELAY_US",
    "MAX_STEP_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "clean_text",
    "step_name_problem",
]

#: Longest step name (the width of the ``steps.name`` and ``dead_letters.failed_step`` columns).
MAX_STEP_NAME_CHARS = 256
#: Longest status message, hook error or hook result kept; longer text is cut.
MAX_TEXT_CHARS = 4096
#: Largest output of one step (or of the run) by default: 1 MiB, like the payload.
DEFAULT_MAX_STEP_OUTPUT_BYTES = 1024 * 1024
#: Longest delay a worker may ask for (a sleep or a retry-after): 365 days, in microseconds.
MAX_DELAY_US = 365 * 24 * 3600 * 1_000_000

_ELLIPSIS = "…"


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` without NUL characters (shown as U+FFFD) and cut to ``limit`` characters."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) > limit:
        text = text[: limit - 1] + _ELLIPSIS
    return text


def step_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a step's name, or None when it can."""
    if len(name) > MAX_STEP_NAME_CHARS:
        return (
            f"the endpoint reported a step name of {len(name)} characters; the limit is {MAX_STEP_NAME_CHARS}"
        )
    if "\x00" in name:
        return "the endpoint reported a step name containing a NUL character"
    return None
