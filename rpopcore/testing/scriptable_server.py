"""A scriptable POP3 server: the project's own server for tests, ``rpop demo``
and benchmarks.

Real servers do not produce faults on demand; this one does.  It speaks RFC
1939 (with the RFC 2449 CAPA extension and response codes, RFC 2595 STLS and
RFC 5034 SASL AUTH), keeps one mailbox for one user, and records what every
session did so tests can assert on it.  :class:`Faults` switches on the
misbehaviour: login errors, dropped connections, delays, malformed listings,
commands that are never answered, answers dripped a byte at a time, bytes
nobody asked for, absurd counts, refused messages.

The layout follows aiosmtpd: :class:`ScriptableServer` owns the listening
socket and the shared state (the mailbox, its lock, counters);
:class:`Pop3Session` is the protocol, one per connection, an explicit state
machine AUTHORIZATION -> TRANSACTION -> UPDATE with one ``pop_<COMMAND>``
method per command, and every byte goes out through :meth:`Pop3Session._reply`.

Messages may be large.  A message is never converted as a whole: its wire form
(CRLF line endings, dot-stuffing) is produced chunk by chunk by
:func:`multiline_chunks`, so a 200 MB message costs 200 MB plus a few chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import enum
import hashlib
import inspect
import itertools
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import attrs

_logger = logging.getLogger("rpop.scriptable_server")

GREETING = "+OK rpop scriptable server ready"

#: Bytes of a message converted and written at a time.
CHUNK_SIZE = 1 << 20

# Small responses (a LIST of 10,000 lines) are gathered up to this size before
# a write, so they do not cost one send() per line.
_WRITE_BATCH = 64 * 1024


# --------------------------------------------------------------------------
# Data


@attrs.frozen
class Message:
    """One message in the mailbox.

    ``data`` is the message as stored, lines ending CRLF or LF; the server
    converts every line ending to CRLF and dot-stuffs when sending.  A lone CR
    is data, not a line ending.  If ``wire`` is set, RETR sends it verbatim
    between the "+OK" line and the terminating ".\\r\\n" (no conversion, no
    stuffing) -- for bare-LF and odd-wire tests; TOP still works from
    ``data``.  ``size``, if set, is what STAT/LIST/RETR report instead of the
    true size (for clients that must not trust it).
    """

    uid: str
    data: bytes
    wire: bytes | None = None
    size: int | None = None
    #: The size reported to clients: ``size`` if set, else the octets of the
    #: CRLF-converted message (see :func:`wire_size`).  Computed once here
    #: because STAT and LIST would otherwise rescan every message each time.
    octets: int = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Frozen: the one sanctioned way to set a derived field.
        object.__setattr__(self, "octets", self.size if self.size is not None else wire_size(self.data))


@attrs.define
class Faults:
    """Misbehaviour to inject.  Mutable: a test may change it between or even
    during sessions; the server reads it at each use."""

    #: PASS, APOP and AUTH (at the end of its exchange) answer "-ERR " + this,
    #: whatever the credentials, e.g. "[IN-USE] mailbox locked".
    pass_error: str | None = None
    #: Greet with "-ERR " + this and close.
    greeting_error: str | None = None
    #: (message number, n): on RETR of that message, send the "+OK" line and
    #: n bytes of the body, then close the connection (the whole response if
    #: it is shorter, then close).
    drop_during_retr: tuple[int, int] | None = None
    #: On QUIT close the connection without answering and without committing.
    drop_on_quit: bool = False
    #: Answer that many commands of a session, then close (0: right after the
    #: greeting).
    drop_after_commands: int | None = None
    #: Seconds to sleep before every response (greeting, "+" challenges too).
    response_delay: float = 0.0
    #: Raw lines sent as the body of a UIDL listing (UIDL without argument).
    uidl_override: list[str] | None = None
    #: Raw lines sent as the body of a LIST listing (LIST without argument).
    list_override: list[str] | None = None
    #: A command name (e.g. "RETR"): on it the server never answers; it keeps
    #: reading (and ignoring) until the client closes or the server stops.
    hang_on: str | None = None
    #: (n, "drop" or "stall"): when the n-th line from the client arrives
    #: (counting from 1, commands and SASL responses alike), close the
    #: connection without answering it, or never answer it.
    cut_at_line: tuple[int, str] | None = None
    #: (command, raw bytes): after each answer to the command (a name such
    #: as "RETR", or a whole line such as "RETR 1"), send these bytes too,
    #: as a server would that answered twice or out of turn.
    extra_after: tuple[str, bytes] | None = None
    #: (command name or "GREETING", seconds): send that answer one byte at a
    #: time, this many seconds apart.
    drip: tuple[str, float] | None = None
    #: The text after "+OK " of every STAT answer, e.g. "10000000 0".
    stat_override: str | None = None
    #: Message number -> text: RETR of that message answers "-ERR " + text.
    retr_errors: dict[int, str] = attrs.Factory(dict)


@attrs.define
class SessionLog:
    """What one connection did, for tests to assert on.

    ``commands`` holds the command lines exactly as received, without the line
    ending (SASL continuation lines are not commands and are not listed;
    ``sasl_responses`` holds them).
    ``deleted_marked`` holds the uids currently marked (RSET clears it).
    ``committed`` is True once the UPDATE state removed them from the mailbox.
    """

    peer: str
    commands: list[str] = attrs.Factory(list)
    sasl_responses: list[str] = attrs.Factory(list)
    retrieved: list[str] = attrs.Factory(list)
    deleted_marked: list[str] = attrs.Factory(list)
    committed: bool = False
    authenticated: bool = False
    tls: bool = False
    bytes_sent: int = 0


class State(enum.Enum):
    """The session states of RFC 1939 section 3."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


