"""Parsing of POP3 server answers in one place: status lines with their RFC
2449 response codes, CAPA, STAT, UIDL and LIST listings, and the APOP
timestamp of the greeting.

What a server announces is checked against the limits below before rpop
acts on it or allocates for it: a count, a size or a listing beyond them is
a :class:`rpopcore.errors.ProtocolError`, so no answer a server can send
makes rpop use more than a documented amount of memory."""

from __future__ import annotations

import re
from typing import Iterable

import attrs

from rpopcore import errors

#: The most messages rpop takes in one mailbox.  A mailbox read over POP3
#: holds far fewer; at this count the UIDL listing is about 80 MB on the
#: wire and its table of UIDs about 150 MB in memory, the most one poll may
#: spend on a listing.  A STAT that counts more is a protocol error.
MAX_MESSAGES = 1_000_000
#: Digits of a size (STAT, LIST): 20 digits hold any size a disk can, and
#: int() of a longer string costs time that grows with its square.
MAX_SIZE_DIGITS = 20
#: Bytes per message a UIDL or LIST listing may take on the wire: a number
#: (7 digits), a space, a UID (70 characters at most, RFC 1939) and CRLF
#: make 80; the rest is room for servers that pad with spaces or add
#: fields.  A listing longer than this times STAT's count is a protocol error.
MAX_LISTING_LINE = 128
#: The longest CAPA answer: a real one is under 1 KB (Dovecot's, with every
#: SASL mechanism, about 300 bytes).
MAX_CAPA = 64 * 1024


@attrs.frozen
class StatusLine:
    """``+OK text`` or ``-ERR [CODE] text``.  ``code`` is the RFC 2449
    response code in upper case (``IN-USE``, ``SYS/TEMP``, ...) or "".
    ``continuation`` marks a SASL challenge line ``+ base64`` (RFC 5034),
    whose ``text`` is the base64 payload."""

    ok: bool
    text: str
    code: str = ""
    continuation: bool = False

    @classmethod
    def parse(cls, line: bytes) -> "StatusLine":
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        if text == "+" or (text.startswith("+ ") and not text.startswith("+OK")):
            return cls(ok=False, text=text[2:].strip(), continuation=True)
        if text.startswith("+OK"):
            ok, rest = True, text[3:]
        elif text.startswith("-ERR"):
            ok, rest = False, text[4:]
        else:
            raise errors.ProtocolError(f"expected +OK or -ERR, got {excerpt(text)}")
        rest = rest.lstrip(" ")
        code = ""
        match = _RESP_CODE.match(rest)
        if match:
            code = match.group(1).upper()
        return cls(ok=ok, text=rest, code=code)


_RESP_CODE = re.compile(r"^\[([A-Za-z0-9/\-]+)(?:\s[^\]]*)?\]")
_APOP_TIMESTAMP = re.compile(rb"<[\x21-\x7e]+@[\x21-\x7e]+>")


