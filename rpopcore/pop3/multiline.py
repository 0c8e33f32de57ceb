"""Decoding of POP3 multi-line responses (RFC 1939 section 3), chunk-wise.

A multi-line response is a sequence of lines ended by a line holding a single
".".  Lines that begin with "." were "dot-stuffed" by the server and lose that
first dot here.  Line endings are normalised to LF, the local form of a
message (Maildir files use LF; network deliveries turn LF back into CRLF).

The decoder works on whole chunks with ``bytes.replace`` rather than line by
line, so decoding costs a few passes of C code over each chunk, and a line of
any length passes through with bounded memory.  Bare-LF servers are tolerated:
``\\n.\\n`` also ends a response.
"""

from __future__ import annotations


class MultilineDecoder:
    """Feed raw bytes; get back decoded bytes and, at the end, the bytes that
    came after the terminating line (the next pipelined response).

    >>> d = MultilineDecoder()
    >>> d.feed(b"a\\r\\n..b\\r\\n.\\r\\n+OK next")
    b'a\\n.b\\n'
    >>> d.done, d.rest
    (True, b'+OK next')
    """

    __slots__ = ("done", "rest", "_pending", "_at_line_start")

    # A partial line longer than this is passed on before its end arrives.
    LONG_LINE = 65536

    def __init__(self) -> None:
        self.done = False
        self.rest = b""
        self._pending = b""
        self._at_line_start = True

    def feed(self, data: bytes) -> bytes:
        """Decode ``data``; returns what can be passed on now.  After the
        terminator, ``done`` is True and ``rest`` holds what followed it."""
        if self.done:
            raise ValueError("the response has already ended")
        buf = self._pending + data if self._pending else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            return self._hold_partial(buf)
        complete, partial = buf[: cut + 1], buf[cut + 1 :]
        # A leading "\n" stands for "we are at the start of a line", so that the
        # same searches and replacements treat the first line like the others.
        lead = self._at_line_start
        s = b"\n" + complete if lead else complete
        end = _find_terminator(s)
        if end is not None:
            body_end, after = end
            self.done = True
            self.rest = s[after:] + partial
            self._pending = b""
            out = _unstuff(s[: body_end + 1])
        else:
            self._at_line_start = True
            out = _unstuff(s)
            out_partial = self._hold_partial(partial)
            out = out + out_partial if out_partial else out
        return out[1:] if lead else out

    def _hold_partial(self, buf: bytes) -> bytes:
        """Keep an unfinished line, or pass most of a very long one on."""
        if len(buf) <= self.LONG_LINE:
            self._pending = buf
            return b""
        out_start = 0
        if self._at_line_start:
            if buf.startswith(b".."):
                out_start = 1  # dot-stuffed: drop the added dot
            self._at_line_start = False
        # Keep the last byte back: it may be the CR of a CRLF.
        self._pending = buf[-1:]
        return buf[out_start:-1]


def _find_terminator(s: bytes) -> tuple[int, int] | None:
    """In ``s`` (which starts at a line boundary with "\\n"), find the line
    holding only "."; return (index of the "\\n" before it, index after it)."""
    best = None
    for marker in (b"\n.\r\n", b"\n.\n"):
        i = s.find(marker)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, i + len(marker))
    return best


def _unstuff(s: bytes) -> bytes:
    """CRLF -> LF, then remove the stuffed dot at the start of lines."""
    if b"\r\n" in s:
        s = s.replace(b"\r\n", b"\n")
    if b"\n." in s:
        s = s.replace(b"\n..", b"\n.")
    return s
