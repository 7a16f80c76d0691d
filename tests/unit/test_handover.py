"""The shift handover log's rules (cti/domain/handover.py), clock injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain import handover as ho
from cti.domain.handover import HandoverEntry, HandoverError, HandoverItem, NewItem

T0 = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
POLICY = ho.ReminderPolicy(remind_after=timedelta(minutes=30),
                           remind_every=timedelta(minutes=20))


def entry(*items: HandoverItem) -> HandoverEntry:
    return HandoverEntry(1, "06-01 day", "06-01 night", "lead_day", T0, "quiet day", items)


def item(n: int = 1) -> HandoverItem:
    return HandoverItem(n, 1, f"call back order {n}", work_order_id=n,
                        next_reminder_at=ho.first_reminder(POLICY, T0))


@pytest.mark.parametrize(("shift", "next_shift", "note", "items", "why"), [
    ("", "night", "x", (), "name the shift"),
    ("day", " ", "x", (), "name the shift"),
    ("day", "day", "x", (), "not to itself"),
    ("day", "night", " ", (), "a note or at least one item"),
    ("day", "night", "", (NewItem("ok"), NewItem("  ")), "item 2 has no text"),
])
def test_an_entry_names_both_shifts_and_has_something_to_hand_over(
    shift: str, next_shift: str, note: str, items: tuple[NewItem, ...], why: str
) -> None:
    with pytest.raises(HandoverError, match=why):
        ho.check_new(shift, next_shift, note, items)


def test_entries_with_only_a_note_or_only_items_are_fine() -> None:
    ho.check_new("day", "night", "all calm", ())
    ho.check_new("day", "night", "", (NewItem("order 7 waits for the customer", 7),))


def test_the_next_shift_acknowledges_not_the_writer_and_only_once() -> None:
    e = entry(item())
    with pytest.raises(HandoverError, match="not its writer 'lead_day'"):
        ho.acknowledge(e, e.items[0], "lead_day", T0)
    done = ho.acknowledge(e, e.items[0], "lead_night", T0 + timedelta(minutes=5), " on it ")
    assert (done.acknowledged_by, done.acknowledged_at, done.ack_note, done.next_reminder_at) \
        == ("lead_night", T0 + timedelta(minutes=5), "on it", None)
    assert not done.open
    with pytest.raises(HandoverError, match="acknowledged by lead_night already"):
        ho.acknowledge(entry(done), done, "agent1002", T0)
    with pytest.raises(HandoverError, match="not in handover 1"):
        ho.acknowledge(e, HandoverItem(9, 2, "elsewhere"), "lead_night", T0)


def test_unacknowledged_items_are_reminded_after_the_delay_then_every_period() -> None:
    it = item()
    assert it.next_reminder_at == T0 + timedelta(minutes=30)
    same, due = ho.remind(POLICY, it, T0 + timedelta(minutes=29))
    assert (same, due) == (it, False)
    it, due = ho.remind(POLICY, it, T0 + timedelta(minutes=30))
    assert due
    assert (it.reminders, it.next_reminder_at) == (1, T0 + timedelta(minutes=50))
    it, due = ho.remind(POLICY, it, T0 + timedelta(minutes=50))
    assert (it.reminders, it.next_reminder_at) == (2, T0 + timedelta(minutes=70))


def test_a_late_driver_reminds_once_not_once_per_missed_period() -> None:
    it, due = ho.remind(POLICY, item(), T0 + timedelta(hours=5))
    assert due
    assert (it.reminders, it.next_reminder_at) == (1, T0 + timedelta(hours=5, minutes=20))


def test_acknowledged_items_are_not_reminded() -> None:
    e = entry(item())
    done = ho.acknowledge(e, e.items[0], "lead_night", T0)
    assert ho.remind(POLICY, done, T0 + timedelta(days=1)) == (done, False)


def test_reminder_intervals_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ho.ReminderPolicy(remind_after=timedelta(0))


@given(st.lists(st.integers(0, 7200), max_size=30))
def test_reminders_never_come_early_and_the_next_is_always_ahead(gaps: list[int]) -> None:
    it = item()
    at = T0
    for gap in gaps:
        at += timedelta(seconds=gap)
        before = it
        it, due = ho.remind(POLICY, it, at)
        assert due == (before.next_reminder_at is not None and at >= before.next_reminder_at)
        assert it.next_reminder_at is not None
        assert it.next_reminder_at > at
        assert it.reminders == before.reminders + (1 if due else 0)