# --------------------------------------------------------------------------
# SASL (RFC 5034)


class SaslExchange(Protocol):
    """One authentication exchange.

    ``step`` receives the client's decoded response (``None`` when the client
    gave no initial response, ``b""`` for an empty one) and returns, or
    returns an awaitable of, one of:

    * ``("challenge", data)`` -- the server sends ``+ base64(data)``;
    * ``("ok", None)`` -- the client is authenticated;
    * ``("fail", reason)`` -- the server sends ``-ERR [AUTH] reason``.
    """

    def step(self, client_response: bytes | None) -> tuple[str, bytes | None] | Awaitable[tuple[str, bytes | None]]: ...


class SaslHandler(Protocol):
    """A SASL mechanism on the server side: a factory of exchanges."""

    def start(self) -> SaslExchange: ...


@attrs.frozen
class PlainSasl:
    """SASL PLAIN (RFC 4616) for one user: ``authzid NUL authcid NUL passwd``;
    the authzid must be empty or the user itself."""

    user: str
    password: str

    def start(self) -> SaslExchange:
        """Begin an exchange."""
        return _PlainExchange(self)


@attrs.define
class _PlainExchange:
    handler: PlainSasl

    def step(self, client_response: bytes | None) -> tuple[str, bytes | None]:
        if client_response is None:
            # No initial response: PLAIN's first challenge is empty.
            return ("challenge", b"")
        parts = client_response.split(b"\0")
        if len(parts) != 3:
            return ("fail", b"malformed PLAIN response")
        authzid, authcid, passwd = (p.decode("utf-8", "replace") for p in parts)
        if authcid == self.handler.user and passwd == self.handler.password and authzid in ("", authcid):
            return ("ok", None)
        return ("fail", b"invalid user name or password")


# --------------------------------------------------------------------------
# Wire encoding


def wire_size(data: bytes) -> int:
    """Octets of ``data`` with every line ending made CRLF and a CRLF added if
    the last line has none -- i.e. what a client decodes from RETR (RFC 1939
    sizes exclude dot-stuffing and the terminator)."""
    if not data:
        return 0
    size = len(data) + data.count(b"\n") - data.count(b"\r\n")
    if not data.endswith(b"\n"):
        size += 2
    return size


