"""What a waiting caller is told: the phrases (ids + slots) for an `Announce` command (pure)."""

from __future__ import annotations

import math

POSITION = "queue_position"  # "you are number {position} in the queue"
NEXT = "queue_next"  # "you are next in the queue"
WAIT_MINUTES = "queue_wait_minutes"  # "... about {minutes} minutes"
WAIT_UNDER_MINUTE = "queue_wait_under_minute"  # "... less than one minute"

PHRASE_IDS = (POSITION, NEXT, WAIT_MINUTES, WAIT_UNDER_MINUTE)


def announcement_phrases(
    position: int | None, wait_s: float | None
) -> list[tuple[str, dict[str, str]]]:
    """The phrases to play, in order: the caller's place (None: not said), then the estimated
    wait in whole minutes rounded up (None: not said); a minute or less is "less than one
    minute", so the caller never hears "about 1 minutes"."""
    out: list[tuple[str, dict[str, str]]] = []
    if position is not None:
        if position <= 1:
            out.append((NEXT, {}))
        else:
            out.append((POSITION, {"position": str(position)}))
    if wait_s is not None and not math.isinf(wait_s):
        minutes = max(0, math.ceil(wait_s / 60))
        if minutes <= 1:
            out.append((WAIT_UNDER_MINUTE, {}))
        else:
            out.append((WAIT_MINUTES, {"minutes": str(minutes)}))
    return out
