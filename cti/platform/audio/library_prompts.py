"""PromptSource over the phrase library: phrase id + slots -> `sound:custom/<file>` media.

Files come from `cti phrases render` (assembled from parts for templated phrases). A slot value
that was not rendered in advance (a surname, say) makes the whole filled phrase be rendered
once, on demand, as its own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import wave
from collections.abc import Mapping
from pathlib import Path

from cti.domain.phrases import PhraseLibrary
from cti.platform.audio.render import render_text


class LibraryPrompts:
    def __init__(self, library: PhraseLibrary, sounds_dir: Path) -> None:
        self.library = library
        self.sounds_dir = sounds_dir
        self._locks: dict[str, asyncio.Lock] = {}
        self._seconds: dict[str, float] = {}

    def seconds(self, media: list[str]) -> float | None:
        """How long the media play (their WAV headers, read once per file); None if a file is
        not ours or unreadable. An adopted call's prompt ends at its start plus this."""
        total = 0.0
        for uri in media:
            name = uri.removeprefix("sound:custom/")
            if name == uri:
                return None
            known = self._seconds.get(name)
            if known is None:
                with contextlib.suppress(OSError, wave.Error, EOFError), \
                        wave.open(str(self.sounds_dir / f"{name}.wav"), "rb") as wav:
                    known = wav.getnframes() / float(wav.getframerate())
                if known is None:
                    return None
                self._seconds[name] = known
            total += known
        return total

    async def media(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
        files = self.library.media_files(phrase_id, lang, slots)  # refuses forbidden results
        if all((self.sounds_dir / f"{name}.wav").exists() for name in files):
            return [f"sound:custom/{name}" for name in files]
        text = self.library.fill(phrase_id, lang, slots)
        name = f"{phrase_id}__{lang}__{hashlib.sha1(text.encode()).hexdigest()[:10]}"
        path = self.sounds_dir / f"{name}.wav"
        async with self._locks.setdefault(name, asyncio.Lock()):
            if not path.exists():
                await asyncio.to_thread(render_text, text, lang, path)
        return [f"sound:custom/{name}"]
