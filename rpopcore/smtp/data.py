"""The DATA stream (RFC 5321 4.5.2), chunk-wise: the counterpart of
:mod:`rpopcore.pop3.multiline` for the way out.  A message is held with LF
line endings; the wire wants CRLF, a dot doubled at the start of a line, and
a line holding a single ``.`` at the end.  Chunks may split lines anywhere,
so memory does not grow with the message."""

from __future__ import annotations


class DataEncoder:
    """Feed message bytes, then :meth:`finish`.  An existing CRLF is kept as
    one line ending; a lone CR is passed through.

    >>> e = DataEncoder()
    >>> e.feed(b".a\\nb") + e.feed(b"\\n.") + e.finish()
    b'..a\\r\\nb\\r\\n..\\r\\n.\\r\\n'
    """

    def __init__(self):
        self._at_line_start = True
        self._held_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r"):
            # it may be the first half of a CRLF split across chunks
            data = data[:-1]
            self._held_cr = True
        if not data:
            return b""
        data = data.replace(b"\r\n", b"\n")
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\n.", b"\n..")
        self._at_line_start = data.endswith(b"\n")
        return data.replace(b"\n", b"\r\n")

    def finish(self) -> bytes:
        """The rest: a held CR, a line ending if the last line lacks one, ``.``."""
        tail = b"\r" if self._held_cr else b""
        self._held_cr = False
        if tail or not self._at_line_start:
            tail += b"\r\n"
        self._at_line_start = True
        return tail + b".\r\n"
