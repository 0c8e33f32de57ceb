"""Reading the other tools' files, and turning their local user names into
rpop addresses."""

from __future__ import annotations

from pathlib import Path

from rpopcore import errors


def read_text(path: Path) -> str:
    """A configuration or UID file as text; one clear line when it cannot
    be read.  A file that is not UTF-8 is read as Latin-1, the encoding
    older rc files were written in, rather than refused."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"{path}: cannot read it ({exc.strerror}); give the path of a readable file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def local_address(name: str, domain: str) -> str:
    """``bob`` -> ``bob@DOMAIN``; a full address stays as it is."""
    name = name.strip()
    return name.lower() if "@" in name else f"{name.lower()}@{domain}"
