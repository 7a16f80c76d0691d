"""`cti check-phrases` and `cti phrases render`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cti.platform.errors import CtiError

phrases_app = typer.Typer(no_args_is_help=True, help="The phrase library (scripts_lib/).")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else $CTI_CONFIG_FILE)")
]
DirOpt = Annotated[Path | None, typer.Option(help="override the directory from settings")]


def check_phrases(
    config: ConfigOpt = None, phrases_dir: DirOpt = None, flows_dir: DirOpt = None
) -> None:
    """Fail (exit 1) if a forbidden phrase is in the phrase library, a flow or a prompt text."""
    from cti.features.phrases.library import check_forbidden_everywhere, load_phrase_library
    from cti.platform.settings import load_settings

    try:
        settings = load_settings(config)
        pdir = phrases_dir or settings.phrases_dir
        fdir = flows_dir or settings.flows_dir
        extra = {
            "settings company.name": settings.company.name,
            "settings company.name_en": settings.company.name_en,
        }
        violations = check_forbidden_everywhere(pdir, fdir, extra)
        for violation in violations:
            typer.echo(violation.message(), err=True)
        if violations:
            raise typer.Exit(1)
        load_phrase_library(pdir)  # the library must also be valid
    except CtiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"no forbidden phrase in {pdir}, {fdir} or the settings")


@phrases_app.command("render")
def render(
    config: ConfigOpt = None,
    phrases_dir: DirOpt = None,
    sounds_dir: DirOpt = None,
    force: Annotated[bool, typer.Option(help="render everything again")] = False,
    install: Annotated[bool, typer.Option(help="copy into the PBX sounds dir")] = True,
) -> None:
    """Render every phrase (zh, en) with espeak-ng into 8 kHz WAV, trimmed; install for the PBX."""
    import time

    from cti.features.phrases.library import load_phrase_library
    from cti.platform.audio import render as audio
    from cti.platform.settings import load_settings

    try:
        settings = load_settings(config)
        pdir = phrases_dir or settings.phrases_dir
        library = load_phrase_library(pdir)
        plan = library.render_plan(
            {"company": {"zh": [settings.company.name], "en": [settings.company.name_en]}}
        )
        started = time.monotonic()
        result = audio.render_all(plan, pdir / "audio", force=force)
        typer.echo(
            f"{result.files} sound files: {result.rendered} rendered, {result.reused} unchanged, "
            f"{result.recorded} from recordings, in {time.monotonic() - started:.1f} s"
        )
        if install:
            target = sounds_dir or settings.sounds_dir
            count = audio.install(pdir / "audio", target)
            typer.echo(f"installed {count} files into {target} (played as sound:custom/<file>)")
    except CtiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@phrases_app.command("timings")
def timings(
    config: ConfigOpt = None,
    phrases_dir: DirOpt = None,
    agent_id: Annotated[str, typer.Option(help="agent id said in the greeting")] = "1001",
    all_rows: Annotated[bool, typer.Option("--all", help="every prompt, not the slowest")] = False,
) -> None:
    """How long each prompt plays against a person's time (docs/prompts.md); exit 1 if one
    is over 1.3x, or the Mandarin greeting over 6 s. Renders what changed first."""
    from cti.features.phrases.library import load_phrase_library
    from cti.platform.audio import pace
    from cti.platform.audio import render as audio
    from cti.platform.settings import load_settings

    try:
        settings = load_settings(config)
        pdir = phrases_dir or settings.phrases_dir
        library = load_phrase_library(pdir)
        company = {"zh": [settings.company.name], "en": [settings.company.name_en]}
        audio.render_all(library.render_plan({"company": company}), pdir / "audio")
        values = {
            slot: {lang: list(v[:1]) for lang, v in per_lang.items()}
            for slot, per_lang in library.slot_values.items()
        }
        values["company"] = company
        values["agent_id"] = {lang: [agent_id] for lang in library.languages}
        rows = pace.prompt_timings(library, pdir / "audio" / "rendered", values)
    except CtiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    rows.sort(key=lambda t: t.ratio, reverse=True)
    typer.echo(f"{'seconds':>8} {'person':>7} {'ratio':>6}  phrase (lang)")
    for t in rows if all_rows else rows[:10]:
        typer.echo(
            f"{t.seconds:8.2f} {t.person_seconds:7.2f} {t.ratio:6.2f}  {t.phrase} ({t.lang})"
        )
    failed = [t for t in rows if t.ratio > pace.MAX_RATIO] + [
        t for t in rows
        if t.phrase == pace.GREETING and t.lang == "zh" and t.seconds > pace.GREETING_MAX_S
    ]
    for t in failed:
        typer.echo(f"too slow: {t.phrase} ({t.lang}) {t.seconds:.2f} s", err=True)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("check-phrases")(check_phrases)
    app.add_typer(phrases_app, name="phrases")
