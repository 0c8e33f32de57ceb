"""The seed's TCP Activity Schedule: weekly windows when rpop may connect.

A window is written ``"Mon-Fri 08:00-18:30"``, ``"Sat 09:00-12:00"``,
``"Sun 22:00-02:00"`` (ends the next day) or ``"Daily 00:00-24:00"``, in
the module's ``time_zone``.  Times are wall-clock times in that zone, so a
window keeps its hours across daylight-saving changes.  No windows: always.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*([A-Za-z]{3,5})(?:\s*-\s*([A-Za-z]{3}))?\s+(\d{1,2}):(\d\d)\s*-\s*(\d{1,2}):(\d\d)\s*$")


@attrs.frozen
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight; <= start means "the next day"


def parse_window(text: str) -> Window:
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a window; write e.g. \"Mon-Fri 08:00-18:30\" or \"Daily 22:00-06:00\"")
    first, last, h1, m1, h2, m2 = match.groups()
    if first.lower() == "daily" and not last:
        days = frozenset(range(7))
    else:
        try:
            a = DAYS.index(first.lower()[:3]) if len(first) == 3 else DAYS.index("x")
            b = DAYS.index(last.lower()) if last else a
        except ValueError:
            raise ValueError(f"{text!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun or Daily") from None
        days = frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
    start, end = int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)
    if int(m1) > 59 or int(m2) > 59 or start >= 24 * 60 or end > 24 * 60:
        raise ValueError(f"{text!r}: times run from 00:00 to 24:00")
    return Window(days, start, end)


def parse_schedule(texts: Iterable[str]) -> tuple[Window, ...]:
    return tuple(parse_window(t) for t in texts)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use a name like \"UTC\" or \"Europe/Berlin\"") from None


def _inside(windows: tuple[Window, ...], local: dt.datetime) -> bool:
    minute = local.hour * 60 + local.minute
    day = local.weekday()
    for w in windows:
        if w.end > w.start:
            if day in w.days and w.start <= minute < w.end:
                return True
        else:  # wraps past midnight: the evening part, or the morning after
            if day in w.days and minute >= w.start:
                return True
            if (day - 1) % 7 in w.days and minute < w.end:
                return True
    return False


def allowed(windows: tuple[Window, ...], tz: ZoneInfo, now: dt.datetime) -> bool:
    """May rpop connect at ``now`` (an aware datetime)?"""
    return not windows or _inside(windows, now.astimezone(tz))


def next_allowed(windows: tuple[Window, ...], tz: ZoneInfo, now: dt.datetime) -> dt.datetime:
    """``now`` if allowed, else the start of the next window (to the minute)."""
    if allowed(windows, tz, now):
        return now
    local = now.astimezone(tz).replace(second=0, microsecond=0)
    for step in range(1, 8 * 24 * 60 + 1):
        candidate = (local + dt.timedelta(minutes=step))
        # Wall-clock arithmetic: re-attach the zone so DST shifts are honoured.
        candidate = candidate.replace(tzinfo=None).replace(tzinfo=tz)
        if _inside(windows, candidate):
            return candidate.astimezone(dt.timezone.utc)
    return now  # unreachable with at least one non-empty window
