"""`cti crm import FILE`, `cti users add|deactivate|activate`, `cti demo seed`: the agent
desk's commands (registered on the main `cti` app in cti/cli.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from cti.platform.console import fail
from cti.platform.errors import CtiError
from cti.platform.textfile import read_text_file

T = TypeVar("T")

crm_app = typer.Typer(no_args_is_help=True, help="Customer records (CRM).")
users_app = typer.Typer(no_args_is_help=True, help="Agent desk users.")
demo_app = typer.Typer(no_args_is_help=True, help="Demo data.")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else $CTI_CONFIG_FILE)")
]


def _fail(message: str, code: int = 2) -> NoReturn:
    fail(message, code)


def _sessions(config: Path | None):  # type: ignore[no-untyped-def]
    from cti.platform.db.base import make_engine, make_sessionmaker
    from cti.platform.settings import load_settings

    settings = load_settings(config)
    engine = make_engine(settings.database_url)
    return settings, engine, make_sessionmaker(engine)


def _run_db(database_url: str, main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), a database failure (unreachable, no schema yet) as one error line."""
    from sqlalchemy.exc import SQLAlchemyError

    from cti.platform.db.base import describe_db_error

    try:
        return asyncio.run(main)
    except (SQLAlchemyError, OSError) as exc:
        _fail(describe_db_error(database_url, exc))


@crm_app.command("import")
def crm_import(
    file: Annotated[
        Path, typer.Argument(help="CSV: numbers,name,surname,title,tier,company,notes")
    ],
    config: ConfigOpt = None,
    region: Annotated[str, typer.Option(help="country for numbers without +")] = "CN",
) -> None:
    """Load customers from a CSV file; bad rows are listed with their line numbers."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cti.features.crm.service import import_customers
    from cti.features.crm.storage import CustomerRepository

    try:
        # No size cap: a customer list may well be larger than any config file.
        text = read_text_file(file, max_bytes=None)
    except CtiError as exc:
        _fail(exc.message)
    lines = text.splitlines(keepends=True)
    try:
        settings, engine, sessions = _sessions(config)
    except CtiError as exc:
        _fail(exc.message)

    async def run() -> None:
        try:
            with Progress(
                TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(),
                TextColumn("rows"),
            ) as progress:
                task = progress.add_task("import", total=max(len(lines) - 1, 0))
                result = await import_customers(
                    CustomerRepository(sessions), lines, region,
                    progress=lambda n: progress.advance(task, n),
                )
        finally:
            await engine.dispose()
        for bad in result.rejected:
            typer.echo(f"error: {file}:{bad.line}: {bad.reason}", err=True)
        typer.echo(
            f"added {result.added}, updated {result.updated}, rejected {len(result.rejected)}"
        )
        if result.rejected:
            raise typer.Exit(1)

    _run_db(settings.database_url, run())


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="agent | supervisor | admin")] = "agent",
    agent_id: Annotated[
        str | None, typer.Option(help="the agent's id (required for agents)")
    ] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
    language: Annotated[str, typer.Option(help="zh | en")] = "zh",
    password: Annotated[str | None, typer.Option(help="else asked for at the terminal")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a user of the agent desk (the password is asked for, or given with --password)."""
    from cti.features.auth.service import NewUser, Role, UserDirectory

    try:
        role_value = Role(role)
    except ValueError:
        _fail(f"--role: {role!r} is not one of agent, supervisor, admin")
    if language not in ("zh", "en"):
        _fail(f"--language: {language!r} is not zh or en")
    if password is None:
        if not sys.stdin.isatty():  # a script has no one to answer a prompt: say what is missing
            _fail("--password is required when not run at a terminal")
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        settings, engine, sessions = _sessions(config)
    except CtiError as exc:
        _fail(exc.message)

    async def run() -> None:
        try:
            who = await UserDirectory(sessions).create(
                NewUser(username, password, role_value, agent_id, name, language)
            )
        finally:
            await engine.dispose()
        typer.echo(f"user {who.username} ({who.role.value}, agent id {who.agent_id}) added")

    try:
        _run_db(settings.database_url, run())
    except (CtiError, ValueError) as exc:
        _fail(exc.message if isinstance(exc, CtiError) else str(exc))


def _set_active(username: str, active: bool, config: Path | None) -> None:
    from cti.features.auth.service import UserDirectory

    try:
        _settings, engine, sessions = _sessions(config)
    except CtiError as exc:
        _fail(exc.message)

    async def run() -> None:
        try:
            await UserDirectory(sessions).set_active(username, active)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except CtiError as exc:
        _fail(exc.message)


@users_app.command("deactivate")
def users_deactivate(username: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
    """Stop a user from logging in and end all their tokens. A running service notices within
    its revocation cache time (auth.revocation_cache_s) and then closes their desk sockets;
    the admin API (PATCH /auth/users/NAME) takes effect at once."""
    _set_active(username, False, config)
    typer.echo(f"user {username} deactivated; their tokens no longer work")


@users_app.command("activate")
def users_activate(username: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
    """Let a deactivated user log in again (tokens from before stay ended)."""
    _set_active(username, True, config)
    typer.echo(f"user {username} activated")


@demo_app.command("seed")
def demo_seed(config: ConfigOpt = None) -> None:
    """Load demo customers (VIP 王先生 at +49305551) and users agent1001..1003 (password
    agent-1001..), supervisor (supervisor-pw), admin (admin-pw). Safe to run again."""
    from cti.features.desk.demo import seed_demo_desk

    try:
        settings, engine, sessions = _sessions(config)
    except CtiError as exc:
        _fail(exc.message)

    async def run() -> tuple[int, int]:
        try:
            return await seed_demo_desk(sessions)
        finally:
            await engine.dispose()

    customers, users = _run_db(settings.database_url, run())
    typer.echo(f"demo data: {customers} customers, {users} users")
