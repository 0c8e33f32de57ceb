"""Decoding of POP3 multi-line responses (RFC 1939 section 3), chunk-wise.

A multi-line response is a sequence of lines ended by a line holding a single
".".  Lines that begin with "." were "dot-stuffed" by the server and lose that
first dot here.  Line endings are normalised to LF, the local form of a
message (Maildir files use LF; network deliveries turn LF back into CRLF).

The decoder works on whole chunks, never line by line: a regular expression
search with a literal prefix (C, memchr-fast) finds the lines that start with
"." -- stuffed lines and the terminator; the stretches between stuffed dots
are joined, and the CRs of line ends are dropped with one
``bytes.translate``.  A stretch that holds a CR not followed
by LF (which is kept) takes the slower ``bytes.replace``.  So decoding costs
a few passes of C code over each byte.  A chunk read from the network often
holds many pipelined answers: the decoder reads from an offset and reports
where its answer ended, so the rest is never copied per message.  A line of
any length passes through with bounded memory.  Bare-LF servers are
tolerated: ``\\n.\\n`` also ends a response.
"""

from __future__ import annotations

import re

#: A line starting with ".": stuffed, or the terminator.
_DOT_LINE = re.compile(rb"\n\.")
#: A CR that is not part of a CRLF line end: kept as it is.
_BARE_CR = re.compile(rb"\r(?!\n)")
_TERMINATORS = (b".\r\n", b".\n")


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
        cut = buf.rfind(b"\n", start)
        if cut < 0:
            return self._hold_partial(buf, start)
        # Only whole lines are decoded: [start, end).  A stuffed dot is left
        # out by joining the stretches around it (cheaper than a replace
        # pass over everything).
        end = cut + 1
        kept: list[tuple[int, int]] = []
        piece = start
        if self._at_line_start and buf.startswith(b".", start):
            if buf.startswith(_TERMINATORS, start):
                self._finish(buf.find(b"\n", start) + 1 + offset)
                return b""
            piece = start + 1  # a stuffed first line
        for line in _DOT_LINE.finditer(buf, start, end):
            at = line.start() + 1  # the "."
            if buf.startswith(_TERMINATORS, at):
                end = at
                self._finish(buf.find(b"\n", at) + 1 + offset)
                break
            kept.append((piece, at))
            piece = at + 1
        if kept:
            kept.append((piece, end))
            joined = b"".join([buf[a:b] for a, b in kept])
            out = _to_lf(joined, 0, len(joined))
        else:
            out = _to_lf(buf, piece, end)
        if self.done:
            return out
        self._at_line_start = True
        partial = self._hold_partial(buf, cut + 1)
        return out + partial if partial else out

    def _finish(self, end: int) -> None:
        self.done = True
        self.end = end

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


def _to_lf(buf: bytes, start: int, end: int) -> bytes:
    """``buf[start:end]`` with the CR of every CRLF removed."""
    if _BARE_CR.search(buf, start, end) is None:
        return buf[start:end].translate(None, b"\r")
    return buf[start:end].replace(b"\r\n", b"\n")
