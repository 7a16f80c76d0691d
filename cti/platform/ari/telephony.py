"""cti.platform.ports.Telephony implemented over ARI REST."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from cti.platform.ari.client import AriClient
from cti.platform.errors import ChannelGone
from cti.platform.ports import BridgeInfo, ChannelInfo, Direction


def _channel(data: dict[str, Any]) -> ChannelInfo:
    caller = data.get("caller") or {}
    dialplan = data.get("dialplan") or {}
    return ChannelInfo(
        id=data["id"],
        name=data.get("name", ""),
        state=data.get("state", ""),
        caller_number=caller.get("number", ""),
        caller_name=caller.get("name", ""),
        dialplan_exten=dialplan.get("exten", ""),
        creationtime=data.get("creationtime", ""),
        variables={str(k): str(v) for k, v in (data.get("channelvars") or {}).items()},
    )


class AriTelephony:
    def __init__(self, client: AriClient) -> None:
        self.client = client
        self.app = client.settings.app

    async def answer(self, channel_id: str) -> None:
        await self.client.request("POST", f"channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.client.request(
            "DELETE", f"channels/{channel_id}", params={"reason": reason}, urgent=True
        )

    async def ring(self, channel_id: str) -> None:
        await self.client.request("POST", f"channels/{channel_id}/ring")

    async def ring_stop(self, channel_id: str) -> None:
        await self.client.request("DELETE", f"channels/{channel_id}/ring")

    async def play(
        self, channel_id: str, media: Sequence[str], playback_id: str | None = None,
        lang: str | None = None,
    ) -> str:
        pid = playback_id or uuid.uuid4().hex
        await self.client.request(
            "POST", f"channels/{channel_id}/play/{pid}",
            params={"media": ",".join(media), "lang": lang}, urgent=True,
        )
        return pid

    async def play_on_bridge(
        self, bridge_id: str, media: Sequence[str], playback_id: str | None = None
    ) -> str:
        pid = playback_id or uuid.uuid4().hex
        await self.client.request(
            "POST", f"bridges/{bridge_id}/play/{pid}", params={"media": ",".join(media)},
            urgent=True,
        )
        return pid

    async def stop_playback(self, playback_id: str) -> None:
        await self.client.request("DELETE", f"playbacks/{playback_id}", urgent=True)

    async def playback_listed(self, playback_id: str) -> bool:
        """Whether the PBX still plays `playback_id` (an adopted call's prompt)."""
        try:
            await self.client.request("GET", f"playbacks/{playback_id}", urgent=True)
        except ChannelGone:  # a 404: it ended
            return False
        return True

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self.client.request(
            "POST", f"channels/{channel_id}/moh", params={"mohClass": moh_class}
        )

    async def stop_moh(self, channel_id: str) -> None:
        await self.client.request("DELETE", f"channels/{channel_id}/moh")

    async def hold(self, channel_id: str) -> None:
        await self.client.request("POST", f"channels/{channel_id}/hold")

    async def unhold(self, channel_id: str) -> None:
        await self.client.request("DELETE", f"channels/{channel_id}/hold")

    async def mute(self, channel_id: str, direction: Direction = "both") -> None:
        await self.client.request(
            "POST", f"channels/{channel_id}/mute", params={"direction": direction}
        )

    async def unmute(self, channel_id: str, direction: Direction = "both") -> None:
        await self.client.request(
            "DELETE", f"channels/{channel_id}/mute", params={"direction": direction}
        )

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.client.request(
            "POST", f"channels/{channel_id}/variable", params={"variable": name, "value": value}
        )

    async def get_variable(self, channel_id: str, name: str) -> str:
        data = await self.client.request(
            "GET", f"channels/{channel_id}/variable", params={"variable": name}
        )
        return str((data or {}).get("value", ""))

    async def talk_detect(self, channel_id: str, silence_ms: int, threshold: int) -> None:
        await self.set_variable(channel_id, "TALK_DETECT(set)", f"{silence_ms},{threshold}")

    async def set_volume(
        self, channel_id: str, direction: Literal["TX", "RX"], gain: int
    ) -> None:
        await self.set_variable(channel_id, f"VOLUME({direction})", str(gain))

    async def send_dtmf(self, channel_id: str, dtmf: str) -> None:
        await self.client.request(
            "POST", f"channels/{channel_id}/dtmf", params={"dtmf": dtmf}
        )

    async def originate(
        self, endpoint: str, *, app_args: str = "", caller_id: str | None = None,
        timeout: int = 30, channel_id: str | None = None,
        variables: Mapping[str, str] | None = None, formats: str | None = None,
    ) -> ChannelInfo:
        params: dict[str, Any] = {
            "endpoint": endpoint, "app": self.app, "appArgs": app_args,
            "callerId": caller_id, "timeout": timeout, "channelId": channel_id,
            "formats": formats,
        }
        body = {"variables": dict(variables)} if variables else None
        data = await self.client.request("POST", "channels", params=params, json_body=body)
        return _channel(data)

    async def create_bridge(self, bridge_id: str | None = None, kind: str = "mixing") -> str:
        bid = bridge_id or uuid.uuid4().hex
        await self.client.request("POST", f"bridges/{bid}", params={"type": kind})
        return bid

    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        await self.client.request(
            "POST", f"bridges/{bridge_id}/addChannel", params={"channel": ",".join(channel_ids)}
        )

    async def remove_from_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        await self.client.request(
            "POST", f"bridges/{bridge_id}/removeChannel",
            params={"channel": ",".join(channel_ids)},
        )

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.client.request("DELETE", f"bridges/{bridge_id}")

    async def record_bridge(self, bridge_id: str, name: str, fmt: str = "wav") -> None:
        await self.client.request(
            "POST", f"bridges/{bridge_id}/record",
            params={"name": name, "format": fmt, "ifExists": "overwrite"},
        )

    async def stop_recording(self, name: str) -> None:
        await self.client.request("POST", f"recordings/live/{name}/stop")

    async def pause_recording(self, name: str) -> None:
        await self.client.request("POST", f"recordings/live/{name}/pause")

    async def unpause_recording(self, name: str) -> None:
        await self.client.request("DELETE", f"recordings/live/{name}/pause")

    async def delete_stored_recording(self, name: str) -> None:
        """Delete the PBX's stored file (ChannelGone, a 404, when it is gone already)."""
        await self.client.request("DELETE", f"recordings/stored/{name}")

    async def record(
        self, channel_id: str, name: str, *, fmt: str = "wav", max_duration_s: float = 0,
        max_silence_s: float = 0, beep: bool = False, terminate_on: str = "none",
    ) -> None:
        """Record what the caller says (a voicemail); ARI takes whole seconds (0: no limit)."""
        await self.client.request(
            "POST", f"channels/{channel_id}/record",
            params={
                "name": name, "format": fmt, "maxDurationSeconds": round(max_duration_s),
                "maxSilenceSeconds": round(max_silence_s), "beep": beep,
                "terminateOn": terminate_on, "ifExists": "fail",
            },
        )

    async def recording_file(self, name: str) -> bytes:
        """The stored recording's file (ChannelGone, a 404, when there is none)."""
        return await self.client.request_bytes("GET", f"recordings/stored/{name}/file")

    async def snoop(
        self, channel_id: str, *, spy: Direction = "in", app_args: str = "",
        snoop_id: str | None = None, whisper: Direction | Literal["none"] = "none",
    ) -> ChannelInfo:
        data = await self.client.request(
            "POST", f"channels/{channel_id}/snoop",
            params={"spy": spy, "whisper": whisper, "app": self.app, "appArgs": app_args,
                    "snoopId": snoop_id},
        )
        return _channel(data)

    async def external_media(
        self, *, external_host: str, fmt: str = "slin16", channel_id: str | None = None,
        app_args: str = "", near: str | None = None,
    ) -> ChannelInfo:
        data = await self.client.request(
            "POST", "channels/externalMedia",
            params={
                "app": self.app, "external_host": external_host, "format": fmt,
                "channelId": channel_id, "data": app_args or None,
                "encapsulation": "rtp", "transport": "udp", "direction": "both",
            },
        )
        return _channel(data)

    async def continue_in_dialplan(
        self, channel_id: str, context: str | None = None, extension: str | None = None,
        priority: int | None = None,
    ) -> None:
        await self.client.request(
            "POST", f"channels/{channel_id}/continue",
            params={"context": context, "extension": extension, "priority": priority},
        )

    async def redirect(self, channel_id: str, endpoint: str) -> None:
        await self.client.request(
            "POST", f"channels/{channel_id}/redirect", params={"endpoint": endpoint}
        )

    async def list_channels(self) -> list[ChannelInfo]:
        data = await self.client.request("GET", "channels")
        return [_channel(c) for c in data or []]

    async def list_bridges(self) -> list[BridgeInfo]:
        data = await self.client.request("GET", "bridges")
        return [
            BridgeInfo(
                id=b["id"], bridge_type=b.get("bridge_type", ""),
                channels=tuple(b.get("channels", [])), name=b.get("name", ""),
            )
            for b in data or []
        ]

    async def rtp_statistics(self, channel_id: str) -> dict[str, Any]:
        data = await self.client.request("GET", f"channels/{channel_id}/rtp_statistics")
        return dict(data or {})

    async def subscribe_channel(self, channel_id: str) -> None:
        """Explicit subscription: keeps ChannelDestroyed (with its cause) coming after StasisEnd."""
        await self.client.request(
            "POST", f"applications/{self.app}/subscription",
            params={"eventSource": f"channel:{channel_id}"},
        )

    async def application_channel_ids(self) -> set[str]:
        """Channels subscribed to our Stasis app (for resync after reconnect)."""
        data = await self.client.request("GET", f"applications/{self.app}")
        return {s.removeprefix("channel:") for s in (data or {}).get("channel_ids", [])}