def multiline_chunks(data: bytes, stop: int | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the multi-line wire form of ``data[:stop]``: CRLF line endings,
    dot-stuffed, a CRLF added if the last line lacks one, then ".\\r\\n".

    Works on chunks that end at a line boundary where one is in reach, so each
    step is a few ``bytes.replace`` passes over one chunk; a line longer than
    a chunk is cut, carrying the "at line start" state across the cut.
    """
    n = len(data) if stop is None else min(stop, len(data))
    start = 0
    at_line_start = True
    while start < n:
        end = min(start + chunk_size, n)
        if end < n:
            cut = data.rfind(b"\n", start, end)
            if cut >= 0:
                end = cut + 1
            elif data[end - 1] == 0x0D and data[end] == 0x0A:
                # Never split a CRLF: the halves would become CR CRLF.
                end += 1
        piece = data[start:end].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\n.", b"\n..")
        if at_line_start and piece.startswith(b"."):
            piece = b"." + piece
        yield piece
        at_line_start = piece.endswith(b"\n")
        start = end
    if not at_line_start:
        yield b"\r\n"
    yield b".\r\n"


def top_end(data: bytes, lines: int) -> int:
    """Offset in ``data`` just after the header, the blank line and ``lines``
    lines of the body (RFC 1939 TOP).  Without a blank line, all is header."""
    if data.startswith(b"\n") or data.startswith(b"\r\n"):
        pos = data.index(b"\n") + 1
    else:
        candidates = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
        if not candidates:
            return len(data)
        first = min(candidates)
        pos = data.index(b"\n", first + 1) + 1
    for _ in range(lines):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return len(data)
        pos = nl + 1
    return pos


# --------------------------------------------------------------------------
# The server


class ScriptableServer:
    """A POP3 server on ``host:port`` (port 0: any free port, read ``port``
    after :meth:`start`) serving ``mailbox`` to ``user``/``password``.

    Options: ``apop`` puts an RFC 1939 timestamp in the greeting and accepts
    APOP; ``capabilities`` replaces the CAPA lines (None: TOP, UIDL, USER,
    PIPELINING, RESP-CODES, AUTH-RESP-CODE, plus STLS and SASL as
    configured); ``capa_supported=False`` makes CAPA fail; ``uidl=False``
    makes UIDL fail; ``ssl_context`` (server side) with ``implicit_tls``
    serves TLS from the first byte, without it offers STLS; ``sasl`` maps
    upper-case mechanism names to :class:`SaslHandler`; ``max_line`` bounds a
    command line.  ``user=None`` accepts any user name with ``password`` (one
    mailbox polled as many remote accounts, for tests of many records).
    """

    def __init__(
        self,
        messages: Iterable[Message] = (),
        *,
        user: str | None = "user",
        password: str = "pass",
        apop: bool = False,
        capabilities: list[str] | None = None,
        capa_supported: bool = True,
        uidl: bool = True,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        sasl: dict[str, SaslHandler] | None = None,
        max_line: int = 8192,
        lock: bool = True,
    ) -> None:
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit_tls needs an ssl_context")
        self.mailbox: list[Message] = list(messages)
        self.user = user
        self.password = password
        self.apop = apop
        self.capabilities = capabilities
        self.capa_supported = capa_supported
        self.uidl = uidl
        self.faults = faults if faults is not None else Faults()
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.sasl: dict[str, SaslHandler] = {k.upper(): v for k, v in (sasl or {}).items()}
        self.max_line = max_line
        # False: any number of sessions may hold the mailbox at once, as if
        # each login had a mailbox of its own (for concurrency tests).
        self.lock = lock

        self.sessions_total = 0
        self.concurrent_now = 0
        self.max_concurrent = 0
        self.peer_addresses: list[str] = []
        self.sessions: list[SessionLog] = []
        self.bytes_sent = 0

        # The maildrop lock of RFC 1939: the session in TRANSACTION, if any.
        self._lock_holder: Pop3Session | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stamps = itertools.count(1)

    # -- lifecycle

    def accepts(self, user: str) -> bool:
        """Whether ``user`` is the user name this server serves."""
        return self.user is None or user == self.user

    async def start(self) -> None:
        """Listen; afterwards ``port`` is the bound port."""
        self._server = await asyncio.start_server(
            self._handle,
            self.host,
            self.port,
            ssl=self.ssl_context if self.implicit_tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every open session (nothing is committed for
        a session that did not QUIT)."""
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> "ScriptableServer":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- mailbox

    def add(self, message: Message) -> None:
        """Append a message; sessions already in TRANSACTION do not see it."""
        self.mailbox.append(message)

    def uids(self) -> list[str]:
        """The uids currently in the mailbox, in order."""
        return [m.uid for m in self.mailbox]

    def default_capabilities(self, *, tls_active: bool) -> list[str]:
        """The CAPA lines used when ``capabilities`` is None."""
        caps = ["TOP"]
        if self.uidl:
            caps.append("UIDL")
        caps += ["USER", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"]
        if self.ssl_context is not None and not self.implicit_tls and not tls_active:
            caps.append("STLS")
        if self.sasl:
            caps.append("SASL " + " ".join(self.sasl))
        caps.append("IMPLEMENTATION rpop-scriptable")
        return caps

    def new_timestamp(self) -> str:
        """A fresh RFC 1939 APOP timestamp, ``<pid.clock@host>``."""
        return f"<{os.getpid()}.{next(self._stamps)}.{time.time_ns()}@localhost>"

    # -- connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        peer_ip = peer[0] if peer else ""
        self.sessions_total += 1
        self.peer_addresses.append(peer_ip)
        self.concurrent_now += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent_now)
        session_log = SessionLog(peer=peer_ip, tls=self.implicit_tls)
        self.sessions.append(session_log)
        session = Pop3Session(self, reader, writer, session_log)
        try:
            await session.run()
        except asyncio.CancelledError:
            # stop() cancels sessions.  This task is the top of its own stack
            # (asyncio made it for the connection), so ending it normally is
            # safe, and Python 3.11 would otherwise log the cancellation as
            # an error from the stream protocol's done-callback.
            pass
        finally:
            self.concurrent_now -= 1
            self._tasks.discard(task)

    def _commit(self, deleted: Sequence[Message]) -> None:
        # By identity: two equal messages are still two messages.
        gone = {id(m) for m in deleted}
        self.mailbox[:] = [m for m in self.mailbox if id(m) not in gone]


class _Drop(Exception):
    """Close the connection now, without a word and without committing."""


_TOO_LONG = object()

# Which commands each state accepts; anything else known is "not valid in
# this state".
_ALLOWED = {
    State.AUTHORIZATION: {"USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "QUIT"},
    State.TRANSACTION: {"STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET", "QUIT", "CAPA"},
    State.UPDATE: set(),
}
_KNOWN = set().union(*_ALLOWED.values())


class Pop3Session:
    """The POP3 protocol for one connection."""

    def __init__(
        self,
        server: ScriptableServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session_log: SessionLog,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.log = session_log
        self.state = State.AUTHORIZATION
        self.timestamp = server.new_timestamp() if server.apop else ""
        self._buf = bytearray()
        self._user: str | None = None
        # The maildrop as it was at login: message numbers index this list.
        self._messages: list[Message] = []
        self._deleted: set[int] = set()
        # Lines read from the client so far (Faults.cut_at_line), and the
        # command being answered (Faults.drip).
        self._lines = 0
        self._answering = "GREETING"

    # -- main loop

    async def run(self) -> None:
        """Greet, then answer commands until QUIT, the client leaves, or a
        fault closes the connection."""
        try:
            await self._serve()
        except _Drop:
            pass
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            _logger.debug("session from %s ended: %r", self.log.peer, exc)
        finally:
            if self.server._lock_holder is self:
                self.server._lock_holder = None
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except (Exception, asyncio.CancelledError):
                # The peer may be gone or the server stopping; either way the
                # transport is closed.
                pass

    async def _serve(self) -> None:
        faults = self.server.faults
        if faults.greeting_error is not None:
            await self._reply("-ERR " + faults.greeting_error)
            return
        await self._reply(GREETING + (" " + self.timestamp if self.timestamp else ""))
        while self.state is not State.UPDATE:
            limit = self.server.faults.drop_after_commands
            if limit is not None and len(self.log.commands) >= limit:
                raise _Drop
            raw = await self._next_line()
            if raw is None:
                return
            if raw is _TOO_LONG:
                await self._reply("-ERR line too long")
                continue
            line = raw.decode("utf-8", "surrogateescape")
            self.log.commands.append(line)
            name, _, arg = line.partition(" ")
            name = name.upper()
            self._answering = name
            hang_on = self.server.faults.hang_on
            if hang_on is not None and name == hang_on.upper():
                await self._hang()
                return
            if name not in _KNOWN:
                await self._reply("-ERR unknown command")
            elif name not in _ALLOWED[self.state]:
                await self._reply(f"-ERR {name} not valid in the {self.state.value} state")
            else:
                await getattr(self, "pop_" + name)(arg)
            extra = self.server.faults.extra_after
            if extra is not None and extra[0].upper() in (name, line.upper()):
                self._write(extra[1])
                await self.writer.drain()

    async def _next_line(self) -> bytes | object | None:
        """:meth:`_read_line`, counted for :attr:`Faults.cut_at_line`."""
        raw = await self._read_line()
        self._lines += 1
        cut = self.server.faults.cut_at_line
        if raw is not None and cut is not None and cut[0] == self._lines:
            if cut[1] == "stall":
                await self._hang()
            raise _Drop
        return raw

    async def _read_line(self) -> bytes | object | None:
        """The next line without its line ending (CRLF or LF), ``None`` at end
        of stream, or ``_TOO_LONG`` for a line over ``max_line`` (consumed).

        Lines are cut from our own buffer rather than by StreamReader.readline
        so several pipelined commands in one packet are simply taken in turn,
        and an over-long line can be skipped without losing the next one.
        """
        too_long = False
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if too_long or nl > self.server.max_line:
                    return _TOO_LONG
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) > self.server.max_line:
                too_long = True
                self._buf.clear()
            data = await self.reader.read(65536)
            if not data:
                return None
            self._buf += data

    async def _hang(self) -> None:
        # Never answer, but keep logging what arrives (a pipelining client
        # sends more commands while it waits), and notice when the client
        # gives up so the session (and the concurrency counters) end with it.
        while True:
            raw = await self._read_line()
            if raw is None:
                return
            if raw is not _TOO_LONG:
                self.log.commands.append(raw.decode("utf-8", "surrogateescape"))

    # -- output: the one place that writes

    def _write(self, data: bytes) -> None:
        self.writer.write(data)
        self.server.bytes_sent += len(data)
        self.log.bytes_sent += len(data)

    async def _reply(self, line: str, body: Iterable[bytes] | None = None, *, drop_after: int | None = None) -> None:
        """Send a status line and, for a multi-line response, its body (the
        already encoded wire pieces, terminator included).

        ``drop_after``: write only that many bytes of the body, then close.
        """
        delay = self.server.faults.response_delay
        if delay:
            await asyncio.sleep(delay)
        head = line.encode("utf-8", "surrogateescape") + b"\r\n"
        drip = self.server.faults.drip
        if drip is not None and drip[0].upper() == self._answering:
            await self._drip(itertools.chain([head], body or ()), drip[1])
            return
        if body is None:
            self._write(head)
            await self.writer.drain()
            return
        batch = [head]
        batched = len(head)
        sent = 0
        for piece in body:
            if drop_after is not None and sent + len(piece) >= drop_after:
                batch.append(piece[: drop_after - sent])
                self._write(b"".join(batch))
                await self.writer.drain()
                raise _Drop
            sent += len(piece)
            batch.append(piece)
            batched += len(piece)
            if batched >= _WRITE_BATCH:
                self._write(b"".join(batch) if len(batch) > 1 else batch[0])
                batch, batched = [], 0
                await self.writer.drain()
        if batch:
            self._write(b"".join(batch))
        await self.writer.drain()
        if drop_after is not None:
            raise _Drop

    async def _drip(self, pieces: Iterable[bytes], interval: float) -> None:
        for piece in pieces:
            for i in range(len(piece)):
                self._write(piece[i : i + 1])
                await self.writer.drain()
                await asyncio.sleep(interval)

    # -- helpers

    def _visible(self) -> list[tuple[int, Message]]:
        return [(i + 1, m) for i, m in enumerate(self._messages) if i not in self._deleted]

    async def _message_arg(self, arg: str) -> tuple[int, Message] | None:
        """Resolve a message-number argument, answering -ERR if it is bad."""
        if not arg.isdigit():
            await self._reply("-ERR invalid message number")
            return None
        number = int(arg)
        if not 1 <= number <= len(self._messages):
            await self._reply("-ERR no such message")
            return None
        if number - 1 in self._deleted:
            await self._reply(f"-ERR message {number} already deleted")
            return None
        return number, self._messages[number - 1]

    async def _finish_login(self, ok: bool, failure: str = "[AUTH] invalid user name or password") -> None:
        """Answer a login attempt (PASS, APOP, the end of AUTH)."""
        pass_error = self.server.faults.pass_error
        if pass_error is not None:
            await self._reply("-ERR " + pass_error)
            return
        if not ok:
            await self._reply("-ERR " + failure)
            return
        holder = self.server._lock_holder
        if self.server.lock and holder is not None and holder is not self:
            await self._reply("-ERR [IN-USE] mailbox locked")
            return
        if self.server.lock:
            self.server._lock_holder = self
        self.state = State.TRANSACTION
        self.log.authenticated = True
        self._messages = list(self.server.mailbox)
        self._deleted = set()
        total = sum(m.octets for m in self._messages)
        await self._reply(f"+OK maildrop has {len(self._messages)} messages ({total} octets)")

    # -- AUTHORIZATION

    async def pop_USER(self, arg: str) -> None:
        """USER name: remember the name; PASS decides."""
        if not arg:
            await self._reply("-ERR USER needs a name")
            return
        self._user = arg
        await self._reply("+OK send PASS")

    async def pop_PASS(self, arg: str) -> None:
        """PASS string: the rest of the line is the password (it may hold
        spaces)."""
        if self._user is None:
            await self._reply("-ERR USER first")
            return
        user, self._user = self._user, None
        await self._finish_login(self.server.accepts(user) and arg == self.server.password)

    async def pop_APOP(self, arg: str) -> None:
        """APOP name digest: md5(timestamp + password), lower-case hex."""
        if not self.server.apop:
            await self._reply("-ERR APOP not supported")
            return
        parts = arg.split()
        if len(parts) != 2:
            await self._reply("-ERR APOP needs a name and a digest")
            return
        name, digest = parts
        expected = hashlib.md5((self.timestamp + self.server.password).encode("utf-8")).hexdigest()
        await self._finish_login(self.server.accepts(name) and digest.lower() == expected)

    async def pop_AUTH(self, arg: str) -> None:
        """AUTH mechanism [initial-response] (RFC 5034); bare AUTH lists the
        mechanisms (the RFC 1734 habit clients probe with)."""
        parts = arg.split()
        if not parts:
            await self._reply("+OK mechanisms follow", [m.encode() + b"\r\n" for m in self.server.sasl] + [b".\r\n"])
            return
        if len(parts) > 2:
            await self._reply("-ERR AUTH takes a mechanism and an optional initial response")
            return
        handler = self.server.sasl.get(parts[0].upper())
        if handler is None:
            await self._reply("-ERR unsupported mechanism")
            return
        response: bytes | None = None
        if len(parts) == 2:
            response = _b64decode(parts[1])
            if response is None:
                await self._reply("-ERR invalid base64")
                return
        exchange = handler.start()
        while True:
            result = exchange.step(response)
            if inspect.isawaitable(result):
                result = await result
            kind, data = result
            if kind == "ok":
                await self._finish_login(True)
                return
            if kind == "fail":
                reason = (data or b"authentication failed").decode("utf-8", "replace")
                await self._finish_login(False, "[AUTH] " + reason)
                return
            if kind != "challenge":
                raise ValueError(f"SASL step returned {kind!r}")
            await self._reply("+ " + base64.b64encode(data or b"").decode("ascii"))
            raw = await self._next_line()
            if raw is None:
                return
            if raw is not _TOO_LONG:
                self.log.sasl_responses.append(raw.decode("ascii", "replace"))
            if raw is _TOO_LONG:
                await self._reply("-ERR line too long")
                return
            if raw.strip() == b"*":
                await self._reply("-ERR authentication cancelled")
                return
            response = _b64decode(raw.decode("ascii", "replace"))
            if response is None:
                await self._reply("-ERR invalid base64")
                return

    async def pop_STLS(self, arg: str) -> None:
        """STLS (RFC 2595): "+OK begin TLS", then the TLS handshake."""
        if self.server.ssl_context is None or self.server.implicit_tls or self.log.tls:
            await self._reply("-ERR STLS not available")
            return
        # Anything the client sent after STLS was sent in the clear and must
        # not be taken as if it came through TLS (RFC 2595 section 4).
        self._buf.clear()
        # No await between the "+OK" and start_tls may yield to the loop, or
        # the ClientHello could land in the plaintext reader; _reply only
        # drains, which does not yield while the buffer is small.
        await self._reply("+OK begin TLS")
        await self.writer.start_tls(self.server.ssl_context)
        self.log.tls = True
        self._user = None

    # -- both states

    async def pop_CAPA(self, arg: str) -> None:
        """CAPA (RFC 2449)."""
        if not self.server.capa_supported:
            await self._reply("-ERR unknown command")
            return
        caps = self.server.capabilities
        if caps is None:
            caps = self.server.default_capabilities(tls_active=self.log.tls)
        await self._reply("+OK capability list follows", [c.encode() + b"\r\n" for c in caps] + [b".\r\n"])

    async def pop_QUIT(self, arg: str) -> None:
        """QUIT: from TRANSACTION enter UPDATE and remove the marked messages;
        from AUTHORIZATION just leave."""
        if self.server.faults.drop_on_quit:
            raise _Drop
        if self.state is State.TRANSACTION:
            self.state = State.UPDATE
            self.server._commit([self._messages[i] for i in sorted(self._deleted)])
            self.log.committed = True
            self.server._lock_holder = None
        else:
            self.state = State.UPDATE
        await self._reply("+OK bye")

    # -- TRANSACTION

    async def pop_STAT(self, arg: str) -> None:
        """STAT: count and total size of the messages not marked deleted."""
        override = self.server.faults.stat_override
        if override is not None:
            await self._reply("+OK " + override)
            return
        visible = self._visible()
        await self._reply(f"+OK {len(visible)} {sum(m.octets for _, m in visible)}")

    async def pop_LIST(self, arg: str) -> None:
        """LIST [msg]: sizes."""
        if arg.strip():
            found = await self._message_arg(arg.strip())
            if found:
                await self._reply(f"+OK {found[0]} {found[1].octets}")
            return
        override = self.server.faults.list_override
        if override is not None:
            await self._reply("+OK scan listing follows", _raw_lines(override))
            return
        visible = self._visible()
        lines = [f"{n} {m.octets}\r\n".encode() for n, m in visible]
        size = sum(m.octets for _, m in visible)
        await self._reply(f"+OK {len(visible)} messages ({size} octets)", lines + [b".\r\n"])

    async def pop_UIDL(self, arg: str) -> None:
        """UIDL [msg]: unique ids."""
        if not self.server.uidl:
            await self._reply("-ERR unknown command")
            return
        if arg.strip():
            found = await self._message_arg(arg.strip())
            if found:
                await self._reply(f"+OK {found[0]} {found[1].uid}")
            return
        override = self.server.faults.uidl_override
        if override is not None:
            await self._reply("+OK unique-id listing follows", _raw_lines(override))
            return
        lines = [f"{n} {m.uid}\r\n".encode() for n, m in self._visible()]
        await self._reply("+OK unique-id listing follows", lines + [b".\r\n"])

    async def pop_RETR(self, arg: str) -> None:
        """RETR msg: the whole message."""
        found = await self._message_arg(arg.strip())
        if not found:
            return
        number, message = found
        refusal = self.server.faults.retr_errors.get(number)
        if refusal is not None:
            await self._reply("-ERR " + refusal)
            return
        drop = self.server.faults.drop_during_retr
        drop_after = drop[1] if drop is not None and drop[0] == number else None
        if message.wire is not None:
            body: Iterable[bytes] = (message.wire, b".\r\n")
        else:
            body = multiline_chunks(message.data)
        self.log.retrieved.append(message.uid)
        await self._reply(f"+OK {message.octets} octets", body, drop_after=drop_after)

    async def pop_TOP(self, arg: str) -> None:
        """TOP msg n: the header, the blank line and n lines of the body."""
        parts = arg.split()
        if len(parts) != 2 or not parts[1].isdigit():
            await self._reply("-ERR TOP needs a message number and a line count")
            return
        found = await self._message_arg(parts[0])
        if not found:
            return
        data = found[1].data
        await self._reply("+OK top of message follows", multiline_chunks(data, top_end(data, int(parts[1]))))

    async def pop_DELE(self, arg: str) -> None:
        """DELE msg: mark for deletion at UPDATE."""
        found = await self._message_arg(arg.strip())
        if not found:
            return
        number, message = found
        self._deleted.add(number - 1)
        self.log.deleted_marked.append(message.uid)
        await self._reply(f"+OK message {number} deleted")

    async def pop_NOOP(self, arg: str) -> None:
        """NOOP."""
        await self._reply("+OK")

    async def pop_RSET(self, arg: str) -> None:
        """RSET: unmark every message marked deleted."""
        self._deleted.clear()
        self.log.deleted_marked.clear()
        size = sum(m.octets for m in self._messages)
        await self._reply(f"+OK maildrop has {len(self._messages)} messages ({size} octets)")


def _raw_lines(lines: Iterable[str]) -> list[bytes]:
    return [line.encode("utf-8", "surrogateescape") + b"\r\n" for line in lines] + [b".\r\n"]


def _b64decode(text: str) -> bytes | None:
    text = text.strip()
    if text == "=":
        # RFC 5034: "=" is an empty initial response.
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# --------------------------------------------------------------------------
# Command line


def load_messages(paths: Iterable[str | os.PathLike]) -> list[Message]:
    """Messages from files and directories (a directory contributes its files
    in name order); the uid is the file name."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p])
    return [Message(uid=f.name, data=f.read_bytes()) for f in files]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rpopcore.testing.scriptable_server [options] DIR_OR_FILES...``"""
    parser = argparse.ArgumentParser(description="Serve .eml files over POP3 (for tests and demos).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1110)
    parser.add_argument("--user", default="user")
    parser.add_argument("--password", default="pass")
    parser.add_argument("--apop", action="store_true")
    parser.add_argument("--cert", help="PEM certificate chain; with --key, offer STLS")
    parser.add_argument("--key", help="PEM private key")
    parser.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (pop3s)")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    async def serve() -> None:
        server = ScriptableServer(
            load_messages(args.paths),
            user=args.user,
            password=args.password,
            apop=args.apop,
            host=args.host,
            port=args.port,
            ssl_context=context,
            implicit_tls=args.implicit_tls,
            sasl={"PLAIN": PlainSasl(args.user, args.password)},
        )
        async with server:
            print(f"serving {len(server.mailbox)} messages on {server.host}:{server.port}", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
