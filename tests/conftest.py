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
