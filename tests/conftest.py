"""Shared fixtures: a fresh, migrated database on each backend the product supports."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cti.platform.db.migrate import upgrade_async

PG_DSN = os.environ.get("CTI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`scripts/test --fast` runs `-m "not e2e"`: a test that needs the sandbox Asterisk
    (everything under tests/e2e, or anything using its `pbx` fixture) but lacks the `e2e`
    marker would slip into the fast loop and fail there, or hang. Refuse to collect it."""
    unmarked = [
        item.nodeid for item in items
        if item.get_closest_marker("e2e") is None
        and (item.path.is_relative_to(E2E_DIR) or "pbx" in getattr(item, "fixturenames", ()))
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests need the sandbox Asterisk but lack the e2e marker "
            "(add `pytestmark = pytest.mark.e2e` to the module):\n  " + "\n  ".join(unmarked)
        )


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database: a SQLite file, or a PostgreSQL database made for the test."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
        await upgrade_async(url)
        yield url
        return
    name = f"cti_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        await upgrade_async(url)
        yield url
    finally:
        admin = await asyncpg.connect(PG_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
