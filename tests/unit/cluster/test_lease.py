"""The lease rules (cti/domain/cluster/lease.py): one holder at a time, tokens that only grow,
stale writes refused, and a holder that stops acting before anyone else can start."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.domain.cluster.lease import HeldLease, Lease, LeaseTable, LeaseTimes, Refused

TIMES = LeaseTimes(ttl=2.0, margin=0.4, renew_every=0.5)


def test_a_free_resource_is_granted_with_token_1() -> None:
    table = LeaseTable()
    assert table.acquire("call:1", "a", now=0.0, ttl=2.0) == Lease("call:1", "a", 1, 2.0)


def test_a_held_resource_is_refused_to_another_node_until_it_expires() -> None:
    table = LeaseTable()
    table.acquire("acd", "a", now=0.0, ttl=2.0)
    assert table.acquire("acd", "b", now=1.999, ttl=2.0) == Refused("acd", "a", 2.0)
    granted = table.acquire("acd", "b", now=2.0, ttl=2.0)
    assert granted == Lease("acd", "b", 2, 4.0)


def test_acquiring_again_by_the_holder_extends_the_same_token() -> None:
    table = LeaseTable()
    table.acquire("acd", "a", now=0.0, ttl=2.0)
    assert table.acquire("acd", "a", now=1.0, ttl=2.0) == Lease("acd", "a", 1, 3.0)


@pytest.mark.parametrize(
    ("holder", "token", "now", "renewed"),
    [
        ("a", 1, 1.0, True),    # the holder, in time
        ("a", 1, 2.0, False),   # expired: the holder must acquire again (a new token)
        ("b", 1, 1.0, False),   # not the holder
        ("a", 7, 1.0, False),   # a token of another grant
    ],
)
def test_renewal_needs_the_holder_its_token_and_an_unexpired_lease(
    holder: str, token: int, now: float, renewed: bool
) -> None:
    table = LeaseTable()
    table.acquire("acd", "a", now=0.0, ttl=2.0)
    result = table.renew("acd", holder, token, now=now, ttl=2.0)
    assert (result is not None) is renewed
    if result is not None:
        assert result.expires_at == now + 2.0


def test_tokens_keep_growing_across_expiry_and_release() -> None:
    table = LeaseTable()
    tokens = []
    for i, holder in enumerate(["a", "b", "a", "c"]):
        lease = table.acquire("call:9", holder, now=10.0 * i, ttl=2.0)
        assert isinstance(lease, Lease)
        tokens.append(lease.token)
        if holder == "a":
            assert table.release("call:9", "a", lease.token, now=10.0 * i + 1)
    assert tokens == [1, 2, 3, 4]


def test_release_by_a_former_holder_does_not_free_the_successors_lease() -> None:
    table = LeaseTable()
    table.acquire("acd", "a", now=0.0, ttl=2.0)
    table.acquire("acd", "b", now=3.0, ttl=2.0)
    assert not table.release("acd", "a", 1, now=3.5)
    assert table.current("acd", 3.5) == Lease("acd", "b", 2, 5.0)


def test_a_write_under_a_superseded_token_is_refused() -> None:
    table = LeaseTable()
    table.acquire("acd", "a", now=0.0, ttl=2.0)
    assert table.accepts("acd", 1, now=1.0)
    table.acquire("acd", "b", now=2.5, ttl=2.0)  # a was paused past its expiry
    assert not table.accepts("acd", 1, now=2.6)
    assert table.accepts("acd", 2, now=2.6)


def test_a_write_under_an_expired_lease_is_refused_even_if_nobody_took_over() -> None:
    table = LeaseTable()
    table.acquire("acd", "a", now=0.0, ttl=2.0)
    assert not table.accepts("acd", 1, now=2.0)


def test_resources_are_independent() -> None:
    table = LeaseTable()
    table.acquire("call:1", "a", now=0.0, ttl=2.0)
    lease = table.acquire("call:2", "b", now=0.0, ttl=2.0)
    assert lease == Lease("call:2", "b", 1, 2.0)


def test_the_holder_stops_acting_margin_before_the_end_it_counts_from_sending() -> None:
    held = HeldLease("acd", 1, since=10.0, times=TIMES)
    assert held.acts_until == pytest.approx(11.6)
    assert held.valid(11.59)
    assert not held.valid(11.6)
    assert not held.renew_due(10.49)
    assert held.renew_due(10.5)
    assert held.renewed(sent_at=10.5).acts_until == pytest.approx(12.1)
    assert held.renewed(sent_at=9.0).since == 10.0  # a late answer to an old request


@pytest.mark.parametrize(
    ("ttl", "margin", "renew_every"),
    [(2.0, 0.0, 0.5), (2.0, 2.0, 0.5), (2.0, 0.4, 1.6), (2.0, 0.4, 0.0)],
)
def test_lease_times_that_cannot_work_are_refused(
    ttl: float, margin: float, renew_every: float
) -> None:
    with pytest.raises(ValueError, match="lease"):
        LeaseTimes(ttl=ttl, margin=margin, renew_every=renew_every)


# ----- many nodes, skewed clocks, delays and pauses -------------------------------------------


@dataclass
class _Node:
    name: str
    rate: float  # its clock's rate against real time (>= 1 - margin/ttl)
    offset: float
    held: HeldLease | None = None

    def clock(self, t: float) -> float:
        return self.offset + self.rate * t


_op = st.tuples(
    st.integers(0, 2),                                     # which node
    st.sampled_from(["acquire", "renew", "act", "stale_write", "release"]),
    st.floats(0.0, 1.5),                                   # real time passing before it
    st.floats(0.0, 0.3),                                   # the request's delay to the store
)


@settings(max_examples=300, deadline=None)
@given(
    rates=st.lists(st.floats(1 - 0.4 / 2.0 + 1e-9, 1.3), min_size=3, max_size=3),
    ops=st.lists(_op, max_size=60),
)
def test_a_node_acting_under_its_lease_is_always_the_stores_current_holder(
    rates: list[float], ops: list[tuple[int, str, float, float]]
) -> None:
    """Whenever a node thinks it may act, the store's current lease is that node's, with the
    node's token — whatever the clock rates (within the margin), delays and pauses. Writes
    under any other token are refused, and tokens only grow."""
    table = LeaseTable()
    nodes = [_Node(f"n{i}", rate, offset=100.0 * i) for i, rate in enumerate(rates)]
    t = 0.0
    granted: list[int] = []
    for which, kind, pause, delay in ops:
        t += pause
        node = nodes[which]
        sent = node.clock(t)
        t += delay  # the store sees the request later than it was sent
        if kind == "acquire":
            result = table.acquire("acd", node.name, now=t, ttl=TIMES.ttl)
            if isinstance(result, Lease):
                if node.held is None or node.held.token != result.token:
                    granted.append(result.token)
                    node.held = HeldLease("acd", result.token, sent, TIMES)
                else:
                    node.held = node.held.renewed(sent)
        elif kind == "renew" and node.held is not None:
            ok = table.renew("acd", node.name, node.held.token, now=t, ttl=TIMES.ttl)
            node.held = node.held.renewed(sent) if ok else None
        elif kind == "release" and node.held is not None:
            table.release("acd", node.name, node.held.token, now=t)
            node.held = None
        elif kind == "stale_write" and node.held is not None:
            # a node that stopped checking its lease (a long pause) writes anyway
            current = table.current("acd", t)
            accepted = table.accepts("acd", node.held.token, now=t)
            assert accepted == (current is not None and current.token == node.held.token)
        for n in nodes:  # at this instant, every node that would act
            if n.held is not None and n.held.valid(n.clock(t)):
                current = table.current("acd", t)
                assert current is not None
                assert (current.holder, current.token) == (n.name, n.held.token)
                assert table.accepts("acd", n.held.token, now=t)
    assert granted == sorted(set(granted))
