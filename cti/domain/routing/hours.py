"""Business hours and holidays: is the contact center open at a given instant?"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from cti.domain.routing.model import BusinessHours


def is_open(hours: BusinessHours | None, at: datetime) -> bool:
    """`at` must be timezone-aware; no hours configured means always open."""
    if hours is None:
        return True
    local = at.astimezone(ZoneInfo(hours.timezone))
    if local.date() in hours.holidays:
        return False
    wd = local.weekday()
    t = local.time().replace(tzinfo=None)
    return any(wd in w.days and w.opens <= t < w.closes for w in hours.weekly)
