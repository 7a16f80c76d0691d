"""Events between nodes (cti/platform/cluster/codec.py): every kind comes back equal to what
was published, nested facts typed again; unknown kinds and versions are refused."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.domain.crm import CallSummary, Customer, Title
from cti.events import EVENT_CLASSES, CustomerIdentified
from cti.platform.cluster.codec import UnknownEvent, decode, encode

AT = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6,
)
_aware = st.datetimes(timezones=st.just(UTC))


def _for(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a declared type, as events carry them (aware times, finite floats, JSON in
    the free-form mappings), without registering anything in hypothesis for other tests."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is datetime:
        return _aware
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if origin is Mapping:
        return st.dictionaries(st.text(max_size=5), _json, max_size=3)
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*(_for(a) for a in args))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(_for(args[0]), max_size=3).map(tuple)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        return st.builds(hint, **{f.name: _for(hints[f.name]) for f in dataclasses.fields(hint)})
    return st.from_type(hint)


@pytest.mark.parametrize("name", sorted(EVENT_CLASSES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_event_kind_comes_back_equal(name: str, data: st.DataObject) -> None:
    event = data.draw(_for(EVENT_CLASSES[name]))
    assert decode(encode("node-a", 42, event)) == ("node-a", 42, event)


def test_a_customer_with_its_history_comes_back_typed() -> None:
    customer = Customer(7, ("+8613800138000",), "伟", "王", Title.MR, "vip")
    history = (CallSummary("c0", AT, "answered", "1001", "general"),)
    event = CustomerIdentified("c1", AT, "+8613800138000", customer, history)
    _, _, back = decode(encode("a", 1, event))
    assert isinstance(back, CustomerIdentified)
    assert back.customer == customer
    assert back.customer is not None
    assert back.customer.is_vip
    assert back.history[0].at == AT


def test_an_unknown_kind_or_version_is_refused() -> None:
    wire = json.loads(encode("a", 1, CustomerIdentified("c1", AT, "+86", None)))
    with pytest.raises(UnknownEvent, match="CustomerIdentified v9"):
        decode(json.dumps({**wire, "v": 9}))
    with pytest.raises(UnknownEvent, match="CallTeleported"):
        decode(json.dumps({**wire, "t": "CallTeleported"}))
