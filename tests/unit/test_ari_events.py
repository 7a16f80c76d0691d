from __future__ import annotations

from cti.platform.ari.events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    PlaybackFinished,
    StasisStart,
    UnknownEvent,
    channel_ids_of,
    parse_event,
)

CHANNEL = {"id": "1700.1", "name": "PJSIP/anonymous-00000001", "state": "Ring",
           "caller": {"name": "Caller 1", "number": "+49305551"},
           "dialplan": {"context": "from-callers", "exten": "100", "priority": 1}}


def test_stasis_start_carries_role_and_dialled_number() -> None:
    ev = parse_event({"type": "StasisStart", "application": "cti", "channel": CHANNEL,
                      "args": ["inbound", "100"]})
    assert isinstance(ev, StasisStart)
    assert ev.args == ["inbound", "100"]
    assert ev.channel.caller.number == "+49305551"
    assert channel_ids_of(ev) == ("1700.1",)


def test_channel_destroyed_has_cause() -> None:
    ev = parse_event({"type": "ChannelDestroyed", "channel": CHANNEL, "cause": 16,
                      "cause_txt": "Normal Clearing"})
    assert isinstance(ev, ChannelDestroyed)
    assert (ev.cause, ev.cause_txt) == (16, "Normal Clearing")


def test_playback_events_are_routed_by_target_channel() -> None:
    ev = parse_event({"type": "PlaybackFinished",
                      "playback": {"id": "p1", "target_uri": "channel:1700.1", "state": "done"}})
    assert isinstance(ev, PlaybackFinished)
    assert channel_ids_of(ev) == ("1700.1",)


def test_bridge_playback_has_no_channel() -> None:
    ev = parse_event({"type": "PlaybackFinished",
                      "playback": {"id": "p1", "target_uri": "bridge:b1"}})
    assert channel_ids_of(ev) == ()


def test_dtmf_digit() -> None:
    ev = parse_event({"type": "ChannelDtmfReceived", "channel": CHANNEL, "digit": "5",
                      "duration_ms": 100})
    assert isinstance(ev, ChannelDtmfReceived)
    assert ev.digit == "5"


def test_unknown_and_malformed_events_do_not_raise() -> None:
    assert isinstance(parse_event({"type": "DeviceStateChanged", "x": 1}), UnknownEvent)
    broken = parse_event({"type": "StasisStart"})  # no channel
    assert isinstance(broken, UnknownEvent)
    assert broken.type == "StasisStart"
