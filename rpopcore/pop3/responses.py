"""Parsing of POP3 server answers in one place: status lines with their RFC
2449 response codes, CAPA, UIDL and LIST listings, and the APOP timestamp of
the greeting."""

from __future__ import annotations

import re

import attrs

from rpopcore import errors


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
            raise errors.ProtocolError(f"expected +OK or -ERR, got {_excerpt(text)}")
        rest = rest.lstrip(" ")
        code = ""
        match = _RESP_CODE.match(rest)
        if match:
            code = match.group(1).upper()
        return cls(ok=ok, text=rest, code=code)


_RESP_CODE = re.compile(r"^\[([A-Za-z0-9/\-]+)(?:\s[^\]]*)?\]")
_APOP_TIMESTAMP = re.compile(rb"<[\x21-\x7e]+@[\x21-\x7e]+>")


def _excerpt(text: str, limit: int = 80) -> str:
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


def parse_uidl(body: bytes) -> dict[int, str]:
    """``n uid`` per line -> {n: uid}.  Malformed lines and duplicate UIDs are
    protocol errors: acting on them could skip or lose mail."""
    result: dict[int, str] = {}
    seen: set[str] = set()
    for raw in body.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise errors.ProtocolError(f"malformed UIDL line {_excerpt(raw.decode('utf-8', 'replace'))}")
        number, uid = int(parts[0]), parts[1].decode("ascii", "replace")
        if not all(0x21 <= c <= 0x7E for c in parts[1]) or len(parts[1]) > 70:
            raise errors.ProtocolError(f"malformed UID in UIDL line {_excerpt(raw.decode('utf-8', 'replace'))}")
        if uid in seen or number in result:
            raise errors.ProtocolError(f"duplicate entry in UIDL listing: {_excerpt(raw.decode('utf-8', 'replace'))}")
        seen.add(uid)
        result[number] = uid
    return result


def parse_list(body: bytes) -> dict[int, int]:
    """``n size`` per line -> {n: size}."""
    result: dict[int, int] = {}
    for raw in body.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise errors.ProtocolError(f"malformed LIST line {_excerpt(raw.decode('utf-8', 'replace'))}")
        number = int(parts[0])
        if number in result:
            raise errors.ProtocolError(f"duplicate entry in LIST listing: {_excerpt(raw.decode('utf-8', 'replace'))}")
        result[number] = int(parts[1])
    return result
