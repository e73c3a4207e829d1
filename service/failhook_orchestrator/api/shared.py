"""What the servicers share: request limits, the default policy, page tokens, how reads are shown."""

from __future__ import annotations

from dataclasses import dataclass

from failhook_orchestrator import wire
from failhook_orchestrator.engine.policy import RetryPolicy

from .pagination import PageTokens
from .validation import Limits

__all__ = ["ApiShared"]


@dataclass(frozen=True, slots=True)
class ApiShared:
    """The servicers' common dependencies, made once by ``registration.add_services``."""

    limits: Limits
    default_policy: RetryPolicy
    tokens: PageTokens
    reading: wire.Reading
    #: The execution timeout of runs that give none (microseconds); None: no deadline.
    default_execution_timeout_us: int | None = None
