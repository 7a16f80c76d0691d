"""Where spoken prompts come from: phrase id + slots -> media URIs Asterisk can play."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable


class PromptSource(Protocol):
    async def media(self, phrase_id: str, slots: Mapping[str, str], lang: str) -> list[str]:
        """Media URIs (`sound:custom/...`) that say the phrase, rendering it if needed."""
        ...


@runtime_checkable
class PromptLengths(Protocol):
    def seconds(self, media: list[str]) -> float | None:
        """How long `media` play, if known (an adopted call's prompt ends at start + this)."""
        ...
