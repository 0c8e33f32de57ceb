"""A retrieved message: its header block in memory, its body spooled.

The body can be of any size: it stays in memory up to a threshold and then
spills to a temporary file, so memory does not grow with message size.  The
header block is kept as raw bytes and split into fields only on demand; a
delivered copy is the header with some fields removed (Return-Path, a
special field), new trace fields on top, and the body byte for byte as the
server sent it (after dot-unstuffing, with LF line endings).
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import tempfile
from typing import Iterator

import attrs

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

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._body_parts = []


def _header_end(head: bytearray) -> int | None:
    """Length of the header lines (each ending in LF), not counting the blank
    line that ends them; None while no blank line has arrived."""
    if head.startswith(b"\n"):
        return 0
    i = head.find(b"\n\n")
    return None if i < 0 else i + 1


@attrs.frozen
class HeaderField:
    name: str  # as written
    raw: bytes  # the whole field, continuation lines included, LF-terminated

    @property
    def value(self) -> str:
        """The unfolded value, with RFC 2047 encoded words left as they are."""
        text = self.raw.decode("utf-8", "surrogateescape")
        value = text.split(":", 1)[1] if ":" in text else ""
        return " ".join(value.split())


def split_fields(header: bytes) -> list[HeaderField]:
    """Split a raw header block into fields; continuation lines (starting with
    white space) stay with their field."""
    fields: list[HeaderField] = []
    current: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            fields.append(_field(current))
        current = [line]
    if current:
        fields.append(_field(current))
    return fields


def _field(lines: list[bytes]) -> HeaderField:
    raw = b"".join(lines)
    name = raw.split(b":", 1)[0].strip().decode("ascii", "replace") if b":" in raw else ""
    return HeaderField(name=name, raw=raw)


class RetrievedMessage:
    """One message retrieved from the server, with its UID and spool.

    Recipient resolution reads :meth:`field_values`; delivery agents read
    :meth:`chunks` for the copy to deliver.
    """

    def __init__(self, uid: str | None, number: int, spool: MessageSpool):
        self.uid = uid
        self.number = number
        self.spool = spool
        self._fields: list[HeaderField] | None = None

    @property
    def fields(self) -> list[HeaderField]:
        if self._fields is None:
            self._fields = split_fields(self.spool.header)
        return self._fields

    def field_values(self, name: str) -> list[str]:
        """Values of every field named ``name`` (case-insensitive), in order."""
        name = name.lower()
        return [f.value for f in self.fields if f.name.lower() == name]

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
        return b"".join(f.raw for f in self.fields if f.name.lower() not in remove)

    def chunks(self, remove: frozenset[str], trace: bytes = b"") -> Iterator[bytes]:
        """The copy to deliver: ``trace`` fields on top, the header without
        ``remove``d fields, then the body exactly as received."""
        yield trace + self.header_without(remove)
        yield from self.spool.body_chunks()

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
