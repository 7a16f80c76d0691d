"""PromptSource over the phrase library: fills slots, renders the audio once, plays it from the
PBX's custom sounds dir as `sound:custom/<file>`."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cti.errors import ConfigError, NotFound
from cti.settings import Settings
from cti.yaml_source import load_yaml_mapping


class PhrasePrompts:
    def __init__(self, phrases: Mapping[str, Mapping[str, Any]], sounds_dir: Path) -> None:
        self.phrases = phrases
        self.sounds_dir = sounds_dir
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PhrasePrompts:
        data = load_yaml_mapping(settings.phrases_dir / "phrases.yaml")
        phrases = data.get("phrases")
        if not isinstance(phrases, dict):
            raise ConfigError(f"{settings.phrases_dir / 'phrases.yaml'}: no `phrases` mapping")
        return cls(phrases, settings.sounds_dir)

    def text(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> str:
        phrase = self.phrases.get(phrase_id)
        if phrase is None or lang not in phrase:
            raise NotFound(f"no phrase {phrase_id!r} in language {lang!r}")
        return str(phrase[lang]).format_map(dict(slots))

    async def media(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
        text = self.text(phrase_id, slots, lang)
        digest = hashlib.sha1(f"{lang}\n{text}".encode()).hexdigest()[:12]
        name = f"{phrase_id}-{lang}-{digest}"
        path = self.sounds_dir / f"{name}.wav"
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if not path.exists():
                from cti.adapters.audio.render import render_text

                await asyncio.to_thread(render_text, text, lang, path)
        return [f"sound:custom/{name}"]
