"""What an SMTP or LMTP server says, parsed in one place, and the checks on
what we write in a command: an address in ``<...>`` and an xtext parameter."""

from __future__ import annotations

import attrs


class SessionBroken(Exception):
    """The session cannot go on (a refused greeting, STARTTLS or
    credentials; a reply that is not one; a closed connection): whatever is
    not decided yet stays undecided."""


@attrs.frozen
class Reply:
    """One reply: its code and the text of each of its lines (a multi-line
    reply, as to EHLO, has several).  ``str()`` is ``code text...``, the
    form that goes into an outcome's detail."""

    code: int
    lines: tuple[str, ...]

    @property
    def positive(self) -> bool:
        """2xx: the command was done."""
        return self.code // 100 == 2

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".rstrip()


def parse_line(line: bytes, protocol: str = "SMTP") -> tuple[int, bool, str]:
    """One reply line (with its line ending) -> (code, more lines follow,
    text).  ``protocol`` names the protocol in the complaint about a line
    that is not a reply."""
    code, sep = line[:3], line[3:4]
    if not code.isdigit() or sep not in (b" ", b"-", b"\r", b"\n"):
        raise SessionBroken(f"not an {protocol} reply: {line[:80]!r}")
    return int(code), sep == b"-", line[4:].strip().decode("utf-8", "replace")


def extensions(reply: Reply) -> dict[str, str]:
    """The answer to EHLO or LHLO -> ``{KEYWORD: parameters}``; the first line
    is the server's name, not an extension."""
    offered: dict[str, str] = {}
    for line in reply.lines[1:]:
        words = line.split(None, 1)
        if words:
            offered[words[0].upper()] = words[1].strip() if len(words) > 1 else ""
    return offered


def path_of(address: str) -> bytes | None:
    """``<address>`` for MAIL FROM / RCPT TO, or None when the address cannot
    be written there (a control character or an angle bracket would let it
    break out of the command)."""
    if any(ord(c) < 0x20 or c in "<>\x7f" for c in address):
        return None
    return b"<" + address.encode("utf-8", "surrogateescape") + b">"


def xtext(text: str) -> str:
    """RFC 3461 4: printable ASCII but ``+`` and ``=`` as is, the rest ``+XX``."""
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in text.encode("utf-8", "surrogateescape")
    )
