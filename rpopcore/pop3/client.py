"""An asyncio POP3 client as an explicit state machine.

States follow RFC 1939: AUTHORIZATION after the greeting, TRANSACTION after a
successful login, UPDATE after QUIT.  There is one method per command, and
every answer is parsed in :mod:`rpopcore.pop3.responses`.

Commands may be *sent* ahead of reading their answers (RFC 2449 PIPELINING):
:meth:`Pop3Client.send` queues the expected answer and :meth:`Pop3Client.receive`
reads answers strictly in the order the commands went out.  Without
PIPELINING the retrieval pipeline simply keeps one command in flight.

Every read has a timeout that counts from the last bytes received, so a large
message on a slow link is not cut off, but a silent server is.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import ssl
from typing import Awaitable, Callable

import attrs

from rpopcore import errors, logs
from rpopcore.pop3.link import Link, open_link
from rpopcore.pop3.multiline import MultilineDecoder
from rpopcore.pop3.responses import Capabilities, StatusLine, apop_timestamp, error_for, parse_list, parse_uidl

log = logging.getLogger("rpop.pop3")


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
class Pending:
    """A command sent whose answer has not been read yet."""

    verb: str
    multiline: bool


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
    def apop_timestamp(self) -> str | None:
        return apop_timestamp(self.greeting) if self.greeting else None

    async def capa(self) -> Capabilities:
        """CAPA; a server that does not know it gets empty capabilities."""
        status, body = await self._multiline_command("CAPA", allow_error=True)
        self.capabilities = Capabilities.parse(body) if status.ok else Capabilities()
        return self.capabilities

    async def stls(self, context: ssl.SSLContext) -> None:
        """Upgrade to TLS (RFC 2595), then ask CAPA again: what the server
        offers may change once the channel is private."""
        self._require(State.AUTHORIZATION)
        status = await self.command("STLS")
        if not status.ok:
            raise errors.TlsFailed(f"the server refused STLS: -ERR {status.text}")
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
        await self._checked(f"USER {name}", "USER")

    async def pass_(self, password: str) -> None:
        self._require(State.AUTHORIZATION)
        await self._checked(f"PASS {password}", "PASS", redacted="PASS ****")
        self.state = State.TRANSACTION

    async def user_pass(self, name: str, password: str) -> None:
        """USER then PASS; sent together when the server pipelines (one round
        trip instead of two on a slow link)."""
        self._require(State.AUTHORIZATION)
        if not self.capabilities.pipelining:
            await self.user(name)
            await self.pass_(password)
            return
        self._write(f"USER {name}", f"USER {name}")
        self._in_flight.append(Pending("USER", False))
        self._write(f"PASS {password}", "PASS ****")
        self._in_flight.append(Pending("PASS", False))
        await self._flush()
        user = await self.receive()
        passed = await self.receive()
        if not user.ok:
            raise error_for(user, "USER")
        if not passed.ok:
            raise error_for(passed, "PASS")
        self.state = State.TRANSACTION

    async def apop(self, name: str, digest: str) -> None:
        self._require(State.AUTHORIZATION)
        await self._checked(f"APOP {name} {digest}", "APOP", redacted=f"APOP {name} ****")
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
        line = f"AUTH {mechanism}" + (f" {initial_response}" if initial_response is not None else "")
        status = await self.command(line, redacted=f"AUTH {mechanism}" + (" ****" if initial_response else ""))
        if not status.ok and not status.continuation and initial_response is None and status.code not in _NOT_MECHANISM:
            # Refused before any credential was sent: the mechanism itself is
            # not available here (Dovecot even says [AUTH] for that), so the
            # caller may try the next one.
            raise errors.MechanismUnavailable(f"AUTH {mechanism}: -ERR {status.text}".rstrip())
        while status.continuation:
            answer = await respond(status.text)
            status = await self.command(answer, redacted="****")
        if not status.ok:
            raise error_for(status, f"AUTH {mechanism}")
        self.state = State.TRANSACTION

    # --- transaction --------------------------------------------------------

    async def stat(self) -> tuple[int, int]:
        self._require(State.TRANSACTION)
        status = await self._checked("STAT", "STAT")
        parts = status.text.split()
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise errors.ProtocolError(f"malformed STAT answer {status.text!r}")
        return int(parts[0]), int(parts[1])

    async def uidl(self) -> dict[int, str] | None:
        """UIDL listing {number: uid}, or None when the server has no UIDL."""
        self._require(State.TRANSACTION)
        status, body = await self._multiline_command("UIDL", allow_error=True)
        return parse_uidl(body) if status.ok else None

    async def list(self) -> dict[int, int]:
        self._require(State.TRANSACTION)
        _, body = await self._multiline_command("LIST")
        return parse_list(body)

    def send(self, line: str, *, multiline: bool = False) -> None:
        """Send a command without waiting for its answer (pipelining)."""
        self._write(line, line)
        self._in_flight.append(Pending(line.split(" ", 1)[0].upper(), multiline))

    async def receive(self, sink: Sink | None = None) -> StatusLine:
        """Read the answer to the oldest command in flight.  A multi-line body
        is decoded into ``sink`` (or dropped when None) as it arrives."""
        self._push()
        pending = self._in_flight.popleft()
        status = StatusLine.parse(await self._read_status_line(pending.verb))
        self.log.log(logs.PROTOCOL, "S: %s", _shown(status))
        if status.ok and pending.multiline:
            await self._read_body(sink, pending.verb)
        return status

    async def quit(self) -> None:
        """QUIT: in TRANSACTION this enters UPDATE and the server commits the
        deletions; the answer confirms it."""
        if self.state in (State.CLOSED, State.DISCONNECTED):
            return
        committing = self.state is State.TRANSACTION
        status = await self.command("QUIT")
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

    async def command(self, line: str, *, redacted: str | None = None) -> StatusLine:
        """Send one command and read its one-line answer.  ``redacted`` is what
        the log shows instead of ``line`` when the line carries a secret."""
        self._write(line, redacted if redacted is not None else line)
        self._in_flight.append(Pending(line.split(" ", 1)[0].upper(), False))
        await self._flush()
        return await self.receive()

    async def _checked(self, line: str, verb: str, *, redacted: str | None = None) -> StatusLine:
        status = await self.command(line, redacted=redacted)
        if not status.ok:
            raise error_for(status, verb)
        return status

    async def _multiline_command(self, line: str, *, allow_error: bool = False) -> tuple[StatusLine, bytes]:
        chunks: list[bytes] = []
        self.send(line, multiline=True)
        await self._flush()
        status = await self.receive(chunks.append)
        if not status.ok and not allow_error:
            raise error_for(status, line)
        return status, b"".join(chunks)

    def _require(self, state: State) -> None:
        if self.state is not state:
            raise errors.ProtocolError(f"command not allowed in state {self.state.value}")

    def _write(self, line: str, shown: str) -> None:
        if self._link is None:
            raise errors.ProtocolError("not connected")
        self.log.log(logs.PROTOCOL, "C: %s", shown)
        self._outgoing.append(line.encode("utf-8") + b"\r\n")

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
        try:
            async with asyncio.timeout(self.options.timeout):
                data = await self._link.read()
        except TimeoutError:
            raise errors.Timeout(f"no answer to {during} within {self.options.timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise errors.ProtocolError(f"connection lost during {during}: {exc}") from None
        if not data:
            raise errors.ProtocolError(f"connection closed in the middle of the answer to {during}")
        self.log.log(logs.LINK, "received %d bytes", len(data))
        if self._pos >= len(self._buffer):
            self._buffer = data
        else:
            self._buffer = self._buffer[self._pos :] + data
        self._pos = 0

    async def _read_status_line(self, during: str) -> bytes:
        limit = self.options.max_status_line
        while True:
            end = self._buffer.find(b"\n", self._pos)
            if end >= 0:
                line = self._buffer[self._pos : end + 1]
                self._pos = end + 1
                if len(line) > limit:
                    raise errors.ProtocolError(f"status line of {during} longer than {limit} bytes")
                return line
            if len(self._buffer) - self._pos > limit:
                raise errors.ProtocolError(f"status line of {during} longer than {limit} bytes")
            await self._fill(during)

    async def _read_body(self, sink: Sink | None, during: str) -> None:
        decoder = MultilineDecoder()
        while True:
            if self._pos < len(self._buffer):
                out = decoder.feed(self._buffer, self._pos)
                if out and sink is not None:
                    sink(out)
                if decoder.done:
                    self._pos = decoder.end
                    return
                self._pos = len(self._buffer)
            await self._fill(during)


def _untrusted(opts: ConnectOptions, exc: ssl.SSLCertVerificationError) -> str:
    return (
        f"the certificate of {opts.host}:{opts.port} cannot be verified ({exc.verify_message}); "
        "to trust it set ca_file to the CA that signed it, or knowingly stop verifying with tls_verify = false"
    )


def _shown(status: StatusLine) -> str:
    if status.continuation:
        return "+ ****"  # SASL challenges may carry a token or an error
    return ("+OK " if status.ok else "-ERR ") + status.text
