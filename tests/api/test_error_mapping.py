"""Engine errors map to gRPC codes by class, subclasses included (a store outage is UNAVAILABLE)."""

from __future__ import annotations

import grpc
import pytest

from failhook_orchestrator.api.errors import _engine_code
from failhook_orchestrator.engine.errors import (
    EngineError,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
)
from failhook_orchestrator.store.writer import StoreUnavailableError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFoundError("no run x", field="run_id"), grpc.StatusCode.NOT_FOUND),
        (
            FailedPreconditionError("finished", field="run_id"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (UnavailableError("the database cannot be read now"), grpc.StatusCode.UNAVAILABLE),
        # The store raises its own subclass: it used to fall through to INTERNAL.
        (StoreUnavailableError("the database cannot be written now"), grpc.StatusCode.UNAVAILABLE),
        (EngineError("something else"), grpc.StatusCode.INTERNAL),
    ],
)
def test_engine_errors_map_by_class(error: EngineError, code: grpc.StatusCode) -> None:
    assert _engine_code(error)[0] == code
