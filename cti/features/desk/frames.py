"""Decoding one desk-socket message (pure): JSON text only, bounded in size and nesting.

Every way a message can be wrong ends in a close code with a reason the page can show, or a
recoverable error message; never an exception escaping to the server (and no RecursionError:
nesting is measured without recursion before json.loads sees the text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# RFC 6455 7.4.1 close codes, and ours (4000-4999) mirroring HTTP statuses.
WS_UNSUPPORTED_DATA = 1003
WS_INVALID_PAYLOAD = 1007
WS_POLICY_VIOLATION = 1008
WS_MESSAGE_TOO_BIG = 1009
WS_INTERNAL_ERROR = 1011
WS_CLOSE_UNAUTHORIZED = 4401
WS_CLOSE_FORBIDDEN = 4403

MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code

# A JSON string (skipped whole, so brackets inside it do not count) or one bracket.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)


class CloseSocket(Exception):
    """End the socket with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = close_reason(reason)


class NotJson(ValueError):
    """A text message that is not JSON: answered with an error, the socket stays open."""


def close_reason(reason: str) -> str:
    """`reason` cut to what fits in a close frame, on a character boundary."""
    raw = reason.encode()
    if len(raw) <= MAX_REASON_BYTES:
        return reason
    return raw[:MAX_REASON_BYTES].decode(errors="ignore")


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True when the JSON in `text` nests arrays/objects deeper than `limit`."""
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot be deeper than the number of openers (the usual, cheap answer)
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def decode_message(message: Mapping[str, Any], *, max_bytes: int, max_depth: int) -> Any:
    """The JSON value of an ASGI `websocket.receive` message.
    Raises CloseSocket for binary, oversized or too deeply nested messages, NotJson for text
    that does not parse."""
    text = message.get("text")
    if text is None:
        if message.get("bytes") is not None:
            raise CloseSocket(
                WS_UNSUPPORTED_DATA, "binary messages are not accepted: send JSON text"
            )
        raise CloseSocket(WS_INVALID_PAYLOAD, "empty message")
    # Characters <= bytes, so the encode is needed only when the length alone does not decide.
    size = len(text) if len(text) > max_bytes else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise CloseSocket(
            WS_MESSAGE_TOO_BIG, f"message too big: {size} bytes, at most {max_bytes}"
        )
    if json_depth_exceeds(text, max_depth):
        raise CloseSocket(WS_MESSAGE_TOO_BIG, f"JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise NotJson(f"messages must be JSON: {exc}") from None
    try:
        # JSON may spell a lone surrogate (\ud800) that no UTF-8 text can carry: echoed back
        # (a ping's `t`), it would break the socket's writer instead.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise CloseSocket(WS_INVALID_PAYLOAD, "invalid Unicode: a lone surrogate") from None
    return value
