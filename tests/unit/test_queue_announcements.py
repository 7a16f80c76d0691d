"""Position and estimated-wait announcements for waiting callers: the queue's `announce`
rules, the pure ACD core's `Announce` commands on an injected clock, the phrases chosen and
the phrase library's number slots."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cti.domain.phrases import PhraseError
from cti.domain.routing.acd import (
    AcdCore,
    Announce,
    Command,
    RingAgent,
    StartWrapUpTimer,
)
from cti.domain.routing.announcements import (
    NEXT,
    PHRASE_IDS,
    POSITION,
    WAIT_MINUTES,
    WAIT_UNDER_MINUTE,
    announcement_phrases,
)
from cti.domain.routing.model import Announcements
from cti.features.phrases.library import load_phrase_library
from cti.features.routing.rules import parse_rules
from cti.platform.errors import ConfigError

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
BILLING = {"menu": "1", "language": "en"}
GENERAL = {"menu": "0", "language": "zh"}

RULES = """\
skills: [billing, general]
default_queue: general
queues:
  billing:
    skills: {{billing: 2}}
    max_wait_s: 900
    wrap_up_s: 10
    ring_timeout_s: 15
    aht_s: 120
{announce}
  general:
    skills: {{general: 1}}
    max_wait_s: 900
    wrap_up_s: 5
    aht_s: 60
agents:
  b1: {{skills: {{billing: 3, general: 1}}}}
  b2: {{skills: {{billing: 2, general: 1}}}}
  b3: {{skills: {{billing: 2}}}}
  g1: {{skills: {{general: 2}}}}
rules:
  - name: billing
    when: menu == "1"
    targets: [{{queue: billing}}]
