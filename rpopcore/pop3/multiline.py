"""Decoding of POP3 multi-line responses (RFC 1939 section 3), chunk-wise.

A multi-line response is a sequence of lines ended by a line holding a single
".".  Lines that begin with "." were "dot-stuffed" by the server and lose that
first dot here.  Line endings are normalised to LF, the local form of a
message (Maildir files use LF; network deliveries turn LF back into CRLF).

The decoder works on whole chunks with ``bytes.find`` and ``bytes.replace``
rather than line by line, so decoding costs a few passes of C code over each
byte.  A chunk read from the network often holds many pipelined answers: the
decoder reads from an offset and reports where its answer ended, so the rest
is never copied per message.  A line of any length passes through with
bounded memory.  Bare-LF servers are tolerated: ``\\n.\\n`` also ends a
response.
"""

from __future__ import annotations


class MultilineDecoder:
    """Feed raw bytes; get back decoded bytes.  Once the terminating line has
    been seen, ``done`` is True and ``end`` is the offset in the last data fed
    where the next answer begins.

    >>> d = MultilineDecoder()
    >>> d.feed(b"a\\r\\n..b\\r\\n.\\r\\n+OK next")
    b'a\\n.b\\n'
    >>> d.done, d.end
    (True, 11)
    """

    __slots__ = ("done", "end", "_pending", "_at_line_start")

    # A partial line longer than this is passed on before its end arrives.
    LONG_LINE = 65536

    def __init__(self) -> None:
        self.done = False
        self.end = 0
        self._pending = b""
        self._at_line_start = True

    def feed(self, data: bytes, start: int = 0) -> bytes:
        """Decode ``data[start:]``; returns what can be passed on now."""
        if self.done:
            raise ValueError("the response has already ended")
        if self._pending:
            # Only an unfinished line is ever carried over: a small copy.
            held = len(self._pending)
            buf, offset = self._pending + data[start:], start - held
            self._pending = b""
            start = 0
        else:
            buf, offset = data, 0
        at_start = self._at_line_start
        found = _terminator(buf, start, at_start)
        if found is not None:
            body_end, after = found
            self.done = True
            self.end = after + offset
            return _unstuff(buf, start, body_end, at_start)
        cut = buf.rfind(b"\n", start)
        if cut < 0:
            return self._hold_partial(buf, start)
        out = _unstuff(buf, start, cut + 1, at_start)
        self._at_line_start = True
        partial = self._hold_partial(buf, cut + 1)
        return out + partial if partial else out

    def _hold_partial(self, buf: bytes, start: int) -> bytes:
        """Keep an unfinished line, or pass most of a very long one on."""
        if len(buf) - start <= self.LONG_LINE:
            self._pending = buf[start:]
            return b""
        if self._at_line_start and buf.startswith(b"..", start):
            start += 1  # dot-stuffed: drop the added dot
        self._at_line_start = False
        # Keep the last byte back: it may be the CR of a CRLF.
        self._pending = buf[-1:]
        return buf[start:-1]


def _terminator(buf: bytes, start: int, at_line_start: bool) -> tuple[int, int] | None:
    """Where the line holding only "." is: (end of the body before it, offset
    just after it), or None."""
    if at_line_start:
        for marker in (b".\r\n", b".\n"):
            if buf.startswith(marker, start):
                return start, start + len(marker)
    crlf = buf.find(b"\n.\r\n", start)
    # The bare-LF form is looked for only before the usual one, so a buffer
    # of many pipelined answers is not scanned to its end for each of them.
    lf = buf.find(b"\n.\n", start, crlf + 3 if crlf >= 0 else len(buf))
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf + 1, lf + 3
    if crlf >= 0:
        return crlf + 1, crlf + 4
    return None


def _unstuff(buf: bytes, start: int, end: int, at_line_start: bool) -> bytes:
    """``buf[start:end]`` (whole lines) with CRLF -> LF and the stuffed dot
    removed from the start of lines."""
    if at_line_start and buf.startswith(b"..", start):
        start += 1
    s = buf[start:end]
    if b"\r\n" in s:
        s = s.replace(b"\r\n", b"\n")
    if b"\n.." in s:
        s = s.replace(b"\n..", b"\n.")
    return s
