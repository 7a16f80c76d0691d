"""A keyed upsert (INSERT ... ON CONFLICT (key) DO UPDATE), built once per table, dialect and
column set and executed with each write's values: the repositories that write on every call's
path (the call log, the IVR checkpoints) spent more CPU building the statement (the table's
`excluded` alias, its columns) than running it. PostgreSQL and SQLite both have it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

_BUILT: dict[tuple[str, str, str, tuple[str, ...]], Any] = {}


def upsert(row: type[Any], dialect: str, key: str, columns: Sequence[str]) -> Any:
    """INSERT into the table of the mapped class `row`; on a row with the same `key`, set
    `columns` to the new values. Execute it with a dict (or a list of dicts) holding the key
    and those columns. (Through the table, not the class: no ORM bulk handling per write.)"""
    table = cast(Table, row.__table__)
    cache_key = (table.name, dialect, key, tuple(columns))
    stmt = _BUILT.get(cache_key)
    if stmt is None:
        insert: Any
        if dialect == "postgresql":
            insert = postgresql.insert(table)
        elif dialect == "sqlite":
            insert = sqlite.insert(table)
        else:
            raise NotImplementedError(f"upsert into {table.name} on {dialect}")
        stmt = _BUILT[cache_key] = insert.on_conflict_do_update(
            index_elements=[key], set_={c: insert.excluded[c] for c in columns}
        )
    return stmt
