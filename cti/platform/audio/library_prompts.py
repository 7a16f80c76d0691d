"""PromptSource over the phrase library: phrase id + slots -> `sound:custom/<file>` media.

Files come from `cti phrases render` (assembled from parts for templated phrases). A slot value
that was not rendered in advance (a surname, say) makes the whole filled phrase be rendered
once, on demand, as its own file.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from pathlib import Path

from cti.domain.phrases import PhraseLibrary
from cti.platform.audio.render import render_text


class LibraryPrompts:
    def __init__(self, library: PhraseLibrary, sounds_dir: Path) -> None:
        self.library = library
        self.sounds_dir = sounds_dir
        self._locks: dict[str, asyncio.Lock] = {}

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