def excerpt(text: str, limit: int = 80) -> str:
    """``text`` quoted for an error detail, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def error_for(status: StatusLine, during: str) -> errors.PollError:
    """The error a ``-ERR`` answer means, by its response code (RFC 2449,
    RFC 3206).  ``during`` names the step, for the message.  The error keeps
    the code as ``response_code``."""
    error = _error_for(status, during)
    error.response_code = status.code
    return error


def _error_for(status: StatusLine, during: str) -> errors.PollError:
    message = f"{during}: -ERR {status.text}".rstrip()
    if status.code == "IN-USE":
        return errors.MailboxLocked(message)
    if status.code == "LOGIN-DELAY":
        return errors.LoginDelay(message)
    if status.code == "SYS/TEMP":
        return errors.ServerTemporaryFailure(message)
    if status.code == "SYS/PERM":
        return errors.ServerPermanentFailure(message)
    if status.code == "AUTH" or during.startswith(("PASS", "APOP", "AUTH", "USER")):
        return errors.AuthFailed(message)
    return errors.ProtocolError(message)


def apop_timestamp(greeting: StatusLine) -> str | None:
    """The ``<...@...>`` timestamp of an APOP-capable greeting, if any."""
    match = _APOP_TIMESTAMP.search(greeting.text.encode())
    return match.group(0).decode() if match else None


@attrs.frozen
class Capabilities:
    """The CAPA answer (RFC 2449).  ``known`` is False when the server did not
    answer CAPA; callers then assume only what RFC 1939 guarantees."""

    lines: tuple[str, ...] = ()
    known: bool = False

    @classmethod
    def parse(cls, body: bytes) -> "Capabilities":
        lines = tuple(line.strip() for line in body.decode("utf-8", "replace").splitlines() if line.strip())
        return cls(lines=lines, known=True)

    def has(self, name: str) -> bool:
        name = name.upper()
        return any(line.split()[0].upper() == name for line in self.lines)

    def args(self, name: str) -> tuple[str, ...]:
        name = name.upper()
        for line in self.lines:
            words = line.split()
            if words[0].upper() == name:
                return tuple(words[1:])
        return ()

    @property
    def sasl(self) -> tuple[str, ...]:
        return tuple(word.upper() for word in self.args("SASL"))

    @property
    def pipelining(self) -> bool:
        return self.has("PIPELINING")


def parse_stat(text: str) -> tuple[int, int]:
    """``count octets`` of a STAT answer, both checked against the limits
    before anything is made of them (a count drives what the client
    allocates for the listing)."""
    parts = text.split()
    if len(parts) < 2 or not _is_number(parts[0], MAX_SIZE_DIGITS) or not _is_number(parts[1], MAX_SIZE_DIGITS):
        raise errors.ProtocolError(f"malformed STAT answer {excerpt(text)}")
    count = int(parts[0])
    if count > MAX_MESSAGES:
        raise errors.ProtocolError(f"STAT counts {count} messages; rpop takes at most {MAX_MESSAGES} in one mailbox")
    return count, int(parts[1])


def listing_limit(count: int) -> int:
    """The most bytes a UIDL or LIST listing of ``count`` messages may take."""
    return (count + 1) * MAX_LISTING_LINE


# A listing is read with one pass of C over the whole body rather than
# Python code per line (100,000 lines take a few dozen milliseconds): a
# regular expression takes every well-formed line; when they are fewer than
# the lines, a second one finds the first that is not (blank lines, which
# RFC 1939 servers have sent, are allowed).
_UIDL_LINE = re.compile(rb"^[ \t\r]*(\d{1,10})[ \t]+([\x21-\x7e]{1,70})[ \t\r]*$", re.M)
_LIST_LINE = re.compile(rb"^[ \t\r]*(\d{1,10})[ \t]+(\d{1,%d})(?:[ \t][^\n]*)?$" % MAX_SIZE_DIGITS, re.M)
_BLANK_LINE = re.compile(rb"^[ \t\r]*$", re.M)


def parse_uidl(body: bytes, count: int) -> dict[int, str]:
    """``n uid`` per line -> {n: uid}, checked against STAT's ``count``.
    Malformed lines, duplicate numbers or UIDs, numbers outside 1..count and
    a listing that leaves out a message are protocol errors: acting on them
    could skip mail for ever or lose it."""
    entries = _listing_entries("UIDL", _UIDL_LINE, body)
    result = {int(n): uid.decode("ascii") for n, uid in entries}
    _check_numbers("UIDL", result, len(entries), count)
    if len(set(result.values())) != len(result):
        raise errors.ProtocolError(f"duplicate entry in UIDL listing: UID {excerpt(_repeated(result.values()))} "
                                   "names two messages")
    return result


def parse_list(body: bytes, count: int) -> dict[int, int]:
    """``n size`` per line -> {n: size}, checked against STAT's ``count`` as
    :func:`parse_uidl` checks a UIDL listing."""
    entries = _listing_entries("LIST", _LIST_LINE, body)
    result = {int(n): int(size) for n, size in entries}
    _check_numbers("LIST", result, len(entries), count)
    return result


def _listing_entries(listing: str, line: re.Pattern, body: bytes) -> list[tuple[bytes, bytes]]:
    """The fields of every line of ``body``; a line ``line`` does not match
    (other than a blank one) is a protocol error."""
    entries = line.findall(body)
    lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    if len(entries) != lines:
        for text in body.splitlines():
            if not _BLANK_LINE.match(text) and not line.match(text):
                raise errors.ProtocolError(f"malformed {listing} line {excerpt(text.decode('utf-8', 'replace'))}")
    return entries


def _check_numbers(listing: str, numbers: dict[int, object], entries: int, count: int) -> None:
    """A listing names each message 1..count exactly once (nothing is
    marked deleted when it is read)."""
    if len(numbers) != entries:
        raise errors.ProtocolError(f"duplicate entry in {listing} listing: a message number is listed twice")
    outside = [n for n in (min(numbers, default=1), max(numbers, default=1)) if not 1 <= n <= count]
    if numbers and outside:
        raise errors.ProtocolError(
            f"{listing} lists message {outside[0]}, but STAT counts {count} message{'s' if count != 1 else ''}"
        )
    if len(numbers) != count:
        missing = next(n for n in range(1, count + 1) if n not in numbers)
        raise errors.ProtocolError(
            f"{listing} leaves out message {missing} of the {count} STAT counts ({len(numbers)} listed)"
        )


def _repeated(values: Iterable[str]) -> str:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return ""


def _is_number(text: str, digits: int) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= digits
