"""Telephony over several Asterisk servers, trunked together: one process drives them all.

Every operation goes to the PBX that holds what it names. Where a thing lives is learned:

- channels: from the events (each client tags them with its PBX id, `AriEvent.pbx`), from
  what this set created (originate, snoop, external media), and, for a channel nobody saw
  yet (a call adopted after a restart), from its id: each Asterisk's `systemname` is its id,
  and Asterisk starts every channel id with it (`pbxa-1796130948.0`);
- bridges: created lazily, on the PBX of the first channels put in them (the ACD names a
  bridge before it adds the caller and the agent leg; both are on the caller's PBX, since an
  agent on another PBX is dialled through the trunk from the caller's);
- playbacks and live recordings: on the PBX of the channel or bridge they play on or record;
- originate: on the PBX of the call it serves (`CTI_CALL_ID`), else of the event being
  handled (a context variable the dispatcher sets), else where the dialled agent is.

An agent's phone is found where it is registered (ARI endpoint state), asked at ring time:
agents move between desks and phones re-register, so a setting would go stale. An agent
registered on another PBX than the call's is dialled `PJSIP/<agent>@<that PBX's id>`, the
trunk endpoint the sandbox (and docs/cluster.md) name after the peer.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cti.platform.ari.events import (
    AriEvent,
    ChannelDestroyed,
    PlaybackFinished,
    StasisStart,
)
from cti.platform.ari.telephony import AriTelephony
from cti.platform.errors import ChannelGone, TelephonyError, TelephonyUnavailable
from cti.platform.log import get_logger
from cti.platform.ports import BridgeInfo, ChannelInfo, Direction

log = get_logger(__name__)

# The PBX whose event is being handled: tasks started while handling it (a call's own task)
# inherit it, so what they create without naming a channel lands on the right Asterisk.
CURRENT_PBX: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_pbx", default=None
)


@dataclass
class _PendingBridge:
    kind: str


class PbxSet:
    """`Telephony` over several `AriTelephony`s, keyed by PBX id (settings order: the first is
    where anything of unknown place goes)."""

    def __init__(self, members: Mapping[str, AriTelephony]) -> None:
        if not members:
            raise ValueError("a PbxSet needs at least one PBX")
        self.members = dict(members)
        self.first = next(iter(self.members))
        self.channels: dict[str, str] = {}
        self.bridges: dict[str, str] = {}
        self.pending_bridges: dict[str, _PendingBridge] = {}
        self.playbacks: dict[str, str] = {}
        self.recordings: dict[str, str] = {}
        # calls whose id is no channel of ours (an agent's outbound call before its customer
        # leg exists): the PBX their first leg went to, so the next legs join it
        self.call_pbx: dict[str, str] = {}
        # the last PBX each agent endpoint (PJSIP resource) was found registered on
        self.endpoint_pbx: dict[str, str] = {}
        # PBXs whose event socket is down: nothing new goes there
        self.lost: set[str] = set()

    # ------------------------------------------------------------------ where things are
    def observe(self, event: AriEvent) -> None:
        """Learn from an event (called by the client's handler, before dispatch)."""
        pbx = event.pbx
        if not pbx:
            return
        if isinstance(event, StasisStart):
            self.channels[event.channel.id] = pbx
        elif isinstance(event, ChannelDestroyed):
            self.channels.pop(event.channel.id, None)
            self.call_pbx.pop(event.channel.id, None)
        elif isinstance(event, PlaybackFinished):
            self.playbacks.pop(event.playback.id, None)

    def pbx_of_channel(self, channel_id: str) -> str | None:
        known = self.channels.get(channel_id)
        if known is not None:
            return known
        for pbx in self.members:  # Asterisk's systemname starts the ids it makes
            if channel_id.startswith(f"{pbx}-"):
                return pbx
        return None

    def owns(self, pbx: str, channel_id: str) -> bool:
        """Is this channel (a call's, by its id) on PBX `pbx`? Unknown ones are the first's."""
        return (self.pbx_of_channel(channel_id) or self.first) == pbx

    def _member(self, pbx: str) -> AriTelephony:
        """A lost PBX fails at once: a host that is down would make each request wait for
        its timeout."""
        if pbx in self.lost:
            raise TelephonyUnavailable(f"PBX {pbx} is lost (its event socket is down)")
        return self.members[pbx]

    def _for_channel(self, channel_id: str) -> AriTelephony:
        pbx = self.pbx_of_channel(channel_id)
        if pbx is None:
            # never seen, no PBX prefix: a single-PBX-era id; the first PBX is the old one
            pbx = self.first
        return self._member(pbx)

    def _creating_pbx(self, call_id: str | None = None) -> str:
        if call_id:
            # our call id is the caller's channel id (an outbound call's: its customer leg's)
            pbx = self.pbx_of_channel(call_id) or self.call_pbx.get(call_id)
            if pbx is not None:
                return pbx
        current = CURRENT_PBX.get()
        if current in self.members:
            return current
        alive = [p for p in self.members if p not in self.lost]
        return alive[0] if alive else self.first

    # ------------------------------------------------------------------ agents' phones
    async def locate_endpoint(self, resource: str, prefer: str) -> str | None:
        """The PBX where PJSIP endpoint `resource` is registered (`prefer` first), or None."""
        async def online(pbx: str) -> bool:
            try:
                data = await self.members[pbx].client.request(
                    "GET", f"endpoints/PJSIP/{resource}"
                )
            except TelephonyError:
                return False
            return str((data or {}).get("state", "")) == "online"

        order = [prefer, *(p for p in self.members if p != prefer)]
        order = [p for p in order if p not in self.lost]
        found = await asyncio.gather(*(online(p) for p in order))
        for pbx, is_online in zip(order, found, strict=True):
            if is_online:
                self.endpoint_pbx[resource] = pbx
                return pbx
        return None

    async def route_endpoint(self, endpoint: str, pbx: str) -> str:
        """`PJSIP/<agent>` as dialled from `pbx`: through the trunk when registered elsewhere."""
        tech, _, resource = endpoint.partition("/")
        if tech.upper() != "PJSIP" or not resource or "@" in resource or len(self.members) < 2:
            return endpoint
        where = await self.locate_endpoint(resource, prefer=pbx)
        if where is None:
            raise TelephonyError(
                f"{endpoint} is not registered on any reachable PBX "
                f"({', '.join(p for p in self.members if p not in self.lost)})"
            )
        return endpoint if where == pbx else f"PJSIP/{resource}@{where}"

    def agents_on(self, pbx: str) -> set[str]:
        """Endpoint resources last found registered on `pbx`."""
        return {r for r, p in self.endpoint_pbx.items() if p == pbx}

    # ------------------------------------------------------------------ channels
    async def answer(self, channel_id: str) -> None:
        await self._for_channel(channel_id).answer(channel_id)

    async def subscribe_channel(self, channel_id: str) -> None:
        await self._for_channel(channel_id).subscribe_channel(channel_id)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self._for_channel(channel_id).hangup(channel_id, reason)

    async def ring(self, channel_id: str) -> None:
        await self._for_channel(channel_id).ring(channel_id)

    async def ring_stop(self, channel_id: str) -> None:
        await self._for_channel(channel_id).ring_stop(channel_id)

    async def play(
        self, channel_id: str, media: Sequence[str], playback_id: str | None = None,
        lang: str | None = None,
    ) -> str:
        pbx = self.pbx_of_channel(channel_id) or self.first
        pid = await self._member(pbx).play(channel_id, media, playback_id, lang)
        self.playbacks[pid] = pbx
        return pid

    async def stop_playback(self, playback_id: str) -> None:
        pbx = self.playbacks.pop(playback_id, None)
        if pbx is not None:
            await self.members[pbx].stop_playback(playback_id)
            return
        await self._on_any(lambda t: t.stop_playback(playback_id))

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self._for_channel(channel_id).start_moh(channel_id, moh_class)

    async def stop_moh(self, channel_id: str) -> None:
        await self._for_channel(channel_id).stop_moh(channel_id)

    async def hold(self, channel_id: str) -> None:
        await self._for_channel(channel_id).hold(channel_id)

    async def unhold(self, channel_id: str) -> None:
        await self._for_channel(channel_id).unhold(channel_id)

    async def mute(self, channel_id: str, direction: Direction = "both") -> None:
        await self._for_channel(channel_id).mute(channel_id, direction)

    async def unmute(self, channel_id: str, direction: Direction = "both") -> None:
        await self._for_channel(channel_id).unmute(channel_id, direction)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self._for_channel(channel_id).set_variable(channel_id, name, value)

    async def get_variable(self, channel_id: str, name: str) -> str:
        return await self._for_channel(channel_id).get_variable(channel_id, name)

    async def talk_detect(self, channel_id: str, silence_ms: int, threshold: int) -> None:
        await self._for_channel(channel_id).talk_detect(channel_id, silence_ms, threshold)

    async def set_volume(
        self, channel_id: str, direction: Literal["TX", "RX"], gain: int
    ) -> None:
        await self._for_channel(channel_id).set_volume(channel_id, direction, gain)

    async def send_dtmf(self, channel_id: str, dtmf: str) -> None:
        await self._for_channel(channel_id).send_dtmf(channel_id, dtmf)

    async def originate(
        self, endpoint: str, *, app_args: str = "", caller_id: str | None = None,
        timeout: int = 30, channel_id: str | None = None,
        variables: Mapping[str, str] | None = None, formats: str | None = None,
    ) -> ChannelInfo:
        call_id = (variables or {}).get("CTI_CALL_ID")
        pbx = self._creating_pbx(call_id)
        if call_id:
            self.call_pbx.setdefault(call_id, pbx)
        if pbx in self.lost:
            raise TelephonyUnavailable(f"PBX {pbx} is unreachable: cannot dial {endpoint}")
        routed = await self.route_endpoint(endpoint, pbx)
        if channel_id:
            self.channels[channel_id] = pbx  # its events may come before originate returns
        info = await self.members[pbx].originate(
            routed, app_args=app_args, caller_id=caller_id, timeout=timeout,
            channel_id=channel_id, variables=variables, formats=formats,
        )
        self.channels[info.id] = pbx
        return info

    async def snoop(
        self, channel_id: str, *, spy: Direction = "in", app_args: str = "",
        snoop_id: str | None = None, whisper: Direction | Literal["none"] = "none",
    ) -> ChannelInfo:
        pbx = self.pbx_of_channel(channel_id) or self.first
        if snoop_id:
            self.channels[snoop_id] = pbx
        info = await self._member(pbx).snoop(
            channel_id, spy=spy, app_args=app_args, snoop_id=snoop_id, whisper=whisper
        )
        self.channels[info.id] = pbx
        return info

    async def external_media(
        self, *, external_host: str, fmt: str = "slin16", channel_id: str | None = None,
        app_args: str = "", near: str | None = None,
    ) -> ChannelInfo:
        # Beside the channel it will be bridged with (the snoop, on the caller's PBX): the
        # task asking may handle no PBX's event, and so not know the call's PBX.
        pbx = (self.pbx_of_channel(near) if near else None) or self._creating_pbx()
        if channel_id:
            self.channels[channel_id] = pbx
        info = await self.members[pbx].external_media(
            external_host=external_host, fmt=fmt, channel_id=channel_id, app_args=app_args
        )
        self.channels[info.id] = pbx
        return info

    async def continue_in_dialplan(
        self, channel_id: str, context: str | None = None, extension: str | None = None,
        priority: int | None = None,
    ) -> None:
        await self._for_channel(channel_id).continue_in_dialplan(
            channel_id, context, extension, priority
        )

    async def redirect(self, channel_id: str, endpoint: str) -> None:
        await self._for_channel(channel_id).redirect(channel_id, endpoint)

    async def rtp_statistics(self, channel_id: str) -> dict[str, Any]:
        return await self._for_channel(channel_id).rtp_statistics(channel_id)

    # ------------------------------------------------------------------ bridges
    async def create_bridge(self, bridge_id: str | None = None, kind: str = "mixing") -> str:
        """Made on its PBX when its first channels arrive (which PBX is not known before)."""
        bid = bridge_id or uuid.uuid4().hex
        self.pending_bridges[bid] = _PendingBridge(kind)
        return bid

    async def _bridge_pbx(self, bridge_id: str, near: str | None = None) -> AriTelephony:
        pending = self.pending_bridges.pop(bridge_id, None)
        if pending is not None:
            pbx = (self.pbx_of_channel(near) if near else None) or self._creating_pbx()
            await self.members[pbx].create_bridge(bridge_id, pending.kind)
            self.bridges[bridge_id] = pbx
            return self.members[pbx]
        return self.members[self.bridges.get(bridge_id, self.first)]

    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        target = await self._bridge_pbx(bridge_id, channel_ids[0] if channel_ids else None)
        await target.add_to_bridge(bridge_id, channel_ids)

    async def remove_from_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        await (await self._bridge_pbx(bridge_id)).remove_from_bridge(bridge_id, channel_ids)

    async def destroy_bridge(self, bridge_id: str) -> None:
        if self.pending_bridges.pop(bridge_id, None) is not None:
            return  # never made
        pbx = self.bridges.pop(bridge_id, None)
        await self.members[pbx or self.first].destroy_bridge(bridge_id)

    async def play_on_bridge(
        self, bridge_id: str, media: Sequence[str], playback_id: str | None = None
    ) -> str:
        target = await self._bridge_pbx(bridge_id)
        pid = await target.play_on_bridge(bridge_id, media, playback_id)
        self.playbacks[pid] = self.bridges.get(bridge_id, self.first)
        return pid

    async def record_bridge(self, bridge_id: str, name: str, fmt: str = "wav") -> None:
        await (await self._bridge_pbx(bridge_id)).record_bridge(bridge_id, name, fmt)
        self.recordings[name] = self.bridges.get(bridge_id, self.first)

    # ------------------------------------------------------------------ recordings
    async def record(
        self, channel_id: str, name: str, *, fmt: str = "wav", max_duration_s: float = 0,
        max_silence_s: float = 0, beep: bool = False, terminate_on: str = "none",
    ) -> None:
        pbx = self.pbx_of_channel(channel_id) or self.first
        await self._member(pbx).record(
            channel_id, name, fmt=fmt, max_duration_s=max_duration_s,
            max_silence_s=max_silence_s, beep=beep, terminate_on=terminate_on,
        )
        self.recordings[name] = pbx

    async def _recording(self, name: str) -> AriTelephony:
        return self.members[self.recordings.get(name, self.first)]

    async def stop_recording(self, name: str) -> None:
        await (await self._recording(name)).stop_recording(name)

    async def pause_recording(self, name: str) -> None:
        await (await self._recording(name)).pause_recording(name)

    async def unpause_recording(self, name: str) -> None:
        await (await self._recording(name)).unpause_recording(name)

    async def recording_file(self, name: str) -> bytes:
        """From the PBX that made it; one made before a restart is looked for on each."""
        pbx = self.recordings.get(name)
        if pbx is not None:
            return await self.members[pbx].recording_file(name)
        data: bytes = await self._on_any(lambda t: t.recording_file(name))
        return data

    async def delete_stored_recording(self, name: str) -> None:
        pbx = self.recordings.pop(name, None)
        if pbx is not None:
            await self.members[pbx].delete_stored_recording(name)
            return
        await self._on_any(lambda t: t.delete_stored_recording(name))

    async def _on_any(self, op: Any) -> Any:
        """Try each reachable PBX until one has the thing (ChannelGone from all: gone)."""
        last: TelephonyError | None = None
        for pbx, member in self.members.items():
            if pbx in self.lost:
                continue
            try:
                return await op(member)
            except ChannelGone as exc:
                last = exc
        raise last or ChannelGone("no reachable PBX has it")

    # ------------------------------------------------------------------ listings (all PBXs)
    async def list_channels(self) -> list[ChannelInfo]:
        out: list[ChannelInfo] = []
        for pbx, member in self.members.items():
            if pbx not in self.lost:
                for info in await member.list_channels():
                    self.channels.setdefault(info.id, pbx)
                    out.append(info)
        return out

    async def list_bridges(self) -> list[BridgeInfo]:
        out: list[BridgeInfo] = []
        for pbx, member in self.members.items():
            if pbx not in self.lost:
                for info in await member.list_bridges():
                    self.bridges.setdefault(info.id, pbx)
                    out.append(info)
        return out

    async def application_channel_ids(self) -> set[str]:
        out: set[str] = set()
        for pbx, member in self.members.items():
            if pbx not in self.lost:
                out |= await member.application_channel_ids()
        return out
