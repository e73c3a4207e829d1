"""Invariants of the target registry under any sequence of calls (property-based)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from failhook_orchestrator.engine.breaker import BreakerSettings, BreakerState, CallResult
from failhook_orchestrator.engine.targets import Decision, TargetRegistry

from ._clock import SECOND, FakeClock

T = "t:1"
RUNS = [f"r{i}" for i in range(8)]
DOWN = CallResult(status_code=14, message="down")
RESULTS = [CallResult(), DOWN, DOWN, DOWN, CallResult(status_code=2, message="bug")]

operation = st.one_of(
    st.tuples(st.just("call"), st.sampled_from(RUNS), st.sampled_from(RESULTS)),
    st.tuples(st.just("call"), st.sampled_from(RUNS), st.sampled_from(RESULTS)),
    st.tuples(st.just("admit"), st.sampled_from(RUNS), st.none()),
    st.tuples(st.just("due"), st.none(), st.sampled_from(RESULTS)),
    st.tuples(st.just("wait"), st.floats(min_value=0, max_value=10), st.none()),
    st.tuples(st.just("pause"), st.none(), st.none()),
    st.tuples(st.just("resume"), st.none(), st.none()),
    st.tuples(st.just("cancel"), st.sampled_from(RUNS), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, min_size=10, max_size=80), st.integers(min_value=1, max_value=3))
def test_registry_invariants(ops: list[tuple[str, object, object]], probes: int) -> None:
    clock = FakeClock()
    reg = TargetRegistry(BreakerSettings(distinct_runs=3, half_open_probes=probes), clock=clock)
    parked: set[str] = set()  # what the driver believes is parked
    for op, arg, result in ops:
        if op == "wait":
            assert isinstance(arg, float)
            clock.advance(arg)
        elif op == "pause":
            reg.pause(T, by="ops", reason="x", until=clock.now + 3 * SECOND)
        elif op == "resume":
            reg.resume(T, by="ops")
        elif op == "cancel":
            assert isinstance(arg, str)
            if arg in parked:
                reg.forget(T, arg)
                parked.discard(arg)
        elif op in ("call", "admit"):
            assert isinstance(arg, str)
            if arg in parked:
                continue  # a parked run is driven only once released
            admission = reg.admit(T, arg)
            if not admission.go:
                parked.add(arg)
            elif op == "call":
                assert isinstance(result, CallResult)
                if reg.record(T, arg, result).park is not None:
                    parked.add(arg)
            else:
                reg.abandon(T, arg)
        else:
            assert isinstance(result, CallResult)
            for released in reg.due():
                assert released.run_id in parked, "only parked runs are released"
                parked.discard(released.run_id)
                admission = reg.admit(T, released.run_id)
                if not admission.go:
                    parked.add(released.run_id)
                    continue
                if released.probe:  # a probe, unless an earlier probe of this batch closed it
                    closed = reg._targets[T].breaker.state is BreakerState.CLOSED
                    assert admission.decision is (Decision.GO if closed else Decision.PROBE)
                if reg.record(T, released.run_id, result).park is not None:
                    parked.add(released.run_id)
        snap = reg.snapshot(T)
        if snap is None:
            assert not parked
            continue
        assert snap.parked_runs == len(parked)
        assert snap.in_flight == 0  # every admitted call was recorded or abandoned
        breaker = reg._targets[T].breaker
        assert len(breaker.probes) <= probes
        if snap.state is BreakerState.CLOSED:
            assert not breaker.probes
        if snap.state is BreakerState.OPEN:
            assert snap.next_probe_time is not None and snap.opened_at is not None
        assert snap.cooldown_us <= 300 * SECOND
    # Nothing is stuck: with time passing and the target answering, every parked run comes out.
    reg.resume(T, by="ops")
    for _ in range(200):
        if not parked:
            break
        clock.now = max(clock.now, reg.next_due() or clock.now)
        for released in reg.due():
            parked.discard(released.run_id)
            assert reg.admit(T, released.run_id).go
            reg.record(T, released.run_id, CallResult())
    assert not parked and reg.parked_count() == 0
