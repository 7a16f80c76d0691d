"""How every `cti` command reports a failure: `error: ...` lines on stderr and a non-zero exit.

One line per problem (a rules file with three mistakes gives three lines, each naming
file:line:col), so the output stays greppable and never ends in a traceback.
"""

from __future__ import annotations

from typing import NoReturn

import typer


def error_lines(message: str) -> list[str]:
    return [f"error: {line}" for line in message.splitlines() if line.strip()] or ["error: failed"]


def fail(message: str, code: int = 2) -> NoReturn:
    for line in error_lines(message):
        typer.echo(line, err=True)
    raise typer.Exit(code)
