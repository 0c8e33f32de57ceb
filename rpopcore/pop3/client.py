"""An asyncio POP3 client as an explicit state machine.

States follow RFC 1939: AUTHORIZATION after the greeting, TRANSACTION after a
successful login, UPDATE after QUIT.  There is one method per command, and
every answer is parsed in :mod:`rpopcore.pop3.responses`.

Commands may be *sent* ahead of reading their answers (RFC 2449 PIPELINING):
:meth:`Pop3Client.send` queues the expected answer and :meth:`Pop3Client.receive`
reads answers strictly in the order the commands went out.  Without
PIPELINING the retrieval pipeline simply keeps one command in flight.

Every answer has two clocks.  The idle timeout counts from the last bytes
received, so a large message on a slow link is not cut off, but a silent
server is; and the answer as a whole must arrive at :data:`MIN_RATE` bytes
a second or faster (after a grace of one timeout), so a server that drips a
byte now and then cannot hold a poll for ever either.  What the answers may
hold is bounded too (:mod:`rpopcore.pop3.responses` has the limits): only a
RETR answer may be as long as the server likes, and it is streamed.

Answers must stay in step with the commands: pipelining matches them by
order alone, so an answer the server sends twice, or bytes nobody asked for,
would be taken as the answer to the next command.  So a status line must
open every answer (a SASL challenge only where one may come), a multi-line
body must not open with another one, and nothing may arrive while no
command is in flight; otherwise the session ends with ``protocol-error``
before anything after the stray bytes is used.

Secrets are redacted at the source: a :class:`Command` knows which of its
arguments is secret, and the protocol log and every error detail name it
by its redacted form.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import re
import ssl
from typing import Awaitable, Callable

import attrs

from rpopcore import errors, logs
from rpopcore.pop3.link import Link, open_link
from rpopcore.pop3.multiline import MultilineDecoder
from rpopcore.pop3.responses import (
    MAX_CAPA,
    Capabilities,
    StatusLine,
    apop_timestamp,
    error_for,
    excerpt,
    listing_limit,
    parse_list,
    parse_stat,
    parse_uidl,
)

log = logging.getLogger("rpop.pop3")

#: The slowest rate, in bytes a second, at which an answer may arrive, over
#: the whole answer and after a grace of one ``timeout``: its deadline is
#: ``timeout + bytes received / MIN_RATE`` seconds after rpop began to wait
#: for it.  The slowest links mail travels today (a GPRS modem, a satellite
#: hop) carry several KB a second; a server slower than this for a whole
#: answer is stuck or hostile.  At this rate the longest answer the limits
#: allow besides RETR, a CAPA of 64 KiB, still has a minute.
MIN_RATE = 1024

# A line that opens a multi-line body the way a status line opens an answer:
# the answer to the next command, so the server sent more than it was asked.
# (The prefixes are tried first: a startswith costs a third of a match.)
_STATUS_PREFIXES = (b"+OK", b"-ERR")
_STATUS_LINE_START = re.compile(rb"(?:\+OK|-ERR)[ \t\r\n]")


# Response codes that speak of the mailbox or the server, not the mechanism.
_NOT_MECHANISM = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"})


class State(enum.Enum):
    DISCONNECTED = "disconnected"
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"
    CLOSED = "closed"


@attrs.frozen
class ConnectOptions:
    """Where and how to connect.  ``implicit_tls`` starts TLS at once (port
    995 style); ``tls_context`` also serves STLS.  ``source_address`` is the
    local address to bind, "" to let the OS choose."""

    host: str
    port: int
    timeout: float = 30.0
    implicit_tls: bool = False
    tls_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    source_address: str = ""
    max_status_line: int = 65536


@attrs.frozen
class Command:
    """A line for the server, and how rpop speaks of it.

    ``shown`` is what the protocol log prints and ``step`` what error details
    call it: both without the secret, replaced by ``****``.  They are made
    here and nowhere else, by whoever knows which argument is secret, so no
    path a command's text can take -- the log, an error, the state store --
    can carry the secret."""

    line: str
    shown: str
    step: str

    @classmethod
    def of(cls, verb: str, *args: str, secret: str | None = None) -> "Command":
        """``verb args... secret``; the secret, when there is one, shown as ``****``."""
        public = " ".join((verb, *args))
        if secret is None:
            return cls(public, public, public)
        shown = public + " ****"
        return cls(f"{public} {secret}", shown, shown)

    @classmethod
    def sasl_response(cls, mechanism: str, answer: str) -> "Command":
        """The answer to a SASL challenge: nothing of it is shown."""
        return cls(answer, "****", f"the AUTH {mechanism} response")


@attrs.frozen
class Pending:
    """A command sent whose answer has not been read yet.  ``step`` names it
    in error details; ``challenge`` says a SASL challenge may answer it."""

    step: str
    multiline: bool
    challenge: bool = False


Sink = Callable[[bytes], object]


class Pop3Client:
    """One POP3 session.  Use :meth:`connect`, log in (``user``/``pass_``,
    ``apop`` or ``auth``), retrieve, then :meth:`quit`; :meth:`close` always."""

    def __init__(self, options: ConnectOptions, logger: logging.LoggerAdapter | logging.Logger | None = None):
        self.options = options
        self.log = logger or log
        self.state = State.DISCONNECTED
        self.greeting: StatusLine | None = None
        self.capabilities = Capabilities()
        self.tls_active = False
        self._link: Link | None = None
        # Bytes received and not yet consumed: _buffer[_pos:].  An offset
        # rather than slicing, so many small pipelined answers in one chunk
        # do not copy the rest of the chunk once each.
        self._buffer = b""
        self._pos = 0
        self._in_flight: collections.deque[Pending] = collections.deque()
        # Commands not yet handed to the transport: pipelined commands go out
        # together, in one write, rather than one system call each.
        self._outgoing: list[bytes] = []
        # The answer being read: when rpop began to wait for it (None until
        # it first had to) and the bytes received since, for its deadline.
        self._waiting_since: float | None = None
        self._received = 0

    # --- connection ---------------------------------------------------------

    async def connect(self) -> StatusLine:
        """Open the connection (with TLS when implicit) and read the greeting."""
        opts = self.options
        local = (opts.source_address, 0) if opts.source_address else None
        ctx = opts.tls_context if opts.implicit_tls else None
        self.log.log(logs.LINK, "connecting to %s port %d%s", opts.host, opts.port, " with TLS" if ctx else "")
        try:
            async with asyncio.timeout(opts.timeout):
                self._link = await open_link(
                    opts.host,
                    opts.port,
                    ssl_context=ctx,
                    server_hostname=(opts.server_hostname or opts.host) if ctx else None,
                    local_addr=local,
                )
        except TimeoutError:
            raise errors.Timeout(f"connecting to {opts.host}:{opts.port} took longer than {opts.timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            raise errors.TlsFailed(_untrusted(opts, exc)) from None
        except ssl.SSLError as exc:
            raise errors.TlsFailed(f"TLS handshake with {opts.host}:{opts.port} failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise errors.ConnectFailed(f"cannot connect to {opts.host}:{opts.port}: {exc.strerror or exc}") from None
        self.tls_active = ctx is not None
        self._in_flight.append(Pending("greeting", False))
        greeting = await self.receive()
        if not greeting.ok:
            raise error_for(greeting, "greeting")
        self.greeting = greeting
        self.state = State.AUTHORIZATION
        return greeting

    @property
    def tls_object(self) -> ssl.SSLObject | None:
        """The TLS session in use (version, cipher, the server's
        certificate), or None without TLS."""
        if not self.tls_active or self._link is None or self._link.transport is None:
            return None
        return self._link.transport.get_extra_info("ssl_object")

    @property
    def apop_timestamp(self) -> str | None:
        return apop_timestamp(self.greeting) if self.greeting else None

    async def capa(self) -> Capabilities:
        """CAPA; a server that does not know it gets empty capabilities."""
        status, body = await self._multiline_command("CAPA", MAX_CAPA, allow_error=True)
        self.capabilities = Capabilities.parse(body) if status.ok else Capabilities()
        return self.capabilities

    async def stls(self, context: ssl.SSLContext) -> None:
        """Upgrade to TLS (RFC 2595), then ask CAPA again: what the server
        offers may change once the channel is private."""
        self._require(State.AUTHORIZATION)
        status = await self.command(Command.of("STLS"))
        if not status.ok:
            raise errors.TlsFailed(f"the server refused STLS: -ERR {status.text}")
        # Bytes after "+OK" came in clear text: read after the handshake,
        # they would pass for the server's words under TLS (RFC 2595 §4).
        self.check_nothing_unread("the TLS handshake")
        opts = self.options
        try:
            async with asyncio.timeout(opts.timeout):
                await self._link.start_tls(context, server_hostname=opts.server_hostname or opts.host)
        except TimeoutError:
            raise errors.Timeout(f"TLS handshake with {opts.host}:{opts.port} took longer than {opts.timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            raise errors.TlsFailed(_untrusted(opts, exc)) from None
        except (ssl.SSLError, OSError) as exc:
            raise errors.TlsFailed(f"TLS handshake with {opts.host}:{opts.port} failed: {exc}") from None
        self.tls_active = True
        self.log.log(logs.LINK, "TLS established with %s", opts.host)
        await self.capa()

    # --- authorization ------------------------------------------------------

    async def user(self, name: str) -> None:
        self._require(State.AUTHORIZATION)
        await self._checked(Command.of("USER", name))

    async def pass_(self, password: str) -> None:
        self._require(State.AUTHORIZATION)
        await self._checked(Command.of("PASS", secret=password))
        self.state = State.TRANSACTION

    async def user_pass(self, name: str, password: str) -> None:
        """USER then PASS; sent together when the server pipelines (one round
        trip instead of two on a slow link)."""
        self._require(State.AUTHORIZATION)
        if not self.capabilities.pipelining:
            await self.user(name)
            await self.pass_(password)
            return
        user, password_ = Command.of("USER", name), Command.of("PASS", secret=password)
        self._queue(user.line, user.shown, user.step)
        self._queue(password_.line, password_.shown, password_.step)
        await self._flush()
        user_status = await self.receive()
        pass_status = await self.receive()
        if not user_status.ok:
            raise error_for(user_status, user.step)
        if not pass_status.ok:
            raise error_for(pass_status, password_.step)
        self.state = State.TRANSACTION

    async def apop(self, name: str, digest: str) -> None:
        self._require(State.AUTHORIZATION)
        await self._checked(Command.of("APOP", name, secret=digest))
        self.state = State.TRANSACTION

    async def auth(
        self,
        mechanism: str,
        initial_response: str | None,
        respond: Callable[[str], Awaitable[str]],
    ) -> None:
        """SASL AUTH (RFC 5034).  ``initial_response`` is base64 text ("=" for
        empty) or None to wait for the first challenge; ``respond`` turns each
        base64 challenge into the base64 answer.  No line-length cap applies to
        the payloads (OAuth tokens exceed 4 KB).

        A refusal of ``AUTH X`` itself, before any credential was sent, is
        :class:`MechanismUnavailable` (``auto`` selection tries the next
        mechanism); a refusal after credentials is the usual error
        (``auth-failed`` for ``[AUTH]`` or no code)."""
        self._require(State.AUTHORIZATION)
        status = await self.command(Command.of("AUTH", mechanism, secret=initial_response), challenge=True)
        if not status.ok and not status.continuation and initial_response is None and status.code not in _NOT_MECHANISM:
            # Refused before any credential was sent: the mechanism itself is
            # not available here (Dovecot even says [AUTH] for that), so the
            # caller may try the next one.
            raise errors.MechanismUnavailable(f"AUTH {mechanism}: -ERR {status.text}".rstrip())
        while status.continuation:
            answer = await respond(status.text)
            status = await self.command(Command.sasl_response(mechanism, answer), challenge=True)
        if not status.ok:
            raise error_for(status, f"AUTH {mechanism}")
        self.state = State.TRANSACTION

    # --- transaction --------------------------------------------------------

    async def stat(self) -> tuple[int, int]:
        """STAT: the number of messages and their size, within the limits."""
        self._require(State.TRANSACTION)
        return parse_stat((await self._checked(Command.of("STAT"))).text)

    async def stat_and_uidl(self) -> tuple[int, dict[int, str] | None]:
        """STAT's count and the UIDL listing {number: uid} checked against it
        (None when the server has no UIDL).  STAT comes first, so the
        listing is bounded by its count before a byte of it is read; with
        PIPELINING both go out at once."""
        count, status, body = await self._stat_and_listing("UIDL")
        return count, parse_uidl(body, count) if status.ok else None

    async def stat_and_list(self) -> tuple[int, dict[int, int]]:
        """STAT's count and the LIST listing {number: size} checked against it."""
        count, status, body = await self._stat_and_listing("LIST")
        if not status.ok:
            raise error_for(status, "LIST")
        return count, parse_list(body, count)

    async def _stat_and_listing(self, verb: str) -> tuple[int, StatusLine, bytes]:
        self._require(State.TRANSACTION)
        pipelined = self.capabilities.pipelining
        self.send("STAT")
        if pipelined:
            self.send(verb, multiline=True)
        await self._flush()
        status = await self.receive()
        if not status.ok:
            raise error_for(status, "STAT")
        count, _ = parse_stat(status.text)
        if not pipelined:
            self.send(verb, multiline=True)
            await self._flush()
        chunks: list[bytes] = []
        status = await self.receive(chunks.append, limit=listing_limit(count))
        return count, status, b"".join(chunks)

    async def in_step(self, number: int, uid: str | None) -> None:
        """Check, with a round trip, that the server's answers are in step
        with the commands (see :meth:`send_step_check`)."""
        self.send_step_check(number, uid)
        await self._flush()
        await self.receive_step_check(number, uid)

    def send_step_check(self, number: int, uid: str | None) -> None:
        """Queue ``UIDL n`` (``LIST n`` when the server has no UIDL), whose
        answer must name message ``n`` and its ``uid``.  Sent right after
        ``RETR n``, its answer proves that the answer read for RETR was the
        whole of message ``n``: a message that ended early or never ended,
        or an answer the server sent twice, moves every later answer, so
        this one would not fit."""
        command = _step_check(number, uid)
        self._queue(command.line, command.shown, command.step)

    async def receive_step_check(self, number: int, uid: str | None) -> None:
        """Read the answer to :meth:`send_step_check`; ``protocol-error`` when
        it is not for message ``number`` and its ``uid``."""
        status = await self.receive()
        words = status.text.split()
        if not status.ok or words[:1] != [str(number)] or (uid is not None and words[1:2] != [uid]):
            raise errors.ProtocolError(
                f"{_step_check(number, uid).step} was answered {excerpt(_shown(status))}, not for message "
                f"{number}: the server's answers are out of step with the commands"
            )

    def send(self, line: str, *, multiline: bool = False) -> None:
        """Send a command that carries no secret without waiting for its
        answer (pipelining)."""
        self._queue(line, line, line, multiline=multiline)

    async def receive(self, sink: Sink | None = None, *, limit: int | None = None) -> StatusLine:
        """Read the answer to the oldest command in flight.  A multi-line body
        is decoded into ``sink`` (or dropped when None) as it arrives; one
        longer than ``limit`` bytes on the wire is a protocol error."""
        self._push()
        pending = self._in_flight.popleft()
        self._waiting_since = None
        self._received = 0
        status = StatusLine.parse(await self._read_status_line(pending.step))
        if status.continuation and not pending.challenge:
            raise errors.ProtocolError(f"a SASL challenge (\"+ \") came as the answer to {pending.step}")
        self.log.log(logs.PROTOCOL, "S: %s", _shown(status))
        if status.ok and pending.multiline:
            await self._read_body(sink, pending.step, limit)
        return status

    async def quit(self) -> None:
        """QUIT: in TRANSACTION this enters UPDATE and the server commits the
        deletions; the answer confirms it."""
        if self.state in (State.CLOSED, State.DISCONNECTED):
            return
        committing = self.state is State.TRANSACTION
        status = await self.command(Command.of("QUIT"))
        if committing:
            self.state = State.UPDATE
            if not status.ok:
                raise errors.ProtocolError(f"QUIT: -ERR {status.text} (deletions may not be committed)")
        await self.close()

    async def close(self) -> None:
        self.state = State.CLOSED
        if self._link is not None:
            link, self._link = self._link, None
            await link.close()

    # --- plumbing -----------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def command(self, command: Command, *, challenge: bool = False) -> StatusLine:
        """Send one command and read its one-line answer (a SASL challenge
        too, when ``challenge``).  The log and any error name it by
        ``command.shown`` and ``command.step``, never by its line."""
        self._queue(command.line, command.shown, command.step, challenge=challenge)
        await self._flush()
        return await self.receive()

    async def _checked(self, command: Command) -> StatusLine:
        status = await self.command(command)
        if not status.ok:
            raise error_for(status, command.step)
        return status

    async def _multiline_command(self, verb: str, limit: int, *, allow_error: bool = False) -> tuple[StatusLine, bytes]:
        chunks: list[bytes] = []
        self.send(verb, multiline=True)
        await self._flush()
        status = await self.receive(chunks.append, limit=limit)
        if not status.ok and not allow_error:
            raise error_for(status, verb)
        return status, b"".join(chunks)

    def _require(self, state: State) -> None:
        if self.state is not state:
            raise errors.ProtocolError(f"command not allowed in state {self.state.value}")

    def _queue(self, line: str, shown: str, step: str, *, multiline: bool = False, challenge: bool = False) -> None:
        """Queue a command: ``line`` goes to the server, ``shown`` to the log,
        ``step`` into error details (see :class:`Command`)."""
        if self._link is None:
            raise errors.ProtocolError("not connected")
        if not self._in_flight:
            self.check_nothing_unread(step)
        self.log.log(logs.PROTOCOL, "C: %s", shown)
        self._outgoing.append(line.encode("utf-8") + b"\r\n")
        self._in_flight.append(Pending(step, multiline, challenge))

    def check_nothing_unread(self, before: str) -> None:
        """With no command in flight the server has nothing to say: bytes
        waiting now would be taken for the answer to the next command (and
        after a RETR answer, they may be the rest of the message: a line "."
        the server did not stuff), so they are ``protocol-error``."""
        unread = len(self._buffer) - self._pos + self._link.unread
        if unread:
            raise errors.ProtocolError(
                f"the server sent {unread} bytes no command asked for, before {before}: "
                "its answers are out of step with the commands"
            )

    def _push(self) -> None:
        if self._outgoing:
            self._link.write(b"".join(self._outgoing))
            self._outgoing.clear()

    async def flush(self) -> None:
        """Push queued commands to the server."""
        await self._flush()

    async def _flush(self) -> None:
        self._push()
        try:
            async with asyncio.timeout(self.options.timeout):
                await self._link.drain()
        except TimeoutError:
            raise errors.Timeout(f"the server did not take our command within {self.options.timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise errors.ProtocolError(f"connection lost while sending: {exc}") from None

    async def _fill(self, during: str) -> None:
        """Wait for more bytes, until the idle timeout or the answer's
        deadline (see :data:`MIN_RATE`), whichever comes first."""
        timeout = self.options.timeout
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._waiting_since is None:
            self._waiting_since = now
        idle = now + timeout
        deadline = min(idle, self._waiting_since + timeout + self._received / MIN_RATE)
        try:
            async with asyncio.timeout_at(deadline):
                data = await self._link.read()
        except TimeoutError:
            if deadline < idle:
                raise errors.Timeout(
                    f"the answer to {during} came slower than {MIN_RATE} bytes/s: "
                    f"{self._received} bytes in {loop.time() - self._waiting_since:.0f}s"
                ) from None
            raise errors.Timeout(f"no answer to {during} within {timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise errors.ProtocolError(f"connection lost during {during}: {exc}") from None
        if not data:
            raise errors.ProtocolError(f"connection closed in the middle of the answer to {during}")
        self._received += len(data)
        self.log.log(logs.LINK, "received %d bytes", len(data))
        if self._pos >= len(self._buffer):
            self._buffer = data
        else:
            self._buffer = self._buffer[self._pos :] + data
        self._pos = 0

    async def _read_status_line(self, during: str) -> bytes:
        limit = self.options.max_status_line
        searched = 0  # bytes after _pos known to hold no line end: each byte is searched once
        while True:
            end = self._buffer.find(b"\n", self._pos + searched)
            if end >= 0:
                line = self._buffer[self._pos : end + 1]
                self._pos = end + 1
                if len(line) > limit:
                    raise errors.ProtocolError(f"status line of {during} longer than {limit} bytes")
                return line
            searched = len(self._buffer) - self._pos
            if searched > limit:
                raise errors.ProtocolError(f"status line of {during} longer than {limit} bytes")
            await self._fill(during)

    async def _read_body(self, sink: Sink | None, during: str, limit: int | None) -> None:
        # Enough of the body to see whether it opens with a status line
        # (usually there already: one look, no copy).
        while len(self._buffer) - self._pos < 5 and self._buffer.find(b"\n", self._pos) < 0:
            await self._fill(during)
        if self._buffer.startswith(_STATUS_PREFIXES, self._pos) and _STATUS_LINE_START.match(self._buffer, self._pos):
            raise errors.ProtocolError(
                f"the answer to {during} holds a second status line: the server answered a command twice, "
                "so its answers are out of step with the commands"
            )
        decoder = MultilineDecoder()
        taken = 0  # bytes of the body on the wire, for the limit
        while True:
            if self._pos < len(self._buffer):
                out = decoder.feed(self._buffer, self._pos)
                if out and sink is not None:
                    sink(out)
                if decoder.done:
                    taken += decoder.end - self._pos
                    self._pos = decoder.end
                else:
                    taken += len(self._buffer) - self._pos
                    self._pos = len(self._buffer)
                if limit is not None and taken > limit:
                    raise errors.ProtocolError(f"the answer to {during} is longer than {limit} bytes")
                if decoder.done:
                    return
            await self._fill(during)


def _untrusted(opts: ConnectOptions, exc: ssl.SSLCertVerificationError) -> str:
    return (
        f"the certificate of {opts.host}:{opts.port} cannot be verified ({exc.verify_message}); "
        "to trust it set ca_file to the CA that signed it, or knowingly stop verifying with tls_verify = false"
    )


def _step_check(number: int, uid: str | None) -> Command:
    return Command.of("UIDL" if uid is not None else "LIST", str(number))


def _shown(status: StatusLine) -> str:
    if status.continuation:
        return "+ ****"  # SASL challenges may carry a token or an error
    return ("+OK " if status.ok else "-ERR ") + status.text
