"""The product's HTTP app (cti.app.create_app) over a real `Service` built from settings, on a
migrated temporary SQLite DB, with no PBX (ARI points at a closed port: the service is built,
not started). Every route and every guard the service has, for API tests and the fuzz run."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from cti.app import create_app
from cti.features.auth.service import NewUser, Principal, UserDirectory
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from cti.platform.settings import REPO_ROOT, Settings
from cti.runtime import Service
from tests.api.desk_app import FAST_HASHER, SECRET, USERS

# Nothing listens here (the discard port): a route that reached the PBX would fail fast.
NO_PBX = "http://127.0.0.1:9/ari"


@dataclass
class FullApp:
    app: FastAPI
    service: Service
    users: dict[str, Principal]

    def bearer(self, username: str) -> dict[str, str]:
        """An Authorization header for a seeded user (a token signed like a login's)."""
        token = self.service.desk.auth.tokens.issue(self.users[username]).token
        return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def _no_cti_environment() -> Iterator[None]:
    """Settings read CTI_* from the environment above what they are given: a developer's
    CTI_DATABASE_URL must not point these tests at their database."""
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith("CTI_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    rules = tmp_path / "routing.yaml"  # the API may change skills: never the repo's file
    shutil.copyfile(REPO_ROOT / "config" / "routing.yaml", rules)
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}",
        "auth_secret": SECRET,
        "ari": {"url": NO_PBX, "request_timeout": 1},
        "sounds_dir": tmp_path / "sounds",
        "rules_file": rules,
        "auto_migrate": False,
        **overrides,
    }
    with _no_cti_environment():
        return Settings(**values)


async def prepare_db(url: str, *extra: NewUser) -> dict[str, Principal]:
    """Migrate and add the test users (agent1001, agent1002, supervisor, admin, and `extra`),
    on an engine of its own, so the service's engine is first used on the loop that serves
    requests."""
    await upgrade_async(url, "heads")
    engine = make_engine(url)
    try:
        users = UserDirectory(make_sessionmaker(engine), hasher=FAST_HASHER)
        return {u.username: await users.create(u) for u in (*USERS, *extra)}
    finally:
        await engine.dispose()


def build_full_app(settings: Settings, users: dict[str, Principal]) -> FullApp:
    service = Service.build(settings)
    service.desk.auth.users = UserDirectory(service.sessions, hasher=FAST_HASHER)
    return FullApp(create_app(service), service, users)


@contextlib.asynccontextmanager
async def full_app(tmp_path: Path, **overrides: Any) -> Any:
    """For async tests: yields a FullApp; stops the service afterwards."""
    settings = settings_for(tmp_path, **overrides)
    users = await prepare_db(settings.database_url)
    env = build_full_app(settings, users)
    try:
        yield env
    finally:
        await env.service.stop()
