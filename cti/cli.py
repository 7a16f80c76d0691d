"""The `cti` command: serve, check-config, migrate, and the feature commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cti.platform.errors import CtiError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else $CTI_CONFIG_FILE)")
]


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def serve(config: ConfigOpt = None) -> None:
    """Run the CTI service: ARI connection, HTTP API and agent pages."""
    from cti.app import run_service
    from cti.platform.settings import load_settings

    try:
        settings = load_settings(config)
        run_service(settings)
    except CtiError as exc:
        fail(exc.message)


@app.command("check-config")
def check_config(
    config: ConfigOpt = None,
    ari: Annotated[bool, typer.Option(help="also check the ARI URL and credentials")] = False,
) -> None:
    """Validate the config file (and optionally reach Asterisk)."""
    from cti.platform.settings import load_settings

    try:
        settings = load_settings(config)
        if ari:
            import asyncio

            from cti.platform.ari.client import probe

            info = asyncio.run(probe(settings.ari))
            typer.echo(f"ARI ok: Asterisk {info}")
    except CtiError as exc:
        fail(exc.message)
    typer.echo(f"config ok ({settings.config_file or 'defaults + environment'})")


@app.command()
def migrate(
    config: ConfigOpt = None,
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Create or upgrade the database schema (Alembic)."""
    from cti.platform.db.migrate import upgrade
    from cti.platform.settings import load_settings

    try:
        settings = load_settings(config)
        upgrade(settings.database_url, revision)
    except CtiError as exc:
        fail(exc.message)
    except Exception as exc:  # a DB that cannot be reached: one line, not a traceback
        fail(f"migration failed on {settings.database_url}: {exc.__class__.__name__}: {exc}")
    typer.echo(f"database at {revision}: {settings.database_url}")


def _register_desk_commands() -> None:
    from cti.features.desk.cli import crm_app, demo_app, users_app

    app.add_typer(crm_app, name="crm")
    app.add_typer(users_app, name="users")
    app.add_typer(demo_app, name="demo")


_register_desk_commands()


def _register_phrase_commands() -> None:
    from cti.features.phrases.cli import register

    register(app)


_register_phrase_commands()


def _register_routing_commands() -> None:
    from cti.features.routing.rules.cli import register

    register(app)


_register_routing_commands()


def _register_report_commands() -> None:
    from cti.features.events.cli import register as register_export
    from cti.features.reports.cli import register

    register(app)
    register_export(app)


_register_report_commands()


def _register_work_order_commands() -> None:
    from cti.features.work_orders.cli import register

    register(app)


_register_work_order_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
