"""Taps the caller's audio for the detector: snoop (what the caller sends) -> bridge ->
externalMedia (RTP to a UDP port of ours) -> classifier windows -> the call's IVR."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping

from cti.domain.audio_classifier import WindowFeatures
from cti.domain.ivr.config import DetectionSettings
from cti.features.calls.registry import CallRegistry
from cti.platform.audio.rtp_stream import CallerAudioStream, open_caller_audio
from cti.platform.errors import TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import ChannelInfo, Telephony

log = get_logger(__name__)

# Channel ids of a call's tap end with these, so a restarted service can tell them from callers.
TAP_SUFFIXES = ("-snoop", "-media")
TAP_BRIDGE_PREFIX = "cti-tap-"
STASIS_RETRIES, STASIS_RETRY_S = 40, 0.025  # up to 1 s for the tap channels to enter Stasis


def is_tap_channel(channel_id: str) -> bool:
    return channel_id.endswith(TAP_SUFFIXES)


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

    async def start(
        self, call_id: str, caller_channel: str, on_window: Callable[[WindowFeatures], None]
    ) -> None:
        fmt = self.detection.tap_format
        stream = await open_caller_audio(
            self.host, fmt, self.detection.classifier, self.detection.window_ms, on_window
        )
        self._stream = stream
        port = stream.port
        # Ids of this tap's own: a process that adopts the call makes its tap while the dead
        # process's one may still be there (the resync hangs that up and removes its bridge).
        tag = uuid.uuid4().hex[:8]
        snoop_id, media_id = f"{call_id}-{tag}-snoop", f"{call_id}-{tag}-media"
        # Attach first: their StasisStart must reach this call, not be taken for a new caller.
        for ch in (snoop_id, media_id):
            self.registry.attach_channel(call_id, ch)
            self._channels.append(ch)
        bridge_id = f"{TAP_BRIDGE_PREFIX}{call_id}-{tag}"
        self._bridge = bridge_id  # stop() destroys it, made or not
        try:
            # The three at once, and both channels added in one request: the tap costs the
            # PBX five requests (was seven, one after another), and every ARI request is
            # HTTP parsing and JSON in Asterisk, its dearest work per call after the audio.
            made = await asyncio.gather(
                self.telephony.snoop(caller_channel, spy="in", app_args="tap",
                                     snoop_id=snoop_id),
                self.telephony.external_media(
                    external_host=f"{self.host}:{port}", fmt=fmt, channel_id=media_id,
                    near=caller_channel,  # on the caller's PBX, like the snoop
                ),
                self.telephony.create_bridge(bridge_id, "mixing"),
                return_exceptions=True,  # all three settled before stop() cleans up
            )
            for outcome in made:
                if isinstance(outcome, BaseException):
                    raise outcome
            media = made[1]
            assert isinstance(media, ChannelInfo)
            await self._listen_only_to(media_id, media.variables, stream)
            await self._add_when_in_stasis(bridge_id, [snoop_id, media_id])
        except BaseException:
            self.close_socket()  # the PBX side is cleaned up by stop()
            raise
        log.info("audio_tap.started", port=port)

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
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(self._bridge)
            self._bridge = None
        self.close_socket()
