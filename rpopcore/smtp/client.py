"""An asyncio client for SMTP (RFC 5321) and, as a small subclass, LMTP
(RFC 2033), as an explicit state machine.

A session: :meth:`SmtpClient.open` (connect and read the greeting, EHLO,
STARTTLS and EHLO again when a TLS context is given, AUTH when a username
is), then :meth:`SmtpClient.send_mail` for a transaction, then
:meth:`SmtpClient.quit`; :meth:`SmtpClient.close` always.  States:
DISCONNECTED, GREETED after the greeting (and again after STARTTLS: RFC 3207
4.2 forgets what was said before TLS), READY after the hello, DATA when a
server waits for message data we have no recipient for, CLOSED.

Each step has its own deadline of ``timeout`` seconds: connecting, the TLS
handshake, each write until the server has taken it, each reply line.  A
large message on a slow link is not cut off; a silent server is.

What goes wrong raises: :class:`SessionBroken` for what the server said or
did, :class:`OSError` for the link (:class:`TimeoutError`,
:class:`ConnectionRefusedError`, :class:`ssl.SSLError` among them).  The
replies that decide recipients are kept in the :class:`Transaction` as they
arrive, so a session that breaks halfway still tells what it decided.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import ssl
from pathlib import Path
from typing import Iterable, Sequence

import attrs

from rpopcore.smtp.data import DataEncoder
from rpopcore.smtp.replies import Reply, SessionBroken, extensions, parse_line, path_of, xtext

#: Longest reply line accepted (RFC 5321 allows 512; servers are generous).
LINE_LIMIT = 1 << 16


class State(enum.Enum):
    DISCONNECTED = "disconnected"
    GREETED = "greeted"
    READY = "ready"
    DATA = "data"  # the server waits for message data: only hanging up is left
    CLOSED = "closed"


@attrs.frozen
class ConnectOptions:
    """Where and how to connect.  ``socket`` is a Unix socket to use instead
    of ``host`` and ``port``.  ``tls_context`` asks for STARTTLS, which is
    then required: nothing goes in clear text when it is refused.
    ``username`` with ``password`` asks for AUTH.  ``pipelining`` lets the
    commands up to DATA go in one write when the server offers PIPELINING
    (RFC 2920)."""

    host: str = ""
    port: int = 25
    socket: Path | None = None
    timeout: float = 30
    hello_name: str = "localhost"
    tls_context: ssl.SSLContext | None = None
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    pipelining: bool = True


@attrs.frozen
class RcptTo:
    """One recipient of a transaction.  ``notify`` is the RFC 3461 NOTIFY
    value (``FAILURE``, ``NEVER``, ...), "" for no DSN parameters; they are
    sent, with ``ORCPT=rfc822;`` ``orcpt`` when known, only to a server that
    offers DSN."""

    address: str
    notify: str = ""
    orcpt: str = ""


@attrs.define
class Transaction:
    """One message from ``sender`` to ``recipients``.  ``replies[i]`` is the
    reply that decided ``recipients[i]`` (a refused MAIL FROM or RCPT TO, the
    reply to DATA or after the data), None while nothing has."""

    sender: str
    recipients: tuple[RcptTo, ...] = attrs.field(converter=tuple)
    replies: list[Reply | None] = attrs.field(init=False)

    def __attrs_post_init__(self):
        self.replies = [None] * len(self.recipients)

    def decide(self, indexes: Iterable[int], reply: Reply) -> None:
        for i in indexes:
            self.replies[i] = reply


class SmtpClient:
    """One SMTP session.  Subclasses name their protocol in ``PROTOCOL``."""

    PROTOCOL = "SMTP"

    def __init__(self, options: ConnectOptions):
        self.options = options
        self.state = State.DISCONNECTED
        #: What the server offers: ``{KEYWORD: parameters}``; {} after HELO.
        self.extensions: dict[str, str] = {}
        self.tls_active = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def peer(self) -> str:
        """The server, as messages name it: ``SMTP server host:port``."""
        opts = self.options
        return f"{self.PROTOCOL} server {opts.socket if opts.socket is not None else f'{opts.host}:{opts.port}'}"

    # --- opening ------------------------------------------------------------

    async def open(self) -> None:
        """Connect, then hello; STARTTLS and hello again, and AUTH, as the
        options ask."""
        await self.connect()
        await self.hello()
        if self.options.tls_context is not None:
            await self.starttls()
            await self.hello()
        if self.options.username:
            await self.authenticate()

    async def connect(self) -> Reply:
        """Open the connection and read the greeting, which must be 220."""
        self._require(State.DISCONNECTED)
        opts = self.options
        async with asyncio.timeout(opts.timeout):
            if opts.socket is not None:
                self._reader, self._writer = await asyncio.open_unix_connection(opts.socket, limit=LINE_LIMIT)
            else:
                self._reader, self._writer = await asyncio.open_connection(opts.host, opts.port, limit=LINE_LIMIT)
        greeting = await self.reply()
        if greeting.code != 220:
            raise SessionBroken(f"greeted with {greeting}")
        self.state = State.GREETED
        return greeting

    async def hello(self) -> dict[str, str]:
        """EHLO -> :attr:`extensions`.  A server that does not know EHLO
        (500, 502) gets HELO, unless STARTTLS or AUTH is wanted: both need
        EHLO."""
        self._require(State.GREETED)
        opts = self.options
        name = opts.hello_name.encode("utf-8", "surrogateescape")
        reply = await self.command(b"EHLO " + name)
        if reply.code == 250:
            return self._ready(extensions(reply))
        if reply.code in (500, 502) and opts.tls_context is None and not opts.username:
            reply = await self.command(b"HELO " + name)
            if reply.code == 250:
                return self._ready({})
        raise SessionBroken(f"refused the greeting: {reply}")

    async def starttls(self) -> None:
        """STARTTLS (RFC 3207) with the options' context, verifying the
        server as ``host``; hello again afterwards."""
        self._require(State.READY)
        if "STARTTLS" not in self.extensions:
            raise SessionBroken("does not offer STARTTLS, and starttls = true; nothing is sent in clear text")
        reply = await self.command(b"STARTTLS")
        if reply.code != 220:
            raise SessionBroken(f"refused STARTTLS: {reply}")
        opts = self.options
        async with asyncio.timeout(opts.timeout):
            await self._writer.start_tls(opts.tls_context, server_hostname=opts.host)
        self.tls_active = True
        self.extensions = {}
        self.state = State.GREETED

    async def authenticate(self) -> None:
        """AUTH PLAIN, or LOGIN where PLAIN is not offered (RFC 4954), with
        the options' credentials.  No error message shows the password."""
        self._require(State.READY)
        opts = self.options
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        user, password = opts.username.encode(), opts.password.encode()
        if "PLAIN" in mechanisms:
            reply = await self.command(b"AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0" + password))
        elif "LOGIN" in mechanisms:
            reply = await self.command(b"AUTH LOGIN")
            for answer in (user, password):
                if reply.code != 334:
                    break
                reply = await self.command(base64.b64encode(answer))
        else:
            offered = " ".join(mechanisms) or "no AUTH at all"
            raise SessionBroken(f"offers {offered}; username is set, and only AUTH PLAIN or LOGIN is spoken here")
        if reply.code != 235:
            raise SessionBroken(f"refused the credentials of {opts.username!r}: {reply}")

    # --- the transaction ----------------------------------------------------

    async def send_mail(self, mail: Transaction, message: Iterable[bytes]) -> None:
        """MAIL FROM, RCPT TO for each recipient, DATA, then ``message`` (LF
        line endings, in chunks of any size) when a recipient was accepted.
        Fills ``mail.replies``: a refused MAIL FROM decides everyone, a
        refused RCPT its recipient, the reply to DATA or after the data the
        accepted ones.  Addresses must pass :func:`path_of`."""
        self._require(State.READY)
        commands = [self._mail_from(mail)] + [self._rcpt_to(r) for r in mail.recipients]
        if self.options.pipelining and "PIPELINING" in self.extensions:
            accepted = await self._envelope_pipelined(mail, commands)
        else:
            accepted = await self._envelope_one_by_one(mail, commands)
        if not accepted:
            return
        encoder = DataEncoder()
        for chunk in message:
            data = encoder.feed(chunk)
            if data:
                await self._send(data)
        await self._send(encoder.finish())
        await self._data_replies(mail, accepted)
        self.state = State.READY

    async def _envelope_one_by_one(self, mail: Transaction, commands: list[bytes]) -> list[int]:
        """-> the recipients accepted when the server waits for the data,
        else [] with everyone decided."""
        everyone = range(len(mail.recipients))
        reply = await self.command(commands[0])
        if not reply.positive:
            mail.decide(everyone, reply)
            return []
        accepted = []
        for i, command in zip(everyone, commands[1:]):
            reply = await self.command(command)
            if reply.positive:
                accepted.append(i)
            else:
                mail.decide([i], reply)
        if not accepted:
            return []
        reply = await self.command(b"DATA")
        if reply.code != 354:
            mail.decide(accepted, reply)
            return []
        self.state = State.DATA
        return accepted

    async def _envelope_pipelined(self, mail: Transaction, commands: list[bytes]) -> list[int]:
        """As :meth:`_envelope_one_by_one`, every command in one write."""
        everyone = range(len(mail.recipients))
        await self._send(b"".join(c + b"\r\n" for c in commands) + b"DATA\r\n")
        reply = await self.reply()
        sender_ok = reply.positive
        if not sender_ok:
            mail.decide(everyone, reply)
        accepted = []
        for i in everyone:
            reply = await self.reply()
            if not sender_ok:
                continue  # these only say "need MAIL first"
            if reply.positive:
                accepted.append(i)
            else:
                mail.decide([i], reply)
        reply = await self.reply()
        if reply.code == 354:
            # With no recipient accepted this is a confused server: nothing is
            # sent, and in state DATA the session ends by hanging up.
            self.state = State.DATA
            return accepted
        if accepted:
            mail.decide(accepted, reply)
        return []

    async def _data_replies(self, mail: Transaction, accepted: Sequence[int]) -> None:
        mail.decide(accepted, await self.reply())  # one reply for every accepted recipient

    def _mail_from(self, mail: Transaction) -> bytes:
        line = b"MAIL FROM:" + _path(mail.sender, "MAIL FROM")
        if "8BITMIME" in self.extensions:
            line += b" BODY=8BITMIME"
        addresses = [mail.sender] + [r.address for r in mail.recipients]
        if "SMTPUTF8" in self.extensions and not all(a.isascii() for a in addresses):
            line += b" SMTPUTF8"
        return line

    def _rcpt_to(self, rcpt: RcptTo) -> bytes:
        line = b"RCPT TO:" + _path(rcpt.address, "RCPT TO")
        if rcpt.notify and "DSN" in self.extensions:
            line += f" NOTIFY={rcpt.notify}".encode("ascii")
            if rcpt.orcpt:
                line += f" ORCPT=rfc822;{xtext(rcpt.orcpt)}".encode("ascii")
        return line

    # --- closing ------------------------------------------------------------

    async def quit(self) -> None:
        """QUIT where the server can hear it (not while it waits for data),
        then close.  Trouble saying goodbye is ignored: the replies that
        decided the recipients came before."""
        try:
            if self.state in (State.GREETED, State.READY):
                await self.command(b"QUIT")
        except (OSError, SessionBroken):
            pass
        finally:
            await self.close()

    async def close(self) -> None:
        """Hang up, waiting at most ``timeout`` for the connection to close."""
        self.state = State.CLOSED
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.close()
        try:
            async with asyncio.timeout(self.options.timeout):
                await writer.wait_closed()
        except OSError:
            pass

    # --- plumbing -----------------------------------------------------------

    async def command(self, line: bytes) -> Reply:
        """Send one command line and read its reply."""
        await self._send(line + b"\r\n")
        return await self.reply()

    async def reply(self) -> Reply:
        """Read one whole reply, continuation lines included."""
        lines: list[str] = []
        while True:
            try:
                async with asyncio.timeout(self.options.timeout):
                    line = await self._reader.readline()
            except ValueError:  # longer than LINE_LIMIT
                raise SessionBroken(f"a reply line longer than {LINE_LIMIT} bytes") from None
            if not line.endswith(b"\n"):
                raise SessionBroken("the server closed the connection")
            code, more, text = parse_line(line, self.PROTOCOL)
            lines.append(text)
            if not more:
                return Reply(code, tuple(lines))

    async def _send(self, data: bytes) -> None:
        self._writer.write(data)
        async with asyncio.timeout(self.options.timeout):
            await self._writer.drain()

    def _ready(self, offered: dict[str, str]) -> dict[str, str]:
        self.extensions = offered
        self.state = State.READY
        return offered

    def _require(self, state: State) -> None:
        if self.state is not state:  # a mistake of the caller, not of the server
            raise RuntimeError(f"{self.PROTOCOL} command not allowed in state {self.state.value}")


class LmtpClient(SmtpClient):
    """LMTP (RFC 2033): LHLO for the hello, and after the data one reply per
    accepted recipient, so one message can be delivered to alice and refused
    for bob.  (``smtplib.LMTP`` reads a single reply after the data, as SMTP
    does.)"""

    PROTOCOL = "LMTP"

    async def hello(self) -> dict[str, str]:
        """LHLO -> :attr:`extensions`; there is no HELO to fall back to."""
        self._require(State.GREETED)
        reply = await self.command(b"LHLO " + self.options.hello_name.encode("ascii", "replace"))
        if reply.code != 250:
            raise SessionBroken(f"LHLO answered {reply}")
        return self._ready(extensions(reply))

    async def _data_replies(self, mail: Transaction, accepted: Sequence[int]) -> None:
        for i in accepted:  # RFC 2033 4.2: one reply per accepted RCPT, in order
            mail.decide([i], await self.reply())


def _path(address: str, command: str) -> bytes:
    path = path_of(address)
    if path is None:
        raise ValueError(f"{address!r} cannot be written in {command}")
    return path
