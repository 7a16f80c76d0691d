"""`cti check-forms [DIR]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cti.platform.errors import CtiError


def check_forms(
    directory: Annotated[Path | None, typer.Argument(
        help="evaluation forms directory (default: the settings' evaluation_forms_dir)")] = None,
) -> None:
    """Validate the evaluation forms: print a summary (exit 0) or file:line:col errors
    (exit 1)."""
    from cti.features.review.forms import load_forms, summarize
    from cti.platform.settings import Settings

    try:
        forms = load_forms(directory or Settings().evaluation_forms_dir)
    except CtiError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(summarize(forms))


def register(app: typer.Typer) -> None:
    app.command("check-forms")(check_forms)
