"""The caller's audio is tapped only when something reads it: from answer in a flow with a
listen node or an audio trigger; for a menu caller, once bridged with an agent."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from ivr_sim import _FLOWS

from cti.features.ivr.call_script import IvrCallScript
from cti.platform.settings import Settings


def script() -> IvrCallScript:
    runner = cast(Any, SimpleNamespace(flow_source=SimpleNamespace(flows=_FLOWS)))
    return IvrCallScript(runner, cast(Any, None), Settings(), None, "main_menu")


def test_menus_do_not_read_the_callers_audio() -> None:
    assert not script()._listens("main_menu")
    assert not script()._listens("queue_callback")


def test_the_agent_conversation_reads_it() -> None:
    assert script()._listens("agent_greeting")


def test_an_unknown_flow_is_taken_to_listen() -> None:
    assert script()._listens("no_such_flow")  # taps rather than miss a silent caller


def test_a_caller_just_answered_into_a_listening_flow_joins_the_taps_bridge_itself() -> None:
    assert script()._joins_caller("agent_greeting", fresh=True)


def test_menus_adopted_calls_and_the_setting_off_get_no_joined_tap() -> None:
    assert not script()._joins_caller("main_menu", fresh=True)  # nothing reads the audio
    assert not script()._joins_caller("agent_greeting", fresh=False)  # adopted: the snoop
    off = script()
    off.settings = Settings(detection={"tap_joins_caller": False})  # type: ignore[arg-type]
    assert not off._joins_caller("agent_greeting", fresh=True)
    watch_off = script()
    watch_off.settings = Settings(detection={"auto_start": False})  # type: ignore[arg-type]
    assert not watch_off._joins_caller("agent_greeting", fresh=True)
