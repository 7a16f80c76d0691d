"""`cti check-work-orders FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cti.platform.errors import CtiError


def check_work_orders(
    file: Annotated[Path, typer.Argument(help="work orders YAML")],
) -> None:
    """Validate a work-orders file: print a summary (exit 0) or file:line:col errors (exit 1)."""
    from cti.features.work_orders.config import load_work_orders, summarize

    try:
        config = load_work_orders(file)
    except CtiError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(summarize(config))


def register(app: typer.Typer) -> None:
    app.command("check-work-orders")(check_work_orders)
