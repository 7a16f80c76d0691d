"""The listen/whisper/barge state machine (cti/domain/monitoring.py): what each mode asks of
the PBX, mode changes on the same leg, and the invariants over any sequence of requests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.monitoring import (
    Command,
    Dial,
    DropSnoop,
    HangUpSupervisor,
    Mode,
    Monitor,
    MoveSupervisor,
    OpenSnoop,
    Phase,
    agent_moved,
    answered,
    change,
    start,
    stop,
)
from cti.platform.errors import IllegalTransition

L, W, B = Mode.LISTEN, Mode.WHISPER, Mode.BARGE


def active(mode: Mode) -> Monitor:
    m, _ = start(mode, "PJSIP/1003")
    m, _ = answered(m)
    return m


def test_start_dials_the_supervisor_once() -> None:
    m, cmds = start(L, "PJSIP/1003")
    assert m.phase is Phase.DIALLING
    assert cmds == [Dial("PJSIP/1003")]


@pytest.mark.parametrize(("mode", "expected"), [
    (L, [OpenSnoop(1, "none"), MoveSupervisor("monitor")]),
    (W, [OpenSnoop(1, "out"), MoveSupervisor("monitor")]),
    (B, [MoveSupervisor("call")]),
])
def test_answer_sets_up_the_asked_mode(mode: Mode, expected: list[Command]) -> None:
    m, _ = start(mode, "PJSIP/1003")
    m, cmds = answered(m)
    assert m.phase is Phase.ACTIVE
    assert cmds == expected


@pytest.mark.parametrize(("before", "after", "expected"), [
    (L, W, [OpenSnoop(2, "out"), DropSnoop(1)]),
    (W, L, [OpenSnoop(2, "none"), DropSnoop(1)]),
    (L, B, [MoveSupervisor("call"), DropSnoop(1)]),
    (W, B, [MoveSupervisor("call"), DropSnoop(1)]),
    (B, L, [OpenSnoop(1, "none"), MoveSupervisor("monitor")]),
    (B, W, [OpenSnoop(1, "out"), MoveSupervisor("monitor")]),
    (L, L, []), (W, W, []), (B, B, []),
])
def test_a_mode_change_keeps_the_leg_and_swaps_only_the_snoop_or_bridge(
    before: Mode, after: Mode, expected: list[Command]
) -> None:
    m, cmds = change(active(before), after)
    assert cmds == expected
    assert not any(isinstance(c, Dial | HangUpSupervisor) for c in cmds)
    assert m.mode is after


def test_a_change_while_dialling_only_changes_what_answer_sets_up() -> None:
    m, _ = start(L, "PJSIP/1003")
    m, cmds = change(m, B)
    assert cmds == []
    _, cmds = answered(m)
    assert cmds == [MoveSupervisor("call")]


def test_stop_drops_the_snoop_and_hangs_up_the_supervisor() -> None:
    m, cmds = stop(active(W))
    assert m.phase is Phase.ENDED
    assert cmds == [DropSnoop(1), HangUpSupervisor()]
    assert stop(active(B))[1] == [HangUpSupervisor()]
    # the supervisor hung up: nothing to hang up; stopping again does nothing
    assert stop(active(L), leg_gone=True)[1] == [DropSnoop(1)]
    assert stop(m) == (m, [])


def test_a_stop_while_dialling_hangs_up_the_ringing_phone() -> None:
    m, _ = start(L, "PJSIP/1003")
    assert stop(m)[1] == [HangUpSupervisor()]


def test_after_a_transfer_the_set_up_is_made_again_on_the_new_agent() -> None:
    assert agent_moved(active(W))[1] == [OpenSnoop(2, "out"), DropSnoop(1)]
    assert agent_moved(active(B))[1] == [MoveSupervisor("call")]
    dialling, _ = start(L, "x")
    assert agent_moved(dialling) == (dialling, [])


def test_an_ended_monitor_refuses_changes_and_answers_naming_its_state() -> None:
    m, _ = stop(active(L))
    with pytest.raises(IllegalTransition, match="ended"):
        change(m, W)
    with pytest.raises(IllegalTransition, match="active"):
        answered(active(L))


# ----- any sequence: the PBX set-up always matches the mode --------------------------------

Step = st.one_of(st.sampled_from([L, W, B]), st.just("moved"), st.just("stop"))


@given(first=st.sampled_from([L, W, B]), steps=st.lists(Step, max_size=20))
def test_any_sequence_keeps_one_snoop_per_listening_mode_and_none_in_barge(
    first: Mode, steps: list[Mode | str]
) -> None:
    m, cmds = start(first, "PJSIP/1003")
    m, more = answered(m)
    cmds += more
    for s in steps:
        if s == "moved":
            m, more = agent_moved(m)
        elif s == "stop":
            m, more = stop(m)
        elif m.phase is Phase.ENDED:
            with pytest.raises(IllegalTransition):
                change(m, Mode(s))
            continue
        else:
            m, more = change(m, Mode(s))
        cmds += more
    # replay the commands as the PBX would see them
    snoops: set[int] = set()
    place: str | None = None
    dials = hangups = 0
    for c in cmds:
        if isinstance(c, OpenSnoop):
            assert c.gen not in snoops
            snoops.add(c.gen)
        elif isinstance(c, DropSnoop):
            snoops.discard(c.gen)
        elif isinstance(c, MoveSupervisor):
            place = c.place
        elif isinstance(c, Dial):
            dials += 1
        else:
            hangups += 1
    assert dials == 1  # the leg is never dialled again
    if m.phase is Phase.ENDED:
        assert snoops == set()
        assert hangups == 1
        return
    assert hangups == 0
    if m.mode is B:
        assert (snoops, place) == (set(), "call")
    else:
        assert snoops == {m.snoop}
        assert place == "monitor"
