"""The queue_log converter against the order the real publishers put events on the bus: the
ACD service (fake PBX) and the transfer control. The unit tests of test_queue_log.py write
that order by hand; these check it is the one the service produces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from routing_fixtures import BASIC

from cti.events import CallEnded, Envelope
from cti.features.calls.registry import CallRegistry
from cti.features.events.queue_log import QueueLog
from cti.features.routing.acd import Acd
from cti.features.transfers.service import TransferControl
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.ports import ChannelInfo

ATTRS = {"menu": "9", "tier": "standard", "caller": "+8613800000001"}  # the general queue


class FakeTelephony:
    """Answers every PBX request (originate, bridges) without a PBX."""

    def __getattr__(self, name: str) -> Any:
        async def op(*args: Any, **kw: Any) -> Any:
            if name == "originate":
                return ChannelInfo(kw["channel_id"], args[0], "Down", "", "", "", "")
            if name == "create_bridge":
                return args[0]
            return None

        return op


class Wired:
    def __init__(self, tmp: Path) -> None:
        rules = tmp / "routing.yaml"
        rules.write_text(BASIC.replace("{strategy}", "longest_idle"), encoding="utf-8")
        self.bus = InProcessBus()
        self.envelopes: list[Envelope] = []
        self.bus.subscribe_batches("test.all", self._keep)
        clock = FakeClock()
        self.acd = Acd.from_file(
            cast(Any, FakeTelephony()), rules, clock=clock, bus=self.bus, watch_s=0
        )
        self.transfers = TransferControl(
            self.acd, cast(Any, FakeTelephony()), CallRegistry(), self.bus, clock
        )

    async def _keep(self, batch: Sequence[Envelope]) -> None:
        self.envelopes.extend(batch)

    def ringing_leg(self, but: str | None = None) -> str:
        return next(c for c, leg in self.acd.calls.by_channel.items()
                    if c != but and not leg.answered)

    async def lines(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(queue, agent, event, data) of each line, in order."""
        await self.bus.drain()
        log = QueueLog.for_members(None)
        out = [(ln.queue, ln.agent, ln.event, ln.data)
               for e in self.envelopes for ln in log.feed(e.seq, e.event)]
        await self.acd.aclose()
        await self.bus.aclose()
        return out


async def connected(w: Wired) -> str:
    await w.acd.agent_login("a4")
    await w.acd.enqueue("c1", "chan-c1", ATTRS)
    leg = w.ringing_leg()
    await w.acd.on_agent_channel_answered(leg)
    return leg


async def test_blind_transfer_to_a_queue(tmp_path: Path) -> None:
    w = Wired(tmp_path)
    await connected(w)
    await w.transfers.transfer("c1", agent_id="a4", target_type="queue", target="billing",
                               kind="blind")
    lines = await w.lines()
    assert [(q, a, e) for q, a, e, _ in lines if e != "ADDMEMBER"] == [
        ("general", "NONE", "ENTERQUEUE"),
        ("general", "Agent/a4", "CONNECT"),
        ("general", "Agent/a4", "TRANSFER"),
        ("billing", "NONE", "ENTERQUEUE"),
    ]
    assert lines[-2][3][:2] == ("billing", "queue")


async def test_attended_transfer_completed(tmp_path: Path) -> None:
    w = Wired(tmp_path)
    first = await connected(w)
    await w.acd.agent_login("a5")
    await w.transfers.transfer("c1", agent_id="a4", target_type="agent", target="a5",
                               kind="attended")
    await w.acd.on_agent_channel_answered(w.ringing_leg(but=first))
    await w.transfers.complete("c1", "a4")
    lines = await w.lines()
    assert [(q, a, e) for q, a, e, _ in lines if e != "ADDMEMBER"] == [
        ("general", "NONE", "ENTERQUEUE"),
        ("general", "Agent/a4", "CONNECT"),
        ("general", "Agent/a4", "TRANSFER"),
        ("general", "NONE", "ENTERQUEUE"),
        ("general", "Agent/a5", "CONNECT"),
    ]
    assert lines[-3][3][:2] == ("a5", "agent")


async def test_agent_hangs_up_first(tmp_path: Path) -> None:
    w = Wired(tmp_path)
    leg = await connected(w)
    await w.acd.on_agent_channel_ended(leg)  # the agent's phone hung up
    # The PBX then ends the caller's channel; the call service says so (ended_by from the
    # hang-up request the ACD's own hang-up causes).
    w.bus.publish(CallEnded("c1", w.acd.clock.now(), 16, "Normal Clearing", "caller"))
    lines = await w.lines()
    assert [e for _, _, e, _ in lines] == ["ADDMEMBER", "ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]
