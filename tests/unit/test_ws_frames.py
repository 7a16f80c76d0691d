"""Decoding desk-socket messages: binary, size, nesting, non-JSON, lone surrogates."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.features.desk.frames import (
    MAX_REASON_BYTES,
    CloseSocket,
    NotJson,
    close_reason,
    decode_message,
    json_depth_exceeds,
)


def text(value: str) -> dict[str, object]:
    return {"type": "websocket.receive", "text": value}


def decode(value: str, max_bytes: int = 64 * 1024, max_depth: int = 32) -> object:
    return decode_message(text(value), max_bytes=max_bytes, max_depth=max_depth)


def test_a_json_text_message_is_decoded() -> None:
    assert decode('{"type": "ping", "t": 1}') == {"type": "ping", "t": 1}


def test_a_binary_message_closes_with_1003() -> None:
    with pytest.raises(CloseSocket) as closed:
        decode_message({"type": "websocket.receive", "bytes": b'{"type":"ping"}'},
                       max_bytes=1024, max_depth=32)
    assert closed.value.code == 1003
    assert "binary" in closed.value.reason


def test_an_oversized_message_closes_with_1009_before_parsing() -> None:
    big = json.dumps({"type": "ping", "t": "x" * 2000})
    with pytest.raises(CloseSocket) as closed:
        decode(big, max_bytes=1024)
    assert closed.value.code == 1009
    assert "too big" in closed.value.reason


def test_size_is_counted_in_utf8_bytes_not_characters() -> None:
    chinese = json.dumps({"t": "王" * 400}, ensure_ascii=False)  # ~400 chars, ~1200 bytes
    assert len(chinese) < 1024
    with pytest.raises(CloseSocket) as closed:
        decode(chinese, max_bytes=1024)
    assert closed.value.code == 1009


@pytest.mark.parametrize("depth", [33, 1000, 60_000])
def test_json_nested_too_deeply_closes_with_1009_without_recursing(depth: int) -> None:
    with pytest.raises(CloseSocket) as closed:
        decode("[" * depth + "]" * depth, max_bytes=1 << 20)
    assert closed.value.code == 1009
    assert "nested deeper than 32" in closed.value.reason


def test_json_nested_to_the_limit_is_accepted() -> None:
    assert decode('{"a":' * 31 + "[1]" + "}" * 31) is not None


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    value = {"type": "ping", "t": "[[[{{{" * 100 + '\\"]' + "x"}
    assert decode(json.dumps(value)) == value


@given(st.recursive(st.none() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=30))
def test_depth_measure_agrees_with_the_structure(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    encoded = json.dumps(value)
    d = depth(value)
    assert not json_depth_exceeds(encoded, d)
    if d > 0:
        assert json_depth_exceeds(encoded, d - 1)


@pytest.mark.parametrize("raw", ["not json", "{", "", "{'single': 1}"])
def test_text_that_is_not_json_is_a_recoverable_error(raw: str) -> None:
    with pytest.raises(NotJson, match="messages must be JSON"):
        decode(raw)


def test_a_lone_surrogate_closes_with_1007() -> None:
    with pytest.raises(CloseSocket) as closed:
        decode('{"type": "ping", "t": "\\ud800"}')
    assert closed.value.code == 1007
    # a proper pair is fine
    assert decode('{"t": "\\ud83d\\ude00"}') == {"t": "😀"}


def test_close_reasons_fit_a_close_frame_on_a_character_boundary() -> None:
    cut = close_reason("王" * 100)
    assert len(cut.encode()) <= MAX_REASON_BYTES
    assert cut == "王" * (MAX_REASON_BYTES // 3)
