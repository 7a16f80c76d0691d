"""Render the phrase library to sound files Asterisk plays as `sound:custom/<file>`.

espeak-ng speaks the text (Mandarin voice `cmn-latn-pinyin`, English `en-us`); sox converts
it to 8 kHz 16-bit mono WAV, trims leading and trailing silence (the waits of the procedures
are what the caller hears, so a prompt carries no silence of its own) and normalises the level.
A file in scripts_lib/audio/recorded/<file>.wav replaces the rendered one and is trimmed the
same way. Only changed items are rendered again (a manifest keeps each file's text hash).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from cti.domain.phrases import RenderItem
from cti.platform.errors import CtiError

# Mandarin: `cmn` of espeak-ng 1.51 (Debian 12) reads most characters as pinyin with tone
# numbers in its English voice ("nin two hao three"); `cmn-latn-pinyin` speaks them in Mandarin
# but would read Latin words as pinyin too, so those go to the English voice (SSML, below).
VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us"}
ENGLISH_IN_CHINESE = "en-us"
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z0-9 .,'!?&-]*[A-Za-z.!?]|[A-Za-z]")
SAMPLE_RATE = 8000
# sox `silence`: drop audio below 0.3% of full scale at the start; reversed, at the end.
TRIM = ["silence", "1", "0.02", "0.3%", "reverse", "silence", "1", "0.02", "0.3%", "reverse"]
RENDER_VERSION = "2"


class RenderError(CtiError):
    error_id = "render_failed"


@dataclass(frozen=True, slots=True)
class RenderResult:
    rendered: int
    reused: int
    recorded: int
    files: int


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RenderError(f"{name} not found on PATH (apt-get install {name})")
    return path


def _run(args: Sequence[str]) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(f"{' '.join(args[:3])} ... failed: {proc.stderr.strip()[:300]}")


def convert_and_trim(source: Path, target: Path) -> None:
    """Any audio sox reads -> 8 kHz 16-bit mono WAV without leading/trailing silence."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.wav")
    _run([_tool("sox"), str(source), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
          "-e", "signed-integer", str(tmp), *TRIM, "norm", "-3"])
    tmp.replace(target)


def espeak_args(text: str, lang: str) -> list[str]:
    """espeak-ng's arguments (after the program name, before `-w FILE`) that say `text`."""
    voice = VOICES.get(lang)
    if voice is None:
        raise RenderError(f"no espeak-ng voice for language {lang!r}")
    if lang != "zh" or not _LATIN_RUN.search(text):
        return ["-v", voice, "-s", "150", text]
    # Every run in its own voice element: after a closing </voice> espeak-ng falls back to
    # plain `cmn`, not the voice it was started with.
    runs, last = [], 0
    for m in _LATIN_RUN.finditer(text):
        runs += [(voice, text[last:m.start()]), (ENGLISH_IN_CHINESE, m.group())]
        last = m.end()
    runs.append((voice, text[last:]))
    parts = [f'<voice name="{v}">{escape(t)}</voice>' for v, t in runs if t]
    return ["-m", "-v", voice, "-s", "150", f"<speak>{''.join(parts)}</speak>"]


def speak(item: RenderItem, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        args = espeak_args(item.text, item.lang)
        _run([_tool("espeak-ng"), *args[:-1], "-w", str(raw), args[-1]])
        convert_and_trim(raw, target)


def _key(item: RenderItem, recorded: Path | None) -> str:
    h = hashlib.sha1(f"{RENDER_VERSION}|{item.lang}|{item.text}".encode())
    if recorded is not None:
        h.update(recorded.read_bytes())
    return h.hexdigest()


def render_all(
    items: Sequence[RenderItem], audio_dir: Path, *, workers: int = 4, force: bool = False
) -> RenderResult:
    """Render into audio_dir/rendered/<file>.wav; recorded/<file>.wav overrides."""
    out_dir = audio_dir / "rendered"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest: dict[str, str] = {}
    if manifest_path.exists() and not force:
        try:
            loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a damaged cache: render everything again
            loaded = {}
        manifest = loaded if isinstance(loaded, dict) else {}
    todo: list[tuple[RenderItem, Path | None, str]] = []
    reused = recorded_count = 0
    for item in items:
        recorded = audio_dir / "recorded" / f"{item.file}.wav"
        rec = recorded if recorded.exists() else None
        recorded_count += rec is not None
        key = _key(item, rec)
        if manifest.get(item.file) == key and (out_dir / f"{item.file}.wav").exists():
            reused += 1
            continue
        todo.append((item, rec, key))

    def work(job: tuple[RenderItem, Path | None, str]) -> tuple[str, str]:
        item, rec, key = job
        target = out_dir / f"{item.file}.wav"
        if rec is not None:
            convert_and_trim(rec, target)
        else:
            speak(item, target)
        return item.file, key

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for file, key in pool.map(work, todo):
            manifest[file] = key
    manifest_path.write_text(json.dumps(manifest, indent=0, sort_keys=True), encoding="utf-8")
    return RenderResult(len(todo), reused, recorded_count, len(items))


def install(audio_dir: Path, sounds_dir: Path) -> int:
    """Copy the rendered files where the PBX plays `sound:custom/<file>` from."""
    sounds_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for wav in sorted((audio_dir / "rendered").glob("*.wav")):
        shutil.copy2(wav, sounds_dir / wav.name)
        count += 1
    return count


def render_text(text: str, lang: str, target: Path) -> None:
    """Speak one text into `target` (8 kHz WAV, trimmed): for values not rendered in advance."""
    speak(RenderItem(target.stem, lang, text), target)
