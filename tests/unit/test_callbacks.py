"""The complaint call-back's state machine (cti/domain/callbacks.py), clock injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain import callbacks as cbk
from cti.domain.callbacks import Callback, CallbackPolicy, CallbackStatus, Dial, Note

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
POLICY = CallbackPolicy(attempts=3, retry_after=timedelta(minutes=10),
                        agent_poll=timedelta(minutes=1))
W, C = CallbackStatus.WAITING, CallbackStatus.CALLING


def notes(actions: list[cbk.Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Note)]


def dials(actions: list[cbk.Action]) -> list[Dial]:
    return [a for a in actions if isinstance(a, Dial)]


def started() -> Callback:
    cb, actions = cbk.start(7, "1001", "+8613900000004", T0)
    assert notes(actions) == ["call-back scheduled: agent 1001 first, then +8613900000004"]
    return cb


def test_the_agent_first_when_ready_then_connected_ends_it() -> None:
    cb, actions = cbk.tick(POLICY, started(), T0, agent_ready=True)
    assert dials(actions) == [Dial(7, "1001", "+8613900000004", 1)]
    assert (cb.status, cb.attempts, cb.next_at) == (C, 1, None)
    cb = cbk.dialled(cb, "out-1")
    cb, actions = cbk.outcome(POLICY, cb, "connected", T0 + timedelta(seconds=20))
    assert cb.status is CallbackStatus.CONNECTED
    assert cb.finished
    assert notes(actions) == ["call-back attempt 1: connected, agent 1001 with +8613900000004"]


def test_no_dial_while_the_agent_is_not_ready_and_the_wait_is_noted_once() -> None:
    cb, actions = cbk.tick(POLICY, started(), T0, agent_ready=False)
    assert dials(actions) == []
    assert notes(actions) == ["call-back waits for agent 1001 to be ready"]
    assert cb.next_at == T0 + timedelta(minutes=1)
    same, actions = cbk.tick(POLICY, cb, T0 + timedelta(seconds=30), agent_ready=True)
    assert (same, actions) == (cb, [])  # not due yet
    cb, actions = cbk.tick(POLICY, cb, T0 + timedelta(minutes=1), agent_ready=False)
    assert actions == []  # said already
    cb, actions = cbk.tick(POLICY, cb, T0 + timedelta(minutes=2), agent_ready=True)
    assert [d.attempt for d in dials(actions)] == [1]


@pytest.mark.parametrize("result", ["busy", "no_answer", "agent_no_answer", "failed"])
def test_busy_or_no_answer_is_retried_after_the_interval_then_given_up(result: str) -> None:
    cb = started()
    at = T0
    for attempt in (1, 2, 3):
        cb, actions = cbk.tick(POLICY, cb, at, agent_ready=True)
        assert [d.attempt for d in dials(actions)] == [attempt]
        cb, actions = cbk.outcome(POLICY, cbk.dialled(cb, f"out-{attempt}"), result, at,
                                  cause="User busy")
        if attempt < 3:
            assert cb.status is W
            assert cb.next_at == at + timedelta(minutes=10)
            assert notes(actions) == [
                f"call-back attempt {attempt}: {result} (User busy); next attempt at "
                f"{(at + timedelta(minutes=10)).isoformat(timespec='seconds')}"]
            _, nothing = cbk.tick(POLICY, cb, at + timedelta(minutes=9), agent_ready=True)
            assert nothing == []
            at = at + timedelta(minutes=10)
    assert cb.status is CallbackStatus.FAILED
    assert notes(actions) == [f"call-back attempt 3: {result} (User busy); gave up after 3 "
                              "attempts"]
    assert cbk.tick(POLICY, cb, at + timedelta(days=1), agent_ready=True)[1] == []


def test_a_call_that_could_not_be_placed_does_not_use_an_attempt() -> None:
    cb, _ = cbk.tick(POLICY, started(), T0, agent_ready=True)
    cb, actions = cbk.not_placed(POLICY, cb, "agent 1001 is on_call", T0)
    assert (cb.status, cb.attempts, cb.next_at) == (W, 0, T0 + timedelta(minutes=1))
    assert notes(actions) == ["call-back not placed (agent 1001 is on_call); trying again later"]


def test_a_reopened_order_cancels_and_late_outcomes_change_nothing() -> None:
    cb, _ = cbk.tick(POLICY, started(), T0, agent_ready=True)
    cb, actions = cbk.cancel(cb, "work order reopened")
    assert cb.status is CallbackStatus.CANCELLED
    assert notes(actions) == ["call-back cancelled: work order reopened"]
    assert cbk.outcome(POLICY, cb, "connected", T0) == (cb, [])
    assert cbk.cancel(cb, "again") == (cb, [])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CallbackPolicy(attempts=0)
    with pytest.raises(cbk.CallbackError, match="not calling"):
        cbk.dialled(started(), "out-1")
    cb, _ = cbk.tick(POLICY, started(), T0, agent_ready=True)
    with pytest.raises(cbk.CallbackError, match="unknown call-back outcome"):
        cbk.outcome(POLICY, cb, "maybe", T0)


STEPS = st.one_of(
    st.tuples(st.just("tick"), st.booleans()),
    st.tuples(st.just("outcome"), st.sampled_from(
        ["connected", "busy", "no_answer", "agent_no_answer", "failed"])),
    st.tuples(st.just("not_placed"), st.just(True)),
    st.tuples(st.just("cancel"), st.just(True)),
)


@given(st.integers(1, 4), st.lists(st.tuples(STEPS, st.integers(0, 1200)), max_size=40))
def test_never_more_attempts_than_allowed_and_a_dial_only_for_a_ready_agent(
    attempts: int, steps: list[tuple[tuple[str, object], int]]
) -> None:
    policy = CallbackPolicy(attempts=attempts, retry_after=timedelta(minutes=5))
    cb = started()
    at = T0
    dialled = 0
    for (kind, arg), dt in steps:
        at += timedelta(seconds=dt)
        if kind == "tick":
            cb, actions = cbk.tick(policy, cb, at, agent_ready=bool(arg))
            if dials(actions):
                assert arg is True
            dialled += len(dials(actions))
        elif kind == "outcome":
            cb, actions = cbk.outcome(policy, cb, str(arg), at)
        elif kind == "not_placed":
            before = cb.status
            cb, actions = cbk.not_placed(policy, cb, "busy agent", at)
            if before is C:
                dialled -= 1
        else:
            cb, actions = cbk.cancel(cb, "reopened")
        assert 0 <= cb.attempts <= attempts
        assert cb.attempts == dialled
        assert (cb.next_at is None) == (cb.status is not W)
        assert all(isinstance(a, Note | Dial) for a in actions)
