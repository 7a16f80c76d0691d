"""The hub's promise: a page that joins at any moment, applying the snapshot and then the deltas,
ends with exactly the state of a page that saw everything; sequence numbers have no gaps."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cti.features.desk.hub import AgentHub
from cti.platform.clock import FakeClock

KEYS = ["pop:c1", "pop:c2", "call:c1", "agent_state", None]

operations = st.lists(
    st.tuples(st.sampled_from(KEYS), st.booleans(), st.integers(0, 9)), max_size=40
)


def apply(state: dict[str, Any], msg: dict[str, Any]) -> None:
    if msg.get("key") is None:
        return
    if msg.get("op") == "remove":
        state.pop(msg["key"], None)
    else:
        state[msg["key"]] = msg


def drain(sub: Any) -> list[dict[str, Any]]:
    out = []
    while sub.pending():
        text = sub._queue.get_nowait()
        out.append(json.loads(text))
    return out


@given(operations, st.integers(0, 40))
def test_snapshot_then_deltas_equals_the_full_stream(
    ops: list[tuple[str | None, bool, int]], join_at: int
) -> None:
    hub = AgentHub(FakeClock())
    early = hub.connect()
    hub.subscribe(early, "agent:1")
    late = hub.connect()
    for i, (key, remove, value) in enumerate(ops):
        if i == join_at:
            hub.subscribe(late, "agent:1")
        msg: dict[str, Any] = {"type": "x", "value": value}
        if key is not None:
            msg["key"] = key
            if remove:
                msg["op"] = "remove"
        hub.publish_now("agent:1", msg)
    if join_at >= len(ops):
        hub.subscribe(late, "agent:1")
    states = []
    for sub in (early, late):
        state: dict[str, Any] = {}
        seq = None
        for msg in drain(sub):
            if msg["type"] == "snapshot":
                state = {i["key"]: i for i in msg["items"]}
                seq = msg["seq"]
            else:
                assert seq is not None
                assert msg["seq"] == seq + 1
                seq = msg["seq"]
                apply(state, msg)
        assert seq == len(ops)
        states.append(state)
    assert states[0] == states[1]


def test_a_slow_connection_gets_a_snapshot_instead_of_a_backlog() -> None:
    hub = AgentHub(FakeClock())
    sub = hub.connect()
    sub._limit = 5
    hub.subscribe(sub, "agent:1")
    for i in range(20):
        hub.publish_now("agent:1", {"type": "x", "key": f"k{i % 3}", "value": i})
    messages = drain(sub)
    assert sub.resyncs > 0
    snapshots = [m for m in messages if m["type"] == "snapshot"]
    assert snapshots
    state = {i["key"]: i["value"] for i in snapshots[-1]["items"]}
    for m in messages[messages.index(snapshots[-1]) + 1:]:
        state[m["key"]] = m["value"]
    assert state == {"k0": 18, "k1": 19, "k2": 17}


def test_closed_subscription_receives_nothing_more() -> None:
    hub = AgentHub(FakeClock())
    sub = hub.connect()
    hub.subscribe(sub, "agent:1")
    sub.close()
    hub.publish_now("agent:1", {"type": "x", "key": "a"})
    assert hub.connections("agent:1") == 0
