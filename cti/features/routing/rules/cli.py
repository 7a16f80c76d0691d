"""`cti check-rules FILE` and `cti simulate --rules FILE --trace CALLS.csv`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cti.platform.console import fail
from cti.platform.errors import CtiError


def check_rules(file: Annotated[Path, typer.Argument(help="routing rules YAML")]) -> None:
    """Validate a routing-rules file: print a summary (exit 0) or file:line:col errors (exit 1)."""
    from cti.features.routing.rules import load_rules, summarize

    try:
        rules = load_rules(file)
    except CtiError as exc:
        fail(exc.message, 1)
    typer.echo(summarize(rules))


def simulate(
    rules: Annotated[Path, typer.Option("--rules", help="routing rules YAML")],
    trace: Annotated[
        Path, typer.Option("--trace", help="CSV: arrival_s,handling_s,patience_s,attrs...")
    ],
    # Bounded: a negative delay would schedule answers in the simulated past.
    answer_delay: Annotated[
        float, typer.Option(min=0, help="seconds an agent takes to answer")
    ] = 2.0,
    no_answer_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of offers not answered (0..1)")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed (no-answer draws)")] = 1,
) -> None:
    """Dry run: replay a call trace through the rules with the real router and a simulated clock."""
    import time

    from cti.features.routing.rules import load_rules
    from cti.features.routing.simulate import read_trace
    from cti.features.routing.simulate import simulate as run

    try:
        compiled = load_rules(rules)
        calls = read_trace(trace)
    except CtiError as exc:
        fail(exc.message, 1)
    t0 = time.perf_counter()
    result = run(
        compiled, calls, answer_delay_s=answer_delay, no_answer_rate=no_answer_rate, seed=seed
    )
    wall = time.perf_counter() - t0
    typer.echo(result.report())
    typer.echo(
        f"simulated {len(calls)} calls ({result.duration_s:.0f} s) in {wall * 1000:.0f} ms wall"
    )


def register(app: typer.Typer) -> None:
    app.command("check-rules")(check_rules)
    app.command("simulate")(simulate)
