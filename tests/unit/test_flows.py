"""The callers' phone menu (ivr_flows/main_menu.yaml) and the flow loader's checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ivr_sim import CLOSED, REPO, SimCall, library

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.loader import FlowRefs, FlowStore, load_flows
from cti.platform.errors import ConfigError


def routed(sim: SimCall) -> c.RouteToQueue | None:
    hit = sim.first(c.RouteToQueue)
    return hit[1] if hit else None  # type: ignore[return-value]


def test_welcome_then_language_menu() -> None:
    sim = SimCall.start("main_menu")
    sim.run_until(3.0)
    assert [p for _, p in sim.plays()] == ["menu_welcome", "menu_language"]


@pytest.mark.parametrize(
    ("language_digit", "menu_digit", "queue", "skill", "lang"),
    [
        ("1", "1", "billing", "billing", "zh"),
        ("1", "2", "tech_support", "tech", "zh"),
        ("1", "3", "complaints", "complaints", "zh"),
        ("1", "0", "general", "general", "zh"),
        ("2", "1", "billing", "billing", "en"),
        ("2", "0", "general", "general", "en"),
    ],
)
def test_main_menu_digit_routes_to_queue_with_skill(
    language_digit: str, menu_digit: str, queue: str, skill: str, lang: str
) -> None:
    sim = SimCall.start("main_menu")
    sim.run_until(5.0)
    sim.feed(e.Dtmf(language_digit))
    sim.run_until(6.0)
    assert sim.plays()[-1][1] == "menu_main"
    sim.feed(e.Dtmf(menu_digit))
    sim.run()
    assert routed(sim) == c.RouteToQueue(queue, skill, lang)
    play_langs = {cmd.lang for _, cmd in sim.of(c.Play)[2:]}  # type: ignore[attr-defined]
    assert play_langs == {lang}
    assert not sim.ended  # the queue has the call now


def test_dtmf_during_a_prompt_stops_it() -> None:
    sim = SimCall.start("main_menu")
    sim.run_until(2.5)  # language menu is playing
    out = sim.feed(e.Dtmf("1"))
    assert isinstance(out[0], c.StopPlayback)


def test_invalid_input_repeats_at_most_twice_then_goes_to_an_agent() -> None:
    sim = SimCall.start("main_menu")
    sim.run_until(5.0)
    for _ in range(3):
        sim.feed(e.Dtmf("9"))
        sim.run_until(sim.now + 4.5)  # "invalid" (2 s), then the menu again (2 s)
    sim.run()
    phrases = [p for _, p in sim.plays()]
    assert phrases == [
        "menu_welcome", "menu_language",
        "menu_invalid", "menu_language",
        "menu_invalid", "menu_language",
        "menu_transfer",
    ]
    assert routed(sim) == c.RouteToQueue("general", "general", "zh")


def test_no_input_repeats_twice_after_5s_each_then_goes_to_an_agent() -> None:
    sim = SimCall.start("main_menu")
    sim.run()
    plays = sim.plays()
    assert [p for _, p in plays] == [
        "menu_welcome", "menu_language",
        "menu_invalid", "menu_language",
        "menu_invalid", "menu_language",
        "menu_transfer",
    ]
    # each no-input judged 5 s after the menu prompt ended (prompts last 2 s here)
    assert [t for t, _ in plays] == pytest.approx([0, 2, 9, 11, 18, 20, 27])
    assert routed(sim) == c.RouteToQueue("general", "general", "zh")


def test_vip_caller_skips_the_menu() -> None:
    sim = SimCall.start("main_menu", vip=True)
    sim.run()
    assert [p for _, p in sim.plays()] == ["menu_transfer"]
    assert routed(sim) == c.RouteToQueue("vip", "vip_care", "zh")


def test_outside_business_hours_closed_message_with_callback() -> None:
    sim = SimCall.start("main_menu", at=CLOSED)
    sim.run_until(2.5)
    assert [p for _, p in sim.plays()] == ["menu_closed"]
    sim.feed(e.Dtmf("1"))
    sim.run()
    assert [p for _, p in sim.plays()][-1] == "menu_callback_confirmed"
    assert [a.detail["number"] for a in sim.audits("callback_requested")] == ["13800000000"]
    assert sim.ended
    assert routed(sim) is None


def test_outside_business_hours_without_answer_says_goodbye() -> None:
    sim = SimCall.start("main_menu", at=CLOSED, vip=True)
    sim.run()
    assert [p for _, p in sim.plays()] == [
        "menu_closed", "menu_invalid", "menu_closed", "menu_goodbye"
    ]
    assert sim.ended


def test_agent_can_start_a_procedure_during_the_menu_and_the_menu_resumes() -> None:
    sim = SimCall.start("main_menu")
    sim.run_until(3.0)
    sim.feed(e.StartProcedure("greet_reply", "agent"))
    sim.run_until(5.5)
    assert [p for _, p in sim.plays()][-2:] == ["greeting_reply", "menu_language"]


# -- the loader ---------------------------------------------------------------------------------


def refs() -> FlowRefs:
    lib = library()
    queues = {"billing", "tech_support", "complaints", "general", "vip"}
    return FlowRefs(lib.phrases, lib.languages, queues, lib.forbidden)


@pytest.fixture
def flows_copy(tmp_path: Path) -> Path:
    target = tmp_path / "ivr_flows"
    shutil.copytree(REPO / "ivr_flows", target)
    return target


def test_repository_flows_load_with_queue_check(flows_copy: Path) -> None:
    assert set(load_flows(flows_copy, refs())) == {
        "main_menu", "agent_greeting", "queue_callback", "queue_voicemail", "queue_survey",
        "queue_callback_left",
    }


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("next: billing_queue}", "next: billing_q}", "main_menu.yaml:45:48: nodes.billing.next: no node named 'billing_q'"),  # noqa: E501
        ("phrase: menu_welcome,", "phrase: menu_welcom,", "main_menu.yaml:25:25: nodes.welcome.phrase: no phrase 'menu_welcom'"),  # noqa: E501
        ("queue: billing, skill", "queue: bills, skill", "main_menu.yaml:46:32: nodes.billing_queue.queue: unknown queue 'bills'"),  # noqa: E501
        ('"1": billing,', '"1": support,', "nodes.billing: unreachable from start"),
        ("type: menu\n    prompt: menu_main", "type: menuu\n    prompt: menu_main", "main_menu.yaml:37:3: nodes.main: Input tag 'menuu'"),  # noqa: E501
        ("timeout: 5\n    retries: 2\n    invalid_prompt: menu_invalid\n    on_fail: agent_transfer\n  lang_zh",  # noqa: E501
         "timeout: 5\n    retries: 2\n    invalid_prompt: menu_invalid\n    on_fail: agent_transfer\n    colour: red\n  lang_zh",  # noqa: E501
         "nodes.language.menu.colour: Extra inputs are not permitted"),
        ("cases: {yes: vip_transfer, no: welcome}", "cases: {yes: vip_transfer, maybe: welcome}",
         "nodes.vip.cases: vip needs the cases no, yes"),
        ("# The callers' phone menu.", "# 听不见就算了",
         "main_menu.yaml:1: forbidden phrase '听不见就算了'"),
    ],
)
def test_flow_errors_name_file_line_column_and_reason(
    flows_copy: Path, old: str, new: str, message: str
) -> None:
    path = flows_copy / "main_menu.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_flows(flows_copy, refs())
    assert message in info.value.message


def test_loop_of_immediate_nodes_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(
        "name: loop\nstart: a\nnodes:\n"
        "  a: {type: language, language: zh, next: b}\n"
        "  b: {type: language, language: en, next: a}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"loop.yaml:4:3: nodes.a: loop without a prompt"):
        load_flows(tmp_path, refs())


def test_a_procedure_flow_with_a_direct_hangup_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "rude.yaml").write_text(
        "name: rude\nkind: procedure\nstart: bye\nnodes:\n"
        "  bye: {type: play, phrase: noisy_goodbye, next: cut}\n"
        "  cut: {type: hangup}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="direct hang-up at cut"):
        load_flows(tmp_path, refs())


def test_hot_reload_keeps_the_old_flows_when_the_new_file_is_wrong(flows_copy: Path) -> None:
    store = FlowStore(flows_copy, refs())
    store.load()
    before = store.flows
    path = flows_copy / "main_menu.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("start: hours", "start: nowhere"),
                    encoding="utf-8")
    assert store.reload() is False
    assert store.flows is before
    assert store.last_error is not None
    assert "previous flows stay in force" in store.last_error
    assert "main_menu.yaml:6:1: start: no node named 'nowhere'" in store.last_error
    fixed = path.read_text(encoding="utf-8").replace("start: nowhere", "start: hours")
    path.write_text(fixed.replace("timeout: 6", "timeout: 8"), encoding="utf-8")
    assert store.reload() is True
    assert store.flows["main_menu"].nodes["closed"].timeout == 8  # type: ignore[union-attr]


# -- no dead air: where a procedure can end early, a next step that acts -------------------------


def write_flow(flows: Path, name: str, nodes: str) -> Path:
    path = flows / f"{name}.yaml"
    path.write_text(f"name: {name}\nstart: greeting\nnodes:\n{nodes}", encoding="utf-8")
    return path


GREETING = "  greeting: {type: play, phrase: greeting_answer, next: talk}\n"


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ("  talk: {type: listen}\n",
         "x.yaml:5:3: nodes.talk: a listen node needs `then:`"),
        ("  talk: {type: listen, then: talk}\n",
         "x.yaml:5:24: nodes.talk.then: leads to listen 'talk', where the caller would hear "
         "nothing (dead air)"),
        ("  talk: {type: listen, then: bye}\n  bye: {type: hangup}\n",
         "x.yaml:5:24: nodes.talk.then: leads to hangup 'bye'"),
        ("  talk: {type: listen, then: lang}\n  lang: {type: language, language: en, next: again}\n"
         "  again: {type: listen, then: lang}\n",
         "x.yaml:5:24: nodes.talk.then: leads to listen 'again'"),
        ("  talk: {type: listen, then: hold}\n  hold: {type: moh, on: {'agent:resume': talk}}\n",
         "x.yaml:5:24: nodes.talk.then: leads to moh 'hold'"),
        ("  talk: {type: listen, then: idle}\n  idle: {type: wait, on: {dtmf: talk}}\n",
         "x.yaml:6:3: nodes.idle: a wait without `seconds` in a flow waits on nothing"),
        ("  talk: {type: listen, then: nowhere}\n",
         "x.yaml:5:24: nodes.talk.then: no node named 'nowhere'"),
    ],
)
def test_a_flow_that_could_leave_the_caller_in_dead_air_is_rejected(
    tmp_path: Path, nodes: str, message: str
) -> None:
    path = write_flow(tmp_path, "x", GREETING + nodes)
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[4].startswith("  talk:")
    with pytest.raises(ConfigError) as info:
        load_flows(tmp_path, refs())
    assert f"{tmp_path}/{message}" in info.value.message, info.value.message


@pytest.mark.parametrize(
    "then_nodes",
    [
        "  next: {type: play, phrase: menu_transfer, next: q}\n"
        "  q: {type: route, queue: general}\n",
        "  next: {type: menu, prompt: menu_main, options: {'0': q}, on_fail: q}\n"
        "  q: {type: route, queue: general}\n",
        "  next: {type: wait, seconds: 2, next: q}\n  q: {type: route, queue: general}\n",
        "  next: {type: branch, test: vip, cases: {yes: q, no: r}}\n"
        "  q: {type: route, queue: vip}\n  r: {type: route, queue: general}\n",
    ],
)
def test_a_listen_node_whose_then_acts_is_accepted(tmp_path: Path, then_nodes: str) -> None:
    write_flow(tmp_path, "x", GREETING + "  talk: {type: listen, then: next}\n" + then_nodes)
    assert load_flows(tmp_path, refs())["x"].nodes["talk"].then == "next"  # type: ignore[union-attr]


def test_a_procedure_node_nothing_can_end_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "stuck.yaml").write_text(
        "name: stuck\nkind: procedure\nstart: say\nnodes:\n"
        "  say: {type: play, phrase: please_hold, next: music, on: {speech: done}}\n"
        "  music: {type: moh}\n"
        "  done: {type: end}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_flows(tmp_path, refs())
    assert (f"{tmp_path}/stuck.yaml:6:3: nodes.music: moh without `on:` in a procedure: nothing "
            "ends it") in info.value.message


def test_every_built_in_procedure_passes_the_flow_checks() -> None:
    from cti.domain.ivr.config import ProcedureSettings
    from cti.domain.ivr.loader import check_flow
    from cti.domain.ivr.procedures import build_procedures

    for name, flow in build_procedures(ProcedureSettings()).items():
        assert check_flow(flow, refs(), name) == [], name


def test_the_shipped_agent_flow_names_its_next_step(flows_copy: Path) -> None:
    path = flows_copy / "agent_greeting.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("{type: listen, then: transfer}", "{type: listen}"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"agent_greeting.yaml:\d+:3: nodes.conversation: a "
                                          r"listen node needs `then:`"):
        load_flows(flows_copy, refs())
