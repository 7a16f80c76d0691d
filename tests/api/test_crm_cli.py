"""`cti crm import`, `cti users add`, `cti demo seed` against a migrated SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.features.crm.storage import CustomerRepository
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(url, "heads")
    monkeypatch.setenv("CTI_DATABASE_URL", url)
    return url


def _count(url: str) -> int:
    async def run() -> int:
        engine = make_engine(url)
        try:
            return await CustomerRepository(make_sessionmaker(engine)).count()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_crm_import_loads_good_rows_and_names_bad_lines(db_env: str, tmp_path: Path) -> None:
    csv = tmp_path / "customers.csv"
    csv.write_text("numbers,name,tier\n+49305551,王伟,vip\nnope,x,\n13800138000,李娜,gold\n",
                   encoding="utf-8")
    result = CliRunner().invoke(app, ["crm", "import", str(csv)])
    assert result.exit_code == 1
    assert f"{csv}:3: numbers: not a phone number" in result.output
    assert "added 2, updated 0, rejected 1" in result.output
    assert _count(db_env) == 2


def test_crm_import_of_a_missing_file_is_one_clear_line(db_env: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["crm", "import", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2
    assert "nope.csv: file not found" in result.output


def test_users_add_and_demo_seed(db_env: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["users", "add", "bob", "--role", "agent", "--agent-id", "2001",
                                 "--password", "secret1"])
    assert result.exit_code == 0, result.output
    assert "user bob (agent, agent id 2001) added" in result.output
    again = runner.invoke(app, ["users", "add", "bob", "--role", "agent", "--agent-id", "2002",
                                "--password", "secret1"])
    assert again.exit_code == 2
    assert "exists" in again.output
    bad = runner.invoke(app, ["users", "add", "eve", "--role", "boss", "--password", "secret1"])
    assert "--role: 'boss' is not one of agent, supervisor, admin" in bad.output
    for _ in range(2):  # idempotent
        seeded = runner.invoke(app, ["demo", "seed"])
        assert seeded.exit_code == 0, seeded.output
        assert "demo data: 4 customers, 5 users" in seeded.output
    assert _count(db_env) == 4
