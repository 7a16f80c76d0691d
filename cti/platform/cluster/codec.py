"""Events on the wire between nodes: JSON, typed again on arrival.

The kept form (cti/events.py `event_record`) gives nested facts back as plain mappings, which
is right for a log but not for a subscriber on another node that reads `event.customer.name`.
Here every field is rebuilt from its declared type — nested dataclasses, enums, tuples,
datetimes, optionals — so a remote event equals the one published. The shape version travels
with it; a node receiving a version it does not know (a rolling upgrade) drops the event and
says so rather than guessing.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cti.events import EVENT_CLASSES, VERSIONS, DomainEvent, event_record


class UnknownEvent(ValueError):
    """An event kind or shape version this node does not know."""


def encode(origin: str, seq: int, event: DomainEvent) -> str:
    record = event_record(event)
    return json.dumps(
        {"o": origin, "s": seq, "t": record.type, "v": record.version,
         "at": record.at.isoformat(), "p": record.payload},
        ensure_ascii=False, separators=(",", ":"),
    )


def decode(data: str) -> tuple[str, int, DomainEvent]:
    """(origin node, its sequence number, the event). UnknownEvent for a kind or version this
    node cannot read."""
    raw = json.loads(data)
    name, version = raw["t"], raw["v"]
    cls = EVENT_CLASSES.get(name)
    if cls is None or VERSIONS[name] != version:
        raise UnknownEvent(f"{name} v{version} (this node reads v{VERSIONS.get(name)})")
    payload = dict(raw["p"])
    payload["at"] = raw["at"]
    return str(raw["o"]), int(raw["s"]), _build(cls, payload)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _build(cls: type[Any], values: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {
        f.name: _typed(values[f.name], hints[f.name])
        for f in dataclasses.fields(cls) if f.name in values
    }
    return cls(**kwargs)


def _typed(value: Any, hint: Any) -> Any:
    if value is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in args if a is not type(None)]
        return _typed(value, options[0]) if len(options) == 1 else value
    if origin is typing.Literal:
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(v, args[0]) for v in value)
        return tuple(_typed(v, a) for v, a in zip(value, args, strict=True))
    if origin in (list, frozenset, set):
        return origin(_typed(v, args[0]) for v in value)
    if origin is not None:  # Mapping[str, Any] and friends: JSON values as they are
        return value
    if hint is datetime:
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value
