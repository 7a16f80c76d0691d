"""Each Asterisk's state, for GET /health: connected, reconnects, lost (several Asterisks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cti.platform.ari.client import AriClient


@dataclass(frozen=True)
class PbxState:
    id: str
    url: str
    connected: bool
    generation: int
    lost: bool


class PbxStatus:
    def __init__(self, clients: Mapping[str, AriClient], lost: set[str] | None = None) -> None:
        """`lost`: the live set of lost PBX ids (PbxSet.lost; none with one Asterisk)."""
        self.clients = dict(clients)
        self.lost = lost if lost is not None else set()

    def states(self) -> list[PbxState]:
        return [
            PbxState(pbx_id, c.settings.url, c.connected.is_set(), c.generation,
                     pbx_id in self.lost)
            for pbx_id, c in self.clients.items()
        ]
