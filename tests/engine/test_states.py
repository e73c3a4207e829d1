"""The one transition path: every move checked against the table, the sets derived from it."""

from __future__ import annotations

import pytest

from failhook_orchestrator.engine.states import (
    TERMINAL_STATES,
    TRANSITIONS,
    UNFINISHED_STATES,
    IllegalTransitionError,
    RunState,
    move,
)
from tests.engine.fakes import new_run


def test_every_allowed_move_is_made_and_every_other_one_raises() -> None:
    for source in RunState:
        for target in RunState:
            run = new_run(state=source)
            if target in TRANSITIONS[source]:
                move(run, target)
                assert run.state is target
            else:
                with pytest.raises(IllegalTransitionError, match=f"{source.name} to {target.name}"):
                    move(run, target)
                assert run.state is source  # a refused move changes nothing


def test_the_sets_are_derived_from_the_table() -> None:
    assert {RunState.SUCCEEDED, RunState.DEAD_LETTERED, RunState.CANCELED} == TERMINAL_STATES
    assert set(RunState) - TERMINAL_STATES == UNFINISHED_STATES
    assert RunState.FAILED in UNFINISHED_STATES  # its hook is being delivered
