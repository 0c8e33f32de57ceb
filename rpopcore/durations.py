"""Durations as users write them: ``"45s"``, ``"10m"``, ``"2h"``, ``"1d"`` or
a whole number of seconds.  Parsed once, at the edge, into whole seconds."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_duration(value: object) -> int:
    """Return whole seconds, or raise ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write e.g. \"45s\", \"10m\", \"2h\", \"1d\" or seconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; a duration is 0 or more seconds")
        return value
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return int(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(f"{value!r} is not a duration; write e.g. \"45s\", \"10m\", \"2h\", \"1d\" or seconds")


def format_duration(seconds: int) -> str:
    """The shortest exact form: 600 -> "10m", 90 -> "90s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
