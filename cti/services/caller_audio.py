"""Taps the caller's audio for the detector: snoop (what the caller sends) -> bridge ->
externalMedia (RTP to a UDP port of ours) -> classifier windows -> the call's IVR."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from cti.adapters.audio.rtp_stream import open_caller_audio
from cti.domain.audio_classifier import WindowFeatures
from cti.domain.ivr.config import DetectionSettings
from cti.errors import TelephonyError
from cti.log import get_logger
from cti.ports import Telephony
from cti.services.call_registry import CallRegistry

log = get_logger(__name__)

# Channel ids of a call's tap end with these, so a restarted service can tell them from callers.
TAP_SUFFIXES = ("-snoop", "-media")


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
        self._transport: asyncio.DatagramTransport | None = None
        self._bridge: str | None = None
        self._channels: list[str] = []

    async def start(
        self, call_id: str, caller_channel: str, on_window: Callable[[WindowFeatures], None]
    ) -> None:
        transport, port = await open_caller_audio(
            self.host, "slin16", self.detection.classifier, self.detection.window_ms, on_window
        )
        self._transport = transport
        snoop_id, media_id = f"{call_id}-snoop", f"{call_id}-media"
        # Attach first: their StasisStart must reach this call, not be taken for a new caller.
        for ch in (snoop_id, media_id):
            self.registry.attach_channel(call_id, ch)
            self._channels.append(ch)
        try:
            await self.telephony.snoop(
                caller_channel, spy="in", app_args="tap", snoop_id=snoop_id
            )
            await self.telephony.external_media(
                external_host=f"{self.host}:{port}", fmt="slin16", channel_id=media_id
            )
            self._bridge = await self.telephony.create_bridge(f"cti-tap-{call_id}", "mixing")
            await self.telephony.add_to_bridge(self._bridge, [snoop_id, media_id])
        except BaseException:
            self.close_socket()  # the PBX side is cleaned up by stop()
            raise
        log.info("audio_tap.started", port=port)

    def close_socket(self) -> None:
        """Stop receiving the caller's audio now (synchronous: safe from a done-callback)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

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