"""


def rules_text(announce: str = "    announce: {first_after_s: 0, every_s: 30}") -> str:
    return RULES.format(announce=announce)


class Sim:
    """The core on a hand-moved clock, keeping every command it returned."""

    def __init__(self, announce: str | None = None) -> None:
        text = rules_text() if announce is None else rules_text(announce)
        self.core = AcdCore(parse_rules(text, "announce.yaml"))
        self.now = 0.0
        self.out: list[tuple[float, Command]] = []

    def run(self, cmds: list[Command]) -> list[Command]:
        self.out.extend((self.now, c) for c in cmds)
        return cmds

    def at(self, t: float) -> Sim:
        assert t >= self.now
        self.now = t
        return self

    def tick_to(self, t: float) -> None:
        """Tick on every whole second, as the service does, up to and including `t`."""
        while math.floor(self.now) + 1 <= t:
            self.now = math.floor(self.now) + 1
            self.run(self.core.tick(self.now, AT))

    def login(self, agent: str, available: bool = True) -> list[Command]:
        return self.run(self.core.agent_login(agent, self.now, AT, available=available))

    def enqueue(self, call_id: str, attrs: dict[str, str] = BILLING) -> list[Command]:
        return self.run(self.core.enqueue(call_id, attrs, self.now, AT))

    def answer(self, cmds: list[Command]) -> str:
        ring = next(c for c in cmds if isinstance(c, RingAgent))
        self.run(self.core.offer_answered(ring.offer_id, self.now, AT))
        return ring.agent_id

    def announcements(self, call_id: str | None = None) -> list[tuple[float, Announce]]:
        return [
            (t, c)
            for t, c in self.out
            if isinstance(c, Announce) and (call_id is None or c.call_id == call_id)
        ]

    def times(self, call_id: str) -> list[float]:
        return [t for t, _ in self.announcements(call_id)]

    def last(self, call_id: str) -> Announce:
        found = self.announcements(call_id)
        assert found, f"no announcement for {call_id}"
        return found[-1][1]

    def busy(self, *agents: str) -> None:
        """Make billing agents busy on general calls (the billing queue keeps no history)."""
        for i, agent in enumerate(agents):
            self.login(agent)
            self.answer(self.enqueue(f"busy-{agent}-{i}", GENERAL))


def of_type(cmds: list[Command], kind: type) -> list[Command]:
    return [c for c in cmds if isinstance(c, kind)]


# ----- rules ---------------------------------------------------------------------------------


def test_announce_defaults_position_and_wait_on_joining_then_every_30_s() -> None:
    rules = parse_rules(rules_text(""), "t.yaml")
    assert rules.queues["billing"].announce == Announcements(True, True, 0.0, 30.0)
    assert rules.queues["billing"].aht_s == 120
    assert rules.queues["general"].aht_s == 60
    assert rules.queues["billing"].announce_position is True


def test_announce_settings_are_compiled() -> None:
    rules = parse_rules(
        rules_text(
            "    announce: {position: false, estimated_wait: true, first_after_s: 20, every_s: 0}"
        ),
        "t.yaml",
    )
    assert rules.queues["billing"].announce == Announcements(False, True, 20.0, 0.0)
    assert not Announcements(False, False).enabled


def test_older_announce_position_still_switches_the_position_off() -> None:
    rules = parse_rules(rules_text("    announce_position: false"), "t.yaml")
    a = rules.queues["billing"].announce
    assert (a.position, a.estimated_wait) == (False, True)
    assert rules.queues["billing"].announce_position is False


def test_demo_rules_carry_announcement_settings() -> None:
    from cti.features.routing.rules import load_rules

    rules = load_rules(REPO / "config" / "routing.yaml")
    assert rules.queues["billing"].announce == Announcements(True, True, 10.0, 45.0)
    assert rules.queues["billing"].aht_s == 240
    assert rules.queues["vip"].announce == Announcements(True, False, 15.0, 0.0)


@pytest.mark.parametrize(
    ("announce", "where", "reason"),
    [
        ("    announce: {every_s: -1}", ":10:16:", "greater than or equal to 0"),
        ("    announce: {every_s: 0.5}", ":10:5:", "every_s must be 0 (once) or at least 1 s"),
        ("    announce: {position: maybe}", ":10:16:", "valid boolean"),
        ("    announce: {colour: red}", ":10:16:", "Extra inputs are not permitted"),
        ("    announce: {first_after_s: 900}", ":10:16:", "first_after_s 900 is not before"),
        (
            "    announce_position: false\n    announce: {position: true}",
            ":10:5:",
            "give announce.position only",
        ),
    ],
)
def test_bad_announce_settings_name_file_line_column_and_reason(
    announce: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(rules_text(announce), "rules.yaml")
    message = info.value.message
    assert f"rules.yaml{where}" in message, message
    assert reason in message, message


def test_aht_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"rules.yaml:9:5: queues.billing.aht_s: .*greater"):
        parse_rules(rules_text().replace("aht_s: 120", "aht_s: 0"), "rules.yaml")


# ----- the core: when ------------------------------------------------------------------------


def test_a_queued_caller_hears_an_announcement_on_joining_then_every_30_s() -> None:
    sim = Sim()
    cmds = sim.enqueue("c1")
    [ann] = of_type(cmds, Announce)
    assert ann == Announce("c1", "billing", 1, None, 1)  # nobody serving: no estimate
    sim.tick_to(100)
    assert sim.times("c1") == [0, 30, 60, 90]
    assert [a.count for _, a in sim.announcements("c1")] == [1, 2, 3, 4]
    assert sim.core.announcement_due("c1") == 120


def test_first_announcement_after_a_delay_then_the_interval() -> None:
    sim = Sim("    announce: {first_after_s: 10, every_s: 15}")
    sim.at(2.5)
    assert not of_type(sim.enqueue("c1"), Announce)
    sim.tick_to(45)
    # due at 12.5, 27.5, 42.5; the 1 s tick says them at the next whole second
    assert sim.times("c1") == [13, 28, 43]


def test_every_s_zero_announces_once() -> None:
    sim = Sim("    announce: {first_after_s: 5, every_s: 0}")
    sim.enqueue("c1")
    sim.tick_to(200)
    assert sim.times("c1") == [5]
    assert sim.core.announcement_due("c1") is None


def test_config_off_means_no_announcement_at_all() -> None:
    sim = Sim("    announce: {position: false, estimated_wait: false}")
    sim.busy("b1")
    sim.enqueue("c1")
    sim.enqueue("c2")
    sim.tick_to(200)
    assert sim.announcements() == []


def test_position_off_says_only_the_wait_and_nothing_without_an_estimate() -> None:
    sim = Sim("    announce: {position: false}")
    sim.enqueue("c1")  # nobody logged in: no estimate, and the position is not to be said
    sim.tick_to(100)
    assert sim.announcements() == []
    sim = Sim("    announce: {position: false}")
    sim.busy("b1")
    sim.enqueue("c1")
    assert sim.last("c1") == Announce("c1", "billing", None, 120.0, 1)
    sim.run(sim.core.agent_logout("b1", sim.now, AT))  # logs out after this call
    sim.tick_to(100)
    assert sim.times("c1") == [0]


def test_wait_off_says_only_the_position() -> None:
    sim = Sim("    announce: {estimated_wait: false}")
    sim.busy("b1")
    sim.enqueue("c1")
    assert sim.last("c1") == Announce("c1", "billing", 1, None, 1)


def test_a_call_offered_at_once_hears_no_announcement() -> None:
    sim = Sim()
    sim.login("b1")
    cmds = sim.enqueue("c1")
    assert of_type(cmds, RingAgent)
    assert not of_type(cmds, Announce)
    sim.tick_to(100)  # still ringing (ring timeout 15 s never fired in this test)
    assert sim.announcements("c1") == []


def test_no_announcement_once_offered_or_connected() -> None:
    sim = Sim()
    sim.enqueue("c1")
    sim.tick_to(31)
    assert sim.times("c1") == [0, 30]
    sim.at(40)
    cmds = sim.login("b1")  # the call is offered to b1 at once
    assert of_type(cmds, RingAgent)
    sim.tick_to(55)
    assert sim.times("c1") == [0, 30]  # due at 60, and ringing: nothing
    sim.answer(cmds)
    sim.tick_to(200)
    assert sim.times("c1") == [0, 30]
    assert sim.core.announcement_due("c1") is None


def test_ring_no_answer_puts_the_caller_back_and_announcements_resume() -> None:
    sim = Sim()
    sim.enqueue("c1")
    sim.tick_to(50)
    cmds = sim.login("b1")
    ring = next(c for c in cmds if isinstance(c, RingAgent))
    sim.tick_to(65)  # 60 was due while ringing: held back
    assert sim.times("c1") == [0, 30]
    sim.run(sim.core.offer_failed(ring.offer_id, sim.now, AT))  # b1 did not answer
    sim.tick_to(66)
    assert sim.times("c1") == [0, 30, 66]  # back in the queue: told at the next tick
    sim.tick_to(100)
    assert sim.times("c1") == [0, 30, 66, 96]  # then on a fresh 30 s cadence


def test_caller_hangup_and_fallback_forget_the_call() -> None:
    sim = Sim("    announce: {every_s: 30}\n    fallback: {action: voicemail}")
    sim.enqueue("c1")
    sim.enqueue("c2")
    sim.run(sim.core.caller_hangup("c1", sim.now, AT))
    assert sim.core.announcement_due("c1") is None
    sim.tick_to(899)
    assert sim.core.announcement_due("c2") is not None
    sim.tick_to(901)  # max wait 900 s: to voicemail
    assert sim.core.announcement_due("c2") is None
    n = len(sim.announcements("c2"))
    sim.tick_to(1000)
    assert len(sim.announcements("c2")) == n


# ----- the core: what ------------------------------------------------------------------------


def test_positions_count_only_callers_ahead_in_the_same_queue_and_follow_their_leaving() -> None:
    sim = Sim()
    sim.busy("b1")
    sim.enqueue("c1")
    sim.at(1)
    sim.enqueue("x1", GENERAL)  # another queue's caller: not ahead of billing callers
    sim.at(2)
    sim.enqueue("c2")
    sim.at(3)
    sim.enqueue("c3")
    assert [sim.last(c).position for c in ("c1", "c2", "c3")] == [1, 2, 3]
    sim.at(10)
    sim.run(sim.core.caller_hangup("c1", sim.now, AT))  # the first caller leaves
    sim.tick_to(33)
    assert [(sim.times(c)[-1], sim.last(c).position) for c in ("c2", "c3")] == [(32, 1), (33, 2)]
    sim.at(40)
    assert sim.answer(sim.login("b3")) == "b3"  # c2 is answered
    sim.tick_to(63)
    assert (sim.times("c3")[-1], sim.last("c3").position, sim.last("c3").count) == (63, 1, 3)
    assert sim.last("x1").position == 1


def test_vip_caller_jumps_ahead_and_is_told_so() -> None:
    text = rules_text().replace("default_queue: general", "default_queue: general\ntiers: "
                                "{vip: {priority_boost: 100}}")
    core = AcdCore(parse_rules(text, "t.yaml"))
    core.enqueue("c1", BILLING, 0, AT)
    cmds = core.enqueue("v1", {**BILLING, "tier": "vip"}, 1, AT)
    [ann] = of_type(cmds, Announce)
    assert ann.position == 1
    later = core.tick(30, AT)
    assert {a.call_id: a.position for a in of_type(later, Announce)} == {"c1": 2}


def test_estimate_without_history_is_position_times_aht_over_agents_serving() -> None:
    sim = Sim()
    sim.busy("b1", "b2")  # two billing agents on (general) calls: both serve billing
    sim.login("g1")  # not qualified for billing
    sim.login("b3", available=False)  # paused: not serving
    sim.enqueue("c1")
    sim.enqueue("c2")
    sim.enqueue("c3")
    # aht_s 120 s over 2 agents: a call every 60 s
    assert [sim.last(c).wait_s for c in ("c1", "c2", "c3")] == [60.0, 120.0, 180.0]


def test_logged_out_paused_and_pausing_agents_do_not_serve() -> None:
    sim = Sim()
    sim.busy("b1", "b2")
    sim.run(sim.core.agent_pause("b2", "break", sim.now, AT))  # pauses after this call
    sim.enqueue("c1")
    assert sim.last("c1").wait_s == 120.0  # only b1 serves
    sim.run(sim.core.agent_logout("b1", sim.now, AT))
    sim.tick_to(30)
    assert sim.last("c1") == Announce("c1", "billing", 1, None, 2)  # nobody: no estimate


def test_skills_changed_at_run_time_count_for_the_estimate() -> None:
    sim = Sim()
    sim.busy("b1", "g1")  # g1 is busy too, but not qualified for billing
    sim.enqueue("c1")
    assert sim.last("c1").wait_s == 120.0
    sim.run(sim.core.set_skills("g1", {"billing": 3, "general": 2}, sim.now, AT))
    sim.tick_to(30)
    assert sim.last("c1").wait_s == 60.0


def test_estimate_uses_the_queues_history_once_there_is_some() -> None:
    sim = Sim()
    sim.busy("b1", "b2")
    sim.enqueue("c1")
    assert sim.last("c1").wait_s == 60.0
    # b1's general call ends at 40; after its 5 s wrap-up b1 takes c1 (waited 47 s)
    sim.at(40)
    ended = sim.run(sim.core.call_ended("busy-b1-0", sim.now, AT))
    wrap = next(c for c in ended if isinstance(c, StartWrapUpTimer))
    sim.at(45)
    offered = sim.run(sim.core.wrap_up_elapsed("b1", wrap.gen, sim.now, AT))
    sim.at(47)
    assert sim.answer(offered) == "b1"
    # c1 talks 100 s: handled = 100 + the billing wrap-up 10 = 110 s
    sim.at(147)
    sim.run(sim.core.call_ended("c1", sim.now, AT))
    sim.at(150)
    sim.enqueue("c2")
    # serving: b1 (wrap-up) and b2 (on call); by position 1 * 110 / 2 = 55, blended with
    # the one answered wait (47 s)
    assert sim.last("c2").wait_s == pytest.approx(0.5 * 55 + 0.5 * 47)


def test_transfer_into_a_queue_announces_again() -> None:
    sim = Sim()
    sim.login("g1")
    sim.answer(sim.enqueue("c1", GENERAL))
    sim.busy("b1")
    cmds = sim.run(sim.core.transfer("c1", GENERAL, sim.now, AT, queue="billing"))
    [ann] = of_type(cmds, Announce)
    assert (ann.queue, ann.position) == ("billing", 1)


def test_reload_switching_announcements_off_stops_them() -> None:
    sim = Sim()
    sim.enqueue("c1")
    sim.tick_to(31)
    off = parse_rules(rules_text("    announce: {position: false, estimated_wait: false}"), "t")
    sim.run(sim.core.reload(off, sim.now, AT))
    sim.tick_to(120)
    assert sim.times("c1") == [0, 30]


# ----- phrases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "wait_s", "expected"),
    [
        (1, None, [(NEXT, {})]),
        (2, None, [(POSITION, {"position": "2"})]),
        (37, None, [(POSITION, {"position": "37"})]),
        (None, 20.0, [(WAIT_UNDER_MINUTE, {})]),
        (None, 60.0, [(WAIT_UNDER_MINUTE, {})]),
        (None, 60.5, [(WAIT_MINUTES, {"minutes": "2"})]),
        (None, 179.0, [(WAIT_MINUTES, {"minutes": "3"})]),
        (3, 1500.0, [(POSITION, {"position": "3"}), (WAIT_MINUTES, {"minutes": "25"})]),
        (None, math.inf, []),
        (None, None, []),
    ],
)
def test_announcement_phrases(
    position: int | None, wait_s: float | None, expected: list[tuple[str, dict[str, str]]]
) -> None:
    assert announcement_phrases(position, wait_s) == expected


LIB = load_phrase_library(REPO / "scripts_lib")


def test_the_announcement_phrases_are_ours_in_both_languages() -> None:
    for pid in PHRASE_IDS:
        phrase = LIB.get(pid)
        assert phrase.row is None  # ours, not the manual's
        assert set(phrase.text) == {"zh", "en"}
    assert LIB.fill(POSITION, "en", {"position": "12"}) == "You are number 12 in the queue."
    assert LIB.fill(POSITION, "zh", {"position": "12"}) == "您目前排在第12位。"
    assert "about 7 minutes" in LIB.fill(WAIT_MINUTES, "en", {"minutes": "7"})
    assert "约7分钟" in LIB.fill(WAIT_MINUTES, "zh", {"minutes": "7"})


def test_numbers_are_said_as_numbers_prerendered_to_20_on_demand_beyond() -> None:
    planned = {item.file: item.text for item in LIB.render_plan()}
    for lang in ("zh", "en"):
        for n in ("1", "9", "20"):
            files = LIB.media_files(POSITION, lang, {"position": n})
            # one file for the whole number ("twelve"), not one per digit
            assert f"slot_position__{lang}__{n}" in files
            assert all(f in planned for f in files)
            assert planned[f"slot_position__{lang}__{n}"] == n
            assert f"slot_minutes__{lang}__{n}" in LIB.media_files(
                WAIT_MINUTES, lang, {"minutes": n}
            )
        far = LIB.media_files(POSITION, lang, {"position": "137"})
        assert f"slot_position__{lang}__137" in far
        assert f"slot_position__{lang}__137" not in planned  # rendered when first needed


def test_a_number_slot_takes_only_a_number() -> None:
    with pytest.raises(PhraseError, match="take a number"):
        LIB.fill(POSITION, "en", {"position": "first"})
    with pytest.raises(PhraseError, match="take a number"):
        LIB.media_files(WAIT_MINUTES, "zh", {"minutes": "2.5"})
