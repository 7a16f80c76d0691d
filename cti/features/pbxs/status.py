"""Each Asterisk's state, for GET /health: connected, reconnects, lost (several Asterisks), and
what its last resync found (each PBX has its own: a takeover adopts calls on every one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cti.features.calls.resync import Resync, ResyncReport
from cti.platform.ari.client import AriClient


@dataclass(frozen=True)
class PbxState:
    id: str
    url: str
    connected: bool
    generation: int
    lost: bool
    last_resync: ResyncReport | None = None


class PbxStatus:
    def __init__(
        self, clients: Mapping[str, AriClient], lost: set[str] | None = None,
        resyncs: Mapping[str, Resync] | None = None,
    ) -> None:
        """`lost`: the live set of lost PBX ids (PbxSet.lost; none with one Asterisk);
        `resyncs`: each PBX's resync, by id."""
        self.clients = dict(clients)
        self.lost = lost if lost is not None else set()
        self.resyncs = dict(resyncs or {})

    def states(self) -> list[PbxState]:
        return [
            PbxState(pbx_id, c.settings.url, c.connected.is_set(), c.generation,
                     pbx_id in self.lost,
                     r.last if (r := self.resyncs.get(pbx_id)) is not None else None)
            for pbx_id, c in self.clients.items()
        ]
