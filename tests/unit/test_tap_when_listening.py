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
