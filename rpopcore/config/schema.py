"""A small schema for TOML tables: which keys a table takes, how each value
is converted, and the one-line error for anything else."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from rpopcore import errors
from rpopcore.durations import format_duration, parse_duration

class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of a key that must be given.
REQUIRED = _Required()


def _as_is(value: Any) -> Any:
    return value


@attrs.frozen
class Key:
    """One key of a table: its converter (raises ValueError with a message
    that says what is expected), its default (:data:`REQUIRED` if none), a
    sentence of help, and ``show``, which turns a converted value back into
    what a file writes (a duration's ``"10m"``): every reader and writer of
    the key derives from this one definition."""

    convert: Callable[[Any], Any]
    default: Any = REQUIRED
    help: str = ""
    show: Callable[[Any], Any] = _as_is


def read_toml(path: Path) -> dict:
    """Parse a TOML file or raise a ConfigError naming the file and line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise errors.ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise errors.ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        # TOML is UTF-8; a file saved in Latin-1 or a Windows code page
        # (an accented name in a comment) is the usual cause.
        line = data.count(b"\n", 0, exc.start) + 1
        raise errors.ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); TOML files are UTF-8: "
            f"save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{path}: not valid TOML: {exc}") from None


def read_table(table: Any, keys: Mapping[str, Key], where: str) -> dict[str, Any]:
    """Check ``table`` against ``keys``; return every key's converted value
    (defaults filled in).  ``where`` prefixes errors: ``"site.toml: [[remote]] #2"``."""
    if not isinstance(table, dict):
        raise errors.ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    for name in table:
        if name not in keys:
            close = difflib.get_close_matches(name, list(keys), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(keys))}"
            raise errors.ConfigError(f"{where}: unknown key '{name}'{hint}", field=name)
    values: dict[str, Any] = {}
    for name, key in keys.items():
        if name in table:
            try:
                values[name] = key.convert(table[name])
            except (ValueError, TypeError) as exc:
                raise errors.ConfigError(f"{where} key '{name}': {exc}", field=name) from None
        elif key.default is REQUIRED:
            raise errors.ConfigError(f"{where} key '{name}' is missing; it is required", field=name)
        else:
            values[name] = key.default
    return values


# --- converters: each raises ValueError saying what it expects --------------


def boolean(value: Any) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def string(value: Any) -> str:
    """Any string, the empty one too."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string in quotes, got {value!r}")
    return value


def file_path(value: Any) -> str:
    """A path to a file or folder (empty where the key allows it)."""
    if "\0" in string(value):
        raise ValueError("a path cannot contain a NUL character (\\u0000)")
    return value


def non_empty_string(value: Any) -> str:
    """A string with something besides spaces; returned stripped."""
    if not string(value).strip():
        raise ValueError("must not be empty")
    return value.strip()


def integer(value: Any) -> int:
    """A whole number, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"expected 0 or more, got {value}")
    return value


def duration(value: Any) -> int:
    """A duration (``"10m"``, ``"1h30m"``, ``90``) in whole seconds."""
    return parse_duration(value)


def duration_key(default: Any = REQUIRED, help: str = "") -> Key:
    """A key holding a duration: read with :func:`duration`, written back
    as ``"10m"``."""
    return Key(duration, default, help, show=lambda seconds: None if seconds is None else format_duration(seconds))


def port(value: Any) -> int:
    """A ``port`` key: a whole number from 1 to 65535."""
    number = integer(value)
    if not 0 < number < 65536:
        raise ValueError(f"expected a port number from 1 to 65535, got {number}")
    return number


def delivery_timeout(value: Any) -> int:
    """A delivery's ``timeout``: a duration of at least a second."""
    seconds = duration(value)
    if seconds == 0:
        raise ValueError("must be at least 1s; a delivery cannot wait forever")
    return seconds


def string_list(value: Any) -> tuple[str, ...]:
    """A list of strings, as a tuple."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, like [\"a\", \"b\"], got {value!r}")
    return tuple(value)


def string_map(value: Any) -> dict[str, str]:
    """A table of strings (``{ al = "alice" }``)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"expected a table of strings, like {{ al = \"alice\" }}, got {value!r}")
    return dict(value)


def one_of(*choices: str) -> Callable[[Any], str]:
    """A converter accepting exactly one of ``choices``."""
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value

    return convert


def poll_period(value: Any) -> int | None:
    """A duration, or "disabled" (None: kept but never polled)."""
    if value == "disabled":
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"expected \"disabled\" or a duration like \"10m\", got {value!r}") from None
    if seconds == 0:
        raise ValueError("a poll period of 0 would poll without pause; give a duration, or \"disabled\"")
    return seconds


def show_poll_period(seconds: int | None) -> str:
    """What :func:`poll_period` reads back."""
    return "disabled" if seconds is None else format_duration(seconds)
