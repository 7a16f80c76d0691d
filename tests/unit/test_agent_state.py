"""The agent-state machine: legal moves, deferred pause/logout, missed offers, wrap-up timers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.agents.state import (
    AgentEvent,
    AgentState,
    AgentStatus,
    CallEnded,
    Login,
    Logout,
    MakeAvailable,
    OfferAnswered,
    OfferCancelled,
    OfferMissed,
    Pause,
    PlaceCall,
    Reserve,
    StartWrapUpTimer,
    StateChange,
    WrapUpElapsed,
    step,
)
from cti.platform.errors import IllegalTransition

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
S = AgentState


def run(*events: AgentEvent, status: AgentStatus | None = None) -> AgentStatus:
    st_ = status or AgentStatus("1001")
    for i, e in enumerate(events):
        st_, _ = step(st_, e, T0 + timedelta(seconds=i))
    return st_


@pytest.mark.parametrize(
    ("events", "state", "reason"),
    [
        ([Login()], S.AVAILABLE, None),
        ([Login(available=False)], S.PAUSED, "login"),
        ([Login(), Pause("lunch")], S.PAUSED, "lunch"),
        ([Login(), Pause("lunch"), MakeAvailable()], S.AVAILABLE, None),
        ([Login(), Reserve("c1", "o1")], S.RESERVED, None),
        ([Login(), Reserve("c1", "o1"), OfferAnswered("o1")], S.ON_CALL, None),
        ([Login(), Reserve("c1", "o1"), OfferCancelled("o1")], S.AVAILABLE, None),
        ([Login(), Reserve("c1", "o1"), OfferAnswered("o1"), CallEnded(10)], S.WRAP_UP, None),
        ([Login(), Reserve("c1", "o1"), OfferAnswered("o1"), CallEnded(0)], S.AVAILABLE, None),
        (
            [Login(), Reserve("c1", "o1"), OfferAnswered("o1"), CallEnded(10), WrapUpElapsed(1)],
            S.AVAILABLE,
            None,
        ),
        (
            [Login(), Reserve("c1", "o1"), OfferAnswered("o1"), CallEnded(10), MakeAvailable()],
            S.AVAILABLE,
            None,
        ),
        # a pause or logout asked for during a call applies when the call (and wrap-up) ends
        ([Login(), Reserve("c1", "o1"), OfferAnswered("o1"), Pause("break")], S.ON_CALL, None),
        (
            [
                Login(),
                Reserve("c1", "o1"),
                OfferAnswered("o1"),
                Pause("break"),
                CallEnded(5),
                WrapUpElapsed(1),
            ],
            S.PAUSED,
            "break",
        ),
        (
            [Login(), Reserve("c1", "o1"), OfferAnswered("o1"), Logout(), CallEnded(0)],
            S.LOGGED_OUT,
            None,
        ),
        ([Login(), Reserve("c1", "o1"), Pause("break"), OfferCancelled("o1")], S.PAUSED, "break"),
        ([Login(), Pause("x"), Logout()], S.LOGGED_OUT, None),
    ],
)
def test_transitions(events: list[AgentEvent], state: AgentState, reason: str | None) -> None:
    s = run(*events)
    assert (s.state, s.reason) == (state, reason)


@pytest.mark.parametrize(
    ("events", "bad"),
    [
        ([], Reserve("c1", "o1")),  # logged out cannot be offered a call
        ([Login()], Login()),
        ([Login(), Pause("x")], Reserve("c1", "o1")),
        ([Login(), Reserve("c1", "o1")], Reserve("c2", "o2")),  # never two offers
        ([Login()], OfferAnswered("o1")),
        ([Login(), Reserve("c1", "o1")], OfferAnswered("o-other")),
        ([Login()], CallEnded(5)),
        ([], MakeAvailable()),
        ([Login()], MakeAvailable()),
    ],
)
def test_illegal_transition_raises_naming_state_and_event(
    events: list[AgentEvent], bad: AgentEvent
) -> None:
    s = run(*events)
    with pytest.raises(IllegalTransition) as exc:
        step(s, bad, T0)
    assert exc.value.state == s.state.value
    assert exc.value.event == type(bad).__name__
    assert s.state.value in str(exc.value)
    assert type(bad).__name__ in str(exc.value)


def test_n_missed_offers_pause_the_agent_with_reason_missed() -> None:
    s = run(Login())
    for i in range(3):
        s, _ = step(s, Reserve(f"c{i}", f"o{i}"), T0)
        s, _ = step(s, OfferMissed(f"o{i}"), T0, max_missed=3)
    assert (s.state, s.reason, s.missed) == (S.PAUSED, "missed", 3)


def test_an_answered_offer_resets_the_missed_count() -> None:
    s = run(
        Login(), Reserve("c1", "o1"), OfferMissed("o1"), Reserve("c2", "o2"), OfferAnswered("o2")
    )
    assert s.missed == 0


def test_stale_wrap_up_timer_is_ignored() -> None:
    s = run(
        Login(),
        Reserve("c1", "o1"),
        OfferAnswered("o1"),
        CallEnded(10),
        MakeAvailable(),
        Reserve("c2", "o2"),
        OfferAnswered("o2"),
        CallEnded(10),
    )
    s2, effects = step(s, WrapUpElapsed(1), T0)  # the first call's timer
    assert s2 == s
    assert effects == []


def test_every_change_is_an_event_with_timestamp_and_wrap_up_starts_a_timer() -> None:
    s = run(Login(), Reserve("c1", "o1"), OfferAnswered("o1"))
    at = T0 + timedelta(minutes=3)
    s, effects = step(s, CallEnded(15), at)
    assert effects == [
        StateChange("1001", S.ON_CALL, S.WRAP_UP, at, None, "c1"),
        StartWrapUpTimer("1001", s.wrap_gen, 15),
    ]


EVENTS = st.one_of(
    st.builds(Login, st.booleans()),
    st.just(MakeAvailable()),
    st.builds(Pause, st.just("p")),
    st.just(Logout()),
    st.builds(Reserve, st.just("c"), st.sampled_from(["o1", "o2"])),
    st.builds(OfferAnswered, st.sampled_from(["o1", "o2"])),
    st.builds(OfferMissed, st.sampled_from(["o1", "o2"])),
    st.builds(OfferCancelled, st.sampled_from(["o1", "o2"])),
    st.builds(CallEnded, st.sampled_from([0.0, 5.0])),
    st.builds(WrapUpElapsed, st.integers(0, 3)),
    st.builds(PlaceCall, st.sampled_from(["c", "out-1"])),
)


@given(st.lists(EVENTS, max_size=40))
def test_any_event_sequence_keeps_the_machine_consistent(events: list[AgentEvent]) -> None:
    s = AgentStatus("1001")
    for i, e in enumerate(events):
        at = T0 + timedelta(seconds=i)
        try:
            nxt, effects = step(s, e, at, max_missed=2)
        except IllegalTransition:
            continue
        changes = [x for x in effects if isinstance(x, StateChange)]
        if nxt.state != s.state:  # every change of state is reported, with its time
            assert [(c.old, c.new, c.at) for c in changes] == [(s.state, nxt.state, at)]
        # only a reserved agent holds an offer, and only a busy agent has a pending request
        assert (nxt.offer_id is not None) == (nxt.state in (S.RESERVED, S.ON_CALL))
        if nxt.pending is not None:
            assert nxt.state in (S.RESERVED, S.ON_CALL, S.WRAP_UP)
        s = nxt


def test_an_agent_places_a_call_when_available_or_paused_and_a_pause_comes_back_after() -> None:
    s = run(Login(), PlaceCall("out-1"))
    assert (s.state, s.reason, s.call_id, s.offer_id) == (S.ON_CALL, "outbound", "out-1",
                                                          "out-out-1")
    assert run(CallEnded(0), status=s).state is S.AVAILABLE
    paused = run(Login(), Pause("lunch"), PlaceCall("out-2"))
    assert paused.state is S.ON_CALL
    after = run(CallEnded(0), status=paused)
    assert (after.state, after.reason) == (S.PAUSED, "lunch")


@pytest.mark.parametrize("before", [[], [Login(), Reserve("c1", "o1")],
                                    [Login(), PlaceCall("out-1")]])
def test_no_call_is_placed_by_a_logged_out_ringing_or_busy_agent(
    before: list[AgentEvent],
) -> None:
    s = run(*before)
    with pytest.raises(IllegalTransition, match="PlaceCall"):
        step(s, PlaceCall("out-9"), T0)
