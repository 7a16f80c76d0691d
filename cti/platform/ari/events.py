"""Typed ARI events: a pydantic discriminated union of the events the service uses.

Field names follow ARI's JSON. Unknown event types parse as `UnknownEvent`, so a newer
Asterisk never breaks the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CallerId(_Model):
    name: str = ""
    number: str = ""


class DialplanCep(_Model):
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""


class Channel(_Model):
    id: str
    name: str = ""
    state: str = ""
    caller: CallerId = CallerId()
    connected: CallerId = CallerId()
    dialplan: DialplanCep = DialplanCep()
    creationtime: str = ""
    language: str = ""


class Bridge(_Model):
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    name: str = ""
    channels: list[str] = Field(default_factory=list)


class Playback(_Model):
    id: str
    media_uri: str = ""
    target_uri: str = ""
    state: str = ""
    language: str = ""


class LiveRecording(_Model):
    name: str
    format: str = ""
    state: str = ""
    target_uri: str = ""
    duration: int | None = None
    cause: str | None = None


class _Event(_Model):
    application: str = ""
    timestamp: str = ""
    asterisk_id: str = ""
    # Our id of the Asterisk the event came from (settings `ari.id` / `asterisks[].id`),
    # set by the client that read it: one process may drive several.
    pbx: str = ""


class StasisStart(_Event):
    type: Literal["StasisStart"]
    channel: Channel
    args: list[str] = Field(default_factory=list)
    replace_channel: Channel | None = None


class StasisEnd(_Event):
    type: Literal["StasisEnd"]
    channel: Channel


class ChannelDestroyed(_Event):
    type: Literal["ChannelDestroyed"]
    channel: Channel
    cause: int = 0
    cause_txt: str = ""


class ChannelHangupRequest(_Event):
    type: Literal["ChannelHangupRequest"]
    channel: Channel
    cause: int | None = None
    soft: bool | None = None


class ChannelStateChange(_Event):
    type: Literal["ChannelStateChange"]
    channel: Channel


class ChannelDtmfReceived(_Event):
    type: Literal["ChannelDtmfReceived"]
    channel: Channel
    digit: str
    duration_ms: int = 0


class ChannelTalkingStarted(_Event):
    type: Literal["ChannelTalkingStarted"]
    channel: Channel


class ChannelTalkingFinished(_Event):
    type: Literal["ChannelTalkingFinished"]
    channel: Channel
    duration: int = 0


class ChannelVarset(_Event):
    type: Literal["ChannelVarset"]
    variable: str
    value: str = ""
    channel: Channel | None = None


class ChannelHold(_Event):
    type: Literal["ChannelHold"]
    channel: Channel


class ChannelUnhold(_Event):
    type: Literal["ChannelUnhold"]
    channel: Channel


class PlaybackStarted(_Event):
    type: Literal["PlaybackStarted"]
    playback: Playback


class PlaybackContinuing(_Event):
    type: Literal["PlaybackContinuing"]
    playback: Playback


class PlaybackFinished(_Event):
    type: Literal["PlaybackFinished"]
    playback: Playback


class ChannelEnteredBridge(_Event):
    type: Literal["ChannelEnteredBridge"]
    bridge: Bridge
    channel: Channel


class ChannelLeftBridge(_Event):
    type: Literal["ChannelLeftBridge"]
    bridge: Bridge
    channel: Channel


class BridgeDestroyed(_Event):
    type: Literal["BridgeDestroyed"]
    bridge: Bridge


class Dial(_Event):
    type: Literal["Dial"]
    peer: Channel
    caller: Channel | None = None
    dialstatus: str = ""
    dialstring: str = ""


class RecordingStarted(_Event):
    type: Literal["RecordingStarted"]
    recording: LiveRecording


class RecordingFinished(_Event):
    type: Literal["RecordingFinished"]
    recording: LiveRecording


class RecordingFailed(_Event):
    type: Literal["RecordingFailed"]
    recording: LiveRecording


class UnknownEvent(_Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    pbx: str = ""


KnownEvent = Annotated[
    StasisStart
    | StasisEnd
    | ChannelDestroyed
    | ChannelHangupRequest
    | ChannelStateChange
    | ChannelDtmfReceived
    | ChannelTalkingStarted
    | ChannelTalkingFinished
    | ChannelVarset
    | ChannelHold
    | ChannelUnhold
    | PlaybackStarted
    | PlaybackContinuing
    | PlaybackFinished
    | ChannelEnteredBridge
    | ChannelLeftBridge
    | BridgeDestroyed
    | Dial
    | RecordingStarted
    | RecordingFinished
    | RecordingFailed,
    Field(discriminator="type"),
]
AriEvent = KnownEvent | UnknownEvent

_known: TypeAdapter[KnownEvent] = TypeAdapter(KnownEvent)
_KNOWN_TYPES = frozenset(
    t.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for t in (
        StasisStart, StasisEnd, ChannelDestroyed, ChannelHangupRequest, ChannelStateChange,
        ChannelDtmfReceived, ChannelTalkingStarted, ChannelTalkingFinished, ChannelVarset,
        ChannelHold, ChannelUnhold, PlaybackStarted, PlaybackContinuing, PlaybackFinished,
        ChannelEnteredBridge, ChannelLeftBridge, BridgeDestroyed, Dial, RecordingStarted,
        RecordingFinished, RecordingFailed,
    )
)


def parse_event(data: dict[str, Any]) -> AriEvent:
    """Parse one event from the ARI WebSocket; unknown or malformed ones become UnknownEvent."""
    if data.get("type") in _KNOWN_TYPES:
        try:
            return _known.validate_python(data)
        except ValidationError:
            pass
    return UnknownEvent.model_validate({**data, "type": str(data.get("type", "?"))})


def channel_ids_of(event: AriEvent) -> tuple[str, ...]:
    """The channels an event concerns, for per-call dispatch."""
    # The model's fields from its __dict__: getattr of a field the event type lacks goes
    # through pydantic's __getattr__ and an AttributeError, the dearest part of dispatching.
    fields = event.__dict__
    ids: list[str] = []
    for attr in ("channel", "peer", "caller", "replace_channel"):
        ch = fields.get(attr)
        if isinstance(ch, Channel):
            ids.append(ch.id)
    for attr in ("playback", "recording"):
        obj = fields.get(attr)
        target = getattr(obj, "target_uri", "") if obj is not None else ""
        if target.startswith("channel:"):
            ids.append(target.removeprefix("channel:"))
    return tuple(ids)
