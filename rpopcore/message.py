"""A retrieved message: its header block in memory, its body spooled.

The body can be of any size: it stays in memory up to a threshold and then
spills to a temporary file, so memory does not grow with message size.  The
header block is kept as raw bytes and searched for the fields asked for; a
delivered copy is the header with some fields removed (Return-Path, a
special field), new trace fields on top, and the body byte for byte as the
server sent it (after dot-unstuffing, with LF line endings).
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import functools
import os
import re
import tempfile
from collections.abc import Iterator

#: Bodies larger than this go to a temporary file.
SPILL_AT = 1 << 20
#: A "header" that runs this long without a blank line is taken as body.
MAX_HEADER = 1 << 20
READ_CHUNK = 1 << 18


class MessageSpool:
    """Receives decoded message bytes (a :class:`Pop3Client` sink) and keeps
    them: the header block in memory, the body in memory or a temp file."""

    def __init__(self, spill_at: int = SPILL_AT, tmpdir: str | None = None):
        self._head = bytearray()
        self._header_done = False
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._file = None
        self._spill_at = spill_at
        self._tmpdir = tmpdir
        self.header = b""

    def write(self, data: bytes) -> None:
        if not self._header_done:
            self._head += data
            end = _header_end(self._head)
            if end is None:
                if len(self._head) <= MAX_HEADER:
                    return
                end = 0  # no header block at all: all of it is body
            self.header = bytes(self._head[:end])
            data = bytes(self._head[end:])
            self._head = bytearray()
            self._header_done = True
            if not data:
                return
        self._body_size += len(data)
        if self._file is not None:
            self._file.write(data)
        elif self._body_size > self._spill_at:
            self._file = tempfile.TemporaryFile(dir=self._tmpdir)
            for part in self._body_parts:
                self._file.write(part)
            self._file.write(data)
            self._body_parts = []
        else:
            self._body_parts.append(data)

    def finish(self) -> None:
        """Call once the whole message has been written."""
        if not self._header_done:
            self.header = bytes(self._head)
            if self.header and not self.header.endswith(b"\n"):
                self.header += b"\n"
            self._head = bytearray()
            self._header_done = True

    @property
    def size(self) -> int:
        return len(self.header) + self._body_size

    def body_chunks(self) -> Iterator[bytes]:
        if self._file is None:
            yield from self._body_parts
            return
        self._file.seek(0)
        while True:
            chunk = self._file.read(READ_CHUNK)
            if not chunk:
                return
            yield chunk

    def write_body_to(self, fd: int, before: bytes = b"") -> int:
        """Write ``before`` and then the body to file descriptor ``fd``; the
        number of bytes.  A body in memory goes in one ``writev`` with
        ``before``; a spooled one is copied by the kernel (``sendfile``),
        never through Python."""
        if self._file is None:
            _write_all(fd, [before, *self._body_parts])
            return len(before) + self._body_size
        _write_all(fd, [before])
        self._file.flush()
        source, offset = self._file.fileno(), 0
        while offset < self._body_size:
            sent = os.sendfile(fd, source, offset, self._body_size - offset)
            if sent == 0:
                raise OSError(f"the spool file ended after {offset} of {self._body_size} bytes")
            offset += sent
        return len(before) + self._body_size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._body_parts = []


def _write_all(fd: int, buffers: list[bytes]) -> None:
    """``os.writev`` until every byte is written (a regular file takes all at
    once; a pipe may not)."""
    while buffers:
        written = os.writev(fd, buffers[:_IOV_MAX])
        while buffers and written >= len(buffers[0]):
            written -= len(buffers[0])
            buffers = buffers[1:]
        if written:
            buffers = [buffers[0][written:], *buffers[1:]]


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def _header_end(head: bytearray) -> int | None:
    """Length of the header lines (each ending in LF), not counting the blank
    line that ends them; None while no blank line has arrived."""
    if head.startswith(b"\n"):
        return 0
    i = head.find(b"\n\n")
    return None if i < 0 else i + 1


@functools.lru_cache(maxsize=256)
def _fields_named(names: frozenset[str]) -> re.Pattern[bytes]:
    """Matches each field (continuation lines included) whose name is one of
    ``names`` (lower case), in a header block of LF-ended lines with an LF put
    in front: the match is that LF and the field without its own final LF,
    so group 1 is the field.  The leading LF is a literal prefix, which the
    regex engine finds with memchr, and is about ten times faster than
    ``^`` in multi-line mode."""
    alternatives = b"|".join(re.escape(name.encode("ascii", "replace")) for name in sorted(names))
    return re.compile(rb"\n((?:" + alternatives + rb")[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*)", re.IGNORECASE)


def _unfolded_value(raw: bytes) -> str:
    """The value of a raw field, unfolded, with RFC 2047 encoded words left
    as they are."""
    value = raw.decode("utf-8", "surrogateescape").split(":", 1)[1]
    return " ".join(value.split())


class RetrievedMessage:
    """One message retrieved from the server, with its UID and spool.

    Recipient resolution reads :meth:`field_values`; delivery agents read
    :meth:`chunks` for the copy to deliver.
    """

    def __init__(self, uid: str | None, number: int, spool: MessageSpool):
        self.uid = uid
        self.number = number
        self.spool = spool

    # The header block is searched with a regular expression per set of
    # names rather than split into field objects: a delivery needs one or two
    # fields, and splitting every field cost as much as decoding the message.

    def field_values(self, name: str) -> list[str]:
        """Values of every field named ``name`` (case-insensitive), in order."""
        pattern = _fields_named(frozenset((name.lower(),)))
        return [_unfolded_value(m.group(1)) for m in pattern.finditer(b"\n" + self.spool.header)]

    @property
    def return_path(self) -> str:
        """The envelope sender the first Return-Path names; "" (the null
        sender ``<>``) when there is none or it is empty."""
        values = self.field_values("Return-Path")
        if not values:
            return ""
        value = values[0].strip()
        if value.startswith("<") and value.endswith(">") and not any(c in value for c in ' ,"()\\'):
            return value[1:-1]  # the usual form, without the cost of the full parser
        addresses = email.utils.getaddresses([value])
        return addresses[0][1] if addresses else ""

    @property
    def message_id(self) -> str:
        values = self.field_values("Message-ID")
        return values[0].strip() if values else ""

    @property
    def size(self) -> int:
        return self.spool.size

    def header_without(self, remove: frozenset[str]) -> bytes:
        """The header block without the fields named in ``remove`` (lower
        case); every other byte as received."""
        if not remove:
            return self.spool.header
        return _fields_named(remove).sub(b"", b"\n" + self.spool.header)[1:]

    def chunks(self, remove: frozenset[str], trace: bytes = b"") -> Iterator[bytes]:
        """The copy to deliver: ``trace`` fields on top, the header without
        ``remove``d fields, then the body exactly as received."""
        yield trace + self.header_without(remove)
        yield from self.spool.body_chunks()

    def write_to(self, fd: int, remove: frozenset[str], trace: bytes = b"") -> int:
        """Write the copy :meth:`chunks` yields to file descriptor ``fd`` by
        the shortest route; the number of bytes written."""
        return self.spool.write_body_to(fd, trace + self.header_without(remove))

    def close(self) -> None:
        self.spool.close()


def trace_fields(sender: str, recipient: str) -> bytes:
    """The ``Return-Path:`` and ``Delivered-To:`` lines a final delivery puts
    on top of a message."""
    return f"Return-Path: <{sender}>\nDelivered-To: {recipient}\n".encode("utf-8", "surrogateescape")


def decode_words(value: str) -> str:
    """RFC 2047 encoded words -> text (for display names)."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (UnicodeDecodeError, LookupError, email.errors.HeaderParseError):
        return value
