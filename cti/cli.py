"""The `cti` command: serve, check-config, migrate, and the feature commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cti.platform.console import fail as _fail
from cti.platform.errors import CtiError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else $CTI_CONFIG_FILE)")
]


def fail(message: str, code: int = 2) -> None:
    _fail(message, code)


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
        from cti.platform.db.base import describe_db_error

        fail(f"migration failed: {describe_db_error(settings.database_url, exc)}")
    from cti.platform.db.base import shown_url

    typer.echo(f"database at {revision}: {shown_url(settings.database_url)}")


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


def _register_review_commands() -> None:
    from cti.features.review.cli import register

    register(app)


_register_review_commands()


def _usage_error(exc: Exception) -> tuple[str, int] | None:
    """(message, exit code) of a command-line usage error, else None. Duck-typed: newer Typer
    raises its own vendored copy of click's exceptions, older Typer click's."""
    message, code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
    if not callable(message) or not isinstance(code, int):
        return None
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `cti crm`: the help, as before
        return (ctx.get_help() if ctx else str(message())), code
    hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    return f"error: {message()}{hint}", code


def main() -> None:
    # Not standalone: click would print usage errors as a multi-line panel; here every
    # failure, ours or click's, is one `error:` line. CTI_TRACEBACK=1 shows what was hidden.
    try:
        result = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `cti ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except typer.Abort:  # end of input at a prompt
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        usage = _usage_error(exc)
        if usage is not None:  # bad option value, missing argument, unknown command
            typer.echo(usage[0], err=True)
            sys.exit(usage[1])
        # A bug or a failure no command anticipated: one line (and how to get the details),
        # not a traceback in an administrator's terminal.
        if os.environ.get("CTI_TRACEBACK"):
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (CTI_TRACEBACK=1 for details)",
            err=True,
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
