from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.domain.calls import Call, CallState, answered, ended, move
from cti.platform.errors import IllegalTransition

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def make_call() -> Call:
    return Call(
        id="c1", channel_id="c1", caller_number="+4930555", caller_name="", dialled_number="100",
        arrived_at=T0,
    )


def test_answer_then_end_records_times_and_cause() -> None:
    call = answered(make_call(), T0 + timedelta(seconds=1))
    call = ended(call, T0 + timedelta(seconds=9), 16, "Normal Clearing")
    assert call.state is CallState.ENDED
    assert call.answered_at == T0 + timedelta(seconds=1)
    assert call.ended_at == T0 + timedelta(seconds=9)
    assert (call.hangup_cause, call.hangup_cause_text) == (16, "Normal Clearing")


def test_ending_twice_keeps_the_first_end() -> None:
    first = ended(make_call(), T0, 16, "Normal Clearing")
    assert ended(first, T0 + timedelta(seconds=5), 0, "x") is first


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (CallState.ARRIVED, CallState.CONNECTED),
        (CallState.ARRIVED, CallState.QUEUED),
        (CallState.ENDED, CallState.ANSWERED),
        (CallState.ENDED, CallState.QUEUED),
    ],
)
def test_illegal_transitions_name_both_states(start: CallState, to: CallState) -> None:
    call = Call(
        id="c", channel_id="c", caller_number="", caller_name="", dialled_number="",
        arrived_at=T0, state=start,
    )
    with pytest.raises(IllegalTransition) as info:
        move(call, to)
    assert start.value in str(info.value)
    assert to.value in str(info.value)


def test_answer_keeps_first_answer_time() -> None:
    call = answered(make_call(), T0)
    call = move(call, CallState.QUEUED)
    call = answered(call, T0 + timedelta(seconds=30))
    assert call.answered_at == T0
