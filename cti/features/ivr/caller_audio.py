"""Taps the caller's audio for the detector: the caller's audio -> bridge -> externalMedia (RTP
to a UDP port of ours) -> classifier windows -> the call's IVR.

Two ways into the tap's bridge (docs/line_watch.md, "The tap"):

- **the caller's own channel** (`join`, then `start`), while the caller is in the IVR and in
  no other bridge: two channels in Asterisk (the caller and the externalMedia channel), no
  audiohook, and with the caller's own G.711 on the tap nothing is transcoded. The prompts
  played on the caller's channel reach the caller only (the tap hears no prompt, and hears
  nothing of the caller while a prompt plays).
- **a snoop on the caller** (spy=in), where the caller is in another bridge (an agent's, a
  queue's hold music) or was never joined: three channels, as the tap always was.

The IVR hands the caller on (queue, hold music, a recording) with `leave`: the caller goes
out of the tap's bridge and a snoop takes its place; an ACD that bridges the caller moves it out
by itself (`caller_bridged_elsewhere`). The tap's channel and bridge ids keep the conventions a
restarted service uses to find a dead process's taps (TAP_SUFFIXES, TAP_BRIDGE_PREFIX).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from cti.domain.audio_classifier import WindowFeatures
from cti.domain.ivr.config import DetectionSettings
from cti.features.calls.registry import CallRegistry
from cti.platform.audio.rtp_stream import CallerAudioStream, Codec, open_caller_audio
from cti.platform.errors import TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import ChannelInfo, Telephony

log = get_logger(__name__)

# Channel ids of a call's tap end with these, so a restarted service can tell them from callers.
TAP_SUFFIXES = ("-snoop", "-media")
TAP_BRIDGE_PREFIX = "cti-tap-"
STASIS_RETRIES, STASIS_RETRY_S = 40, 0.025  # up to 1 s for the tap channels to enter Stasis
# What Asterisk calls the caller's codec (CHANNEL(audionativeformat)) -> the tap's format
NATIVE_G711: dict[str, Codec] = {"ulaw": "ulaw", "alaw": "alaw"}


def is_tap_channel(channel_id: str) -> bool:
    return channel_id.endswith(TAP_SUFFIXES)


def joined_tap_format(native: str | None, fallback: Codec) -> Codec:
    """The externalMedia format of a tap bridged with the caller itself: the caller's own
    G.711 (Asterisk then copies the caller's frames, no transcoding; the classifier is
    calibrated on G.711), else `fallback`. Asterisk may list several ("(ulaw|alaw)")."""
    names = (native or "").strip("()").split("|")
    return NATIVE_G711.get(names[0].strip(), fallback)


class CallerAudioTap:
    def __init__(
        self,
        telephony: Telephony,
        registry: CallRegistry,
        detection: DetectionSettings,
        host: str = "127.0.0.1",
    ) -> None:
        self.telephony = telephony
        self.registry = registry
        self.detection = detection
        self.host = host
        self._stream: CallerAudioStream | None = None
        self._bridge: str | None = None
        self._channels: list[str] = []
        self._call_id = ""
        self._caller = ""
        self._tag = ""
        self._caller_in = False  # the caller's own channel is in the tap's bridge
        self._snooped = False  # a snoop on the caller is (being) put in the bridge

    @property
    def joined(self) -> bool:
        """The caller's channel itself is in the tap's bridge (not handed on since)."""
        return self._caller_in

    def _ids(self, call_id: str, caller_channel: str) -> None:
        if not self._tag:
            # Ids of this tap's own: a process that adopts the call makes its tap while the
            # dead process's one may still be there (the resync hangs that up, removes its
            # bridge).
            self._tag = uuid.uuid4().hex[:8]
            self._call_id, self._caller = call_id, caller_channel
            self._bridge = f"{TAP_BRIDGE_PREFIX}{call_id}-{self._tag}"

    async def join(self, call_id: str, caller_channel: str) -> bool:
        """Put the caller's channel in a bridge of the tap's own; `start` adds the rest. Done
        before the IVR plays anything to the caller: a channel that is playing is moved into
        a bridge only once its prompt ends (docs/line_watch.md). False, and nothing left
        behind, if the PBX refused."""
        self._ids(call_id, caller_channel)
        assert self._bridge is not None
        try:
            await self.telephony.create_bridge(self._bridge, "mixing")
            await self.telephony.add_to_bridge(self._bridge, [caller_channel])
        except TelephonyError as exc:
            log.warning("audio_tap.join_failed", error=exc.message)
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(self._bridge)
            self._bridge, self._tag = None, ""
            return False
        self._caller_in = True
        return True

    async def start(
        self, call_id: str, caller_channel: str, on_window: Callable[[WindowFeatures], None]
    ) -> None:
        """The externalMedia channel and the RTP socket; and a snoop on the caller unless
        the caller itself was joined (`join`)."""
        self._ids(call_id, caller_channel)
        bridge_id = self._bridge
        assert bridge_id is not None
        joined = self._caller_in
        if joined:
            # The caller's codec, so the bridge copies its frames as they are.
            try:
                native = await self.telephony.get_variable(
                    caller_channel, "CHANNEL(audionativeformat)")
            except TelephonyError:
                native = None
            fmt = joined_tap_format(native, "ulaw")
        else:
            fmt = self.detection.tap_format
        stream = await open_caller_audio(
            self.host, fmt, self.detection.classifier, self.detection.window_ms, on_window
        )
        self._stream = stream
        port = stream.port
        media_id = f"{call_id}-{self._tag}-media"
        # Attach first: its StasisStart must reach this call, not be taken for a new caller.
        self._attach(media_id)
        try:
            # At once, and added in one request: every ARI request is HTTP parsing and JSON
            # in Asterisk, its dearest work per call after the audio.
            requests: list[Coroutine[Any, Any, object]] = [self.telephony.external_media(
                external_host=f"{self.host}:{port}", fmt=fmt, channel_id=media_id,
                near=caller_channel,  # on the caller's PBX
            )]
            added = [media_id]
            if not joined:
                snoop_id = self._snoop_id()
                requests.append(self.telephony.snoop(
                    caller_channel, spy="in", app_args="tap", snoop_id=snoop_id))
                requests.append(self._create_bridge(bridge_id))
                added.append(snoop_id)
            # all settled before stop() cleans up
            made = await asyncio.gather(*requests, return_exceptions=True)
            for outcome in made:
                if isinstance(outcome, BaseException):
                    raise outcome
            media = made[0]
            assert isinstance(media, ChannelInfo)
            await self._listen_only_to(media_id, media.variables, stream)
            await self._add_when_in_stasis(bridge_id, added)
        except BaseException:
            self.close_socket()  # the PBX side is cleaned up by stop()
            raise
        log.info("audio_tap.started", port=port, fmt=fmt, caller_joined=joined)

    async def _create_bridge(self, bridge_id: str) -> None:
        await self.telephony.create_bridge(bridge_id, "mixing")

    def _attach(self, channel_id: str) -> None:
        self.registry.attach_channel(self._call_id, channel_id)
        self._channels.append(channel_id)

    def _snoop_id(self) -> str:
        snoop_id = f"{self._call_id}-{self._tag}-snoop"
        self._attach(snoop_id)
        self._snooped = True
        return snoop_id

    async def leave(self) -> None:
        """The IVR hands the caller on (a queue, hold music, a recording): the caller's
        channel leaves the tap's bridge, a snoop on it takes its place. Waits for a prompt
        playing to the caller to end (Asterisk moves a playing channel only then). Never
        raises: the hand-on goes ahead whatever the tap does."""
        if not self._caller_in or self._bridge is None:
            return
        self._caller_in = False
        try:
            await self.telephony.remove_from_bridge(self._bridge, [self._caller])
        except TelephonyError as exc:
            log.warning("audio_tap.leave_failed", error=exc.message)
        await self._snoop_in()

    async def caller_bridged_elsewhere(self) -> None:
        """The caller entered another bridge (an agent's), which took it out of the tap's:
        a snoop hears it there."""
        if self._caller_in:
            self._caller_in = False
            await self._snoop_in()

    async def _snoop_in(self) -> None:
        if self._snooped or self._bridge is None:
            return
        snoop_id = self._snoop_id()
        try:
            await self.telephony.snoop(self._caller, spy="in", app_args="tap",
                                       snoop_id=snoop_id)
            await self._add_when_in_stasis(self._bridge, [snoop_id])
        except TelephonyError as exc:
            # Detection is a help, not a condition: the call goes on without it.
            log.warning("audio_tap.snoop_failed", error=exc.message)

    async def _listen_only_to(
        self, media_id: str, variables: Mapping[str, str], stream: CallerAudioStream
    ) -> None:
        """Hear only the externalMedia channel's RTP port (Asterisk names it in a variable,
        returned with the channel since Asterisk 16.6; asked for when it is not). The port
        is shared with other calls' RTP: a tap whose sender stays unknown hears nothing."""
        port = variables.get("UNICASTRTP_LOCAL_PORT")
        if port is None:
            try:
                port = await self.telephony.get_variable(media_id, "UNICASTRTP_LOCAL_PORT")
            except TelephonyError as exc:
                log.warning("audio_tap.sender_unknown", error=exc.message)
                return
        if port.isdigit():
            # Its address too: two PBXs may send from the same port number.
            address = variables.get("UNICASTRTP_LOCAL_ADDRESS", "").strip("[]")
            stream.hear_only(int(port), address or None)
        else:
            log.warning("audio_tap.sender_unknown", value=port)

    async def _add_when_in_stasis(self, bridge: str, channels: list[str]) -> None:
        # ARI creates the snoop and externalMedia channels at once but they enter Stasis a
        # moment later; addChannel before that is refused with 422 "Channel not in Stasis
        # application" (seen with ~10 calls starting together). Their StasisStart reaches the
        # call's queue, which waits behind this start(), so poll instead of waiting for it.
        for attempt in range(STASIS_RETRIES):
            try:
                # All or none: a channel not yet in Stasis refuses the whole request.
                await self.telephony.add_to_bridge(bridge, channels)
                return
            except TelephonyError as exc:
                if "422" not in exc.message or attempt == STASIS_RETRIES - 1:
                    raise
            await asyncio.sleep(STASIS_RETRY_S)

    def close_socket(self) -> None:
        """Stop receiving the caller's audio now (synchronous: safe from a done-callback)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    async def stop(self) -> None:
        for ch in self._channels:
            with contextlib.suppress(TelephonyError):
                await self.telephony.hangup(ch)
            self.registry.detach_channel(ch)
        self._channels.clear()
        if self._bridge is not None:
            # A caller still in it is let go (it stays in Stasis, in no bridge).
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(self._bridge)
            self._bridge = None
        self._caller_in = False
        self.close_socket()
