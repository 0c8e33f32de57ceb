"""The byte stream under the POP3 client: an asyncio protocol that hands on
the chunks the transport receives as they are.

``asyncio.StreamReader`` copies every chunk into its buffer and copies it out
again on ``read()``; at the speed of a local server those two copies and
their bookkeeping were a tenth of rpop's time.  A :class:`Link` keeps the
received ``bytes`` objects and gives them to the client whole (small ones
joined).  Reading pauses while more than
:data:`HIGH_WATER` bytes wait, so a slow consumer bounds memory; writing
waits in :meth:`Link.drain` while the transport's buffer is full.
"""

from __future__ import annotations

import asyncio
import collections
import ssl

#: Received bytes not yet read above which the transport stops reading.
HIGH_WATER = 1 << 19
#: A read joins waiting chunks up to about this size: the decoder makes a
#: few passes over each, and a piece that stays in the CPU's cache between
#: passes decodes faster than a bigger one.
READ_SIZE = 1 << 18


class Link(asyncio.Protocol):
    """One connection's protocol object; :func:`open_link` makes one."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self._ended = False
        self._error: BaseException | None = None
        self._data_waiter: asyncio.Future | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future | None = None
        self._closed: asyncio.Future = asyncio.get_running_loop().create_future()

    # --- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        _wake(self._data_waiter)

    def eof_received(self) -> bool:
        self._ended = True
        _wake(self._data_waiter)
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self._ended = True
        self._error = exc
        _wake(self._data_waiter)
        _wake(self._drain_waiter)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        _wake(self._drain_waiter)

    # --- what the client uses ------------------------------------------------

    async def read(self) -> bytes:
        """Bytes received (about :data:`READ_SIZE` at most, or one chunk as the
        transport gave it), waiting for some; b"" once the peer has closed the
        connection.  A lost connection raises."""
        while not self._chunks:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return b""
            self._data_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._data_waiter
            finally:
                self._data_waiter = None
        chunks = self._chunks
        data = chunks.popleft()
        if chunks and len(data) < READ_SIZE:
            parts = [data]
            size = len(data)
            while chunks and size + len(chunks[0]) <= READ_SIZE:
                size += len(chunks[0])
                parts.append(chunks.popleft())
            data = b"".join(parts)
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= HIGH_WATER // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    @property
    def unread(self) -> int:
        """Bytes received and not yet read."""
        return self._buffered

    def write(self, data: bytes) -> None:
        """Queue ``data``; on a connection that is closing it is dropped (the
        next read reports the lost connection)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport holds more than it wants to; a lost
        connection raises."""
        while self._writing_paused and not self._ended:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._ended and self._error is not None:
            raise self._error

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Switch the connection to TLS (STLS); nothing may be unread."""
        loop = asyncio.get_running_loop()
        self.transport = await loop.start_tls(self.transport, self, context, server_hostname=server_hostname)

    async def close(self, timeout: float = 2) -> None:
        """Close, waiting up to ``timeout`` seconds for the transport to end."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        try:
            async with asyncio.timeout(timeout):
                await self._closed
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


def _wake(waiter: asyncio.Future | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def open_link(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    local_addr: tuple[str, int] | None = None,
) -> Link:
    """Connect (with TLS from the start when ``ssl_context`` is given)."""
    loop = asyncio.get_running_loop()
    _transport, link = await loop.create_connection(
        Link, host, port, ssl=ssl_context, server_hostname=server_hostname, local_addr=local_addr
    )
    return link
