"""Delivery over LMTP (RFC 2033) to a mail store such as Dovecot's
``dovecot-lmtpd``.

LMTP answers once per accepted recipient after the message data, so one
message can be delivered to alice and refused for bob.  (This is why the
client is written here on asyncio streams: ``smtplib.LMTP`` reads a single
reply after the data, as SMTP does.)

One connection per ``deliver()`` call: LHLO, MAIL FROM, one RCPT TO per
recipient, DATA, the message, QUIT.  The agent is shared by every record
polled at once, and a fresh connection per message keeps one record's
trouble (a timeout, a server that hung up mid-reply) away from the others;
an LMTP server is local, so connecting costs little.  ``close()`` has no
connection left to close.  The commands up to DATA go in one write when the
server offers PIPELINING (RFC 2920).

The server writes the trace fields itself: Return-Path from MAIL FROM, and
Delivered-To (Dovecot only when the transaction has a single recipient).
The copy sent leaves out the fields named in the envelope's
``remove_fields`` (always Return-Path) and adds none.  Lines go out with CRLF endings and
dot-stuffed, chunk by chunk, so memory does not grow with the message.

Outcomes per recipient: a 2xx reply is delivered, 5xx permanent, anything
else temporary.  A 5xx to MAIL FROM or to DATA decides every recipient not
decided before.  A connection that cannot be made, breaks, times out or
answers nonsense leaves every recipient not yet answered for temporary: the
message stays on the server and is tried again on the next poll.

Site file::

    [delivery]
    plugin = "lmtp"
    host = "127.0.0.1"
    port = 24                              # the default
    # or, instead of host and port, a Unix socket (relative to the site file's folder):
    # socket = "/var/run/dovecot/lmtp"
    timeout = "30s"                        # to connect, and for each reply or write
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import NamedTuple

from rpopcore import errors
from rpopcore.config.schema import Key, duration, integer, read_table, string
from rpopcore.hookspecs import hookimpl
from rpopcore.model import Outcome, RecipientOutcome

#: Longest reply line accepted (RFC 5321 allows 512; servers are generous).
LINE_LIMIT = 1 << 16


class _Broken(Exception):
    """The session cannot go on: what is not decided yet is temporary."""


class _Reply(NamedTuple):
    code: int
    lines: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".rstrip()


def outcome_of(code: int) -> Outcome:
    """2xx delivered, 5xx permanent, anything else (4xx, a stray 3xx) temporary."""
    if 200 <= code < 300:
        return Outcome.DELIVERED
    if 500 <= code < 600:
        return Outcome.PERMANENT
    return Outcome.TEMPORARY


class DataEncoder:
    """Turns message bytes held with LF line endings into the DATA stream:
    CRLF line endings, a dot doubled at the start of a line (RFC 5321
    4.5.2), and the final ``.`` line.  Chunks may split lines anywhere,
    CRLF included; an existing CRLF is kept as one line ending, a lone CR
    is passed through."""

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


def path_of(address: str) -> bytes | None:
    """``<address>`` for MAIL FROM / RCPT TO, or None when the address cannot
    be written there (a control character or an angle bracket would let it
    break out of the command)."""
    if any(ord(c) < 0x20 or c in "<>\x7f" for c in address):
        return None
    return b"<" + address.encode("utf-8", "surrogateescape") + b">"


class _Session:
    """One LMTP connection: writes with a deadline, reads whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float, label: str):
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.label = label

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def reply(self) -> _Reply:
        lines: list[str] = []
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    line = await self.reader.readline()
            except ValueError:  # longer than LINE_LIMIT
                raise _Broken(f"a reply line longer than {LINE_LIMIT} bytes") from None
            if not line.endswith(b"\n"):
                raise _Broken("the server closed the connection")
            code, sep = line[:3], line[3:4]
            if not code.isdigit() or sep not in (b" ", b"-", b"\r", b"\n"):
                raise _Broken(f"not an LMTP reply: {line[:80]!r}")
            lines.append(line[4:].strip().decode("utf-8", "replace"))
            if sep != b"-":
                return _Reply(int(code), tuple(lines))

    async def close(self, polite: bool) -> None:
        try:
            if polite:
                await self.send(b"QUIT\r\n")
                await self.reply()
        except (OSError, TimeoutError, _Broken):
            pass  # every outcome is decided already
        finally:
            self.writer.close()
            try:
                async with asyncio.timeout(self.timeout):
                    await self.writer.wait_closed()
            except (OSError, TimeoutError):
                pass


class LmtpAgent:
    """Delivers over LMTP to ``(host, port)`` or to a Unix socket ``path``."""

    def __init__(self, *, host: str = "", port: int = 24, path: Path | None = None, timeout: float = 30,
                 lhlo_name: str | None = None):
        self.host = host
        self.port = port
        self.path = path
        self.timeout = timeout
        self.lhlo_name = lhlo_name or socket.gethostname() or "localhost"
        self.label = f"LMTP server {path}" if path is not None else f"LMTP server {host}:{port}"

    async def deliver(self, message, envelope, recipients):
        recipients = list(recipients)
        decided: dict[int, RecipientOutcome] = {}
        sender = path_of(envelope.sender)
        if sender is None:
            detail = f"the sender {envelope.sender!r} cannot be written in MAIL FROM"
            return [RecipientOutcome(r, Outcome.PERMANENT, detail) for r in recipients]
        paths: dict[int, bytes] = {}
        for i, recipient in enumerate(recipients):
            path = path_of(recipient.address)
            if path is None:
                decided[i] = RecipientOutcome(
                    recipient, Outcome.PERMANENT, f"{recipient.address!r} cannot be written in RCPT TO")
            else:
                paths[i] = path
        detail = ""
        if paths:
            try:
                await self._session(message, envelope, sender, recipients, paths, decided)
            except ConnectionRefusedError as exc:
                detail = f"cannot connect to the {self.label}: {exc.strerror or exc}"
            except TimeoutError:
                detail = f"the {self.label} did not answer within {self.timeout}s"
            except (OSError, _Broken) as exc:
                detail = f"{self.label}: {_describe(exc)}"
        return [decided.get(i) or RecipientOutcome(r, Outcome.TEMPORARY, detail or "no reply")
                for i, r in enumerate(recipients)]

    async def _connect(self) -> _Session:
        async with asyncio.timeout(self.timeout):
            if self.path is not None:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=LINE_LIMIT)
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=LINE_LIMIT)
        return _Session(reader, writer, self.timeout, self.label)

    async def _session(self, message, envelope, sender, recipients, paths, decided) -> None:
        session = await self._connect()
        polite = False
        try:
            polite = await self._transaction(session, message, envelope, sender, recipients, paths, decided)
        finally:
            await session.close(polite)

    async def _transaction(self, session, message, envelope, sender, recipients, paths, decided) -> bool:
        """Fill ``decided``; True when the session may end with QUIT."""

        def decide(indexes, reply: _Reply) -> None:
            for i in indexes:
                decided[i] = RecipientOutcome(recipients[i], outcome_of(reply.code), f"{self.label}: {reply}")

        greeting = await session.reply()
        if greeting.code != 220:
            raise _Broken(f"greeted with {greeting}")
        await session.send(b"LHLO " + self.lhlo_name.encode("ascii", "replace") + b"\r\n")
        lhlo = await session.reply()
        if lhlo.code != 250:
            raise _Broken(f"LHLO answered {lhlo}")
        offered = {line.split()[0].upper() for line in lhlo.lines[1:] if line.split()}

        mail = b"MAIL FROM:" + sender + (b" BODY=8BITMIME" if "8BITMIME" in offered else b"") + b"\r\n"
        rcpts = {i: b"RCPT TO:" + path + b"\r\n" for i, path in paths.items()}
        accepted: list[int] = []
        if "PIPELINING" in offered:
            await session.send(mail + b"".join(rcpts.values()) + b"DATA\r\n")
            mail_reply = await session.reply()
            mail_ok = mail_reply.code // 100 == 2
            if not mail_ok:
                decide(rcpts, mail_reply)
            for i in rcpts:
                reply = await session.reply()
                if not mail_ok:
                    continue  # these only say "need MAIL first"
                if reply.code // 100 == 2:
                    accepted.append(i)
                else:
                    decide([i], reply)
            data_reply = await session.reply()
            if data_reply.code == 354 and not accepted:
                return False  # a confused server waits for data: hang up instead
        else:
            await session.send(mail)
            mail_reply = await session.reply()
            if mail_reply.code // 100 != 2:
                decide(rcpts, mail_reply)
                return True
            for i, command in rcpts.items():
                await session.send(command)
                reply = await session.reply()
                if reply.code // 100 == 2:
                    accepted.append(i)
                else:
                    decide([i], reply)
            if not accepted:
                return True
            await session.send(b"DATA\r\n")
            data_reply = await session.reply()
        if not accepted:
            return True
        if data_reply.code != 354:
            decide(accepted, data_reply)
            return True

        encoder = DataEncoder()
        # The server adds Return-Path and Delivered-To: no trace fields here.
        for chunk in message.chunks(envelope.remove_fields, b""):
            data = encoder.feed(chunk)
            if data:
                await session.send(data)
        await session.send(encoder.finish())
        for i in accepted:  # RFC 2033 4.2: one reply per accepted RCPT, in order
            decide([i], await session.reply())
        return True

    async def close(self) -> None:
        pass  # each deliver() closes its own connection


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"connection failed: {exc.strerror or exc}"
    return str(exc)


def _port(value) -> int:
    port = integer(value)
    if not 0 < port < 65536:
        raise ValueError(f"expected a port number from 1 to 65535, got {port}")
    return port


def _timeout(value) -> int:
    seconds = duration(value)
    if seconds == 0:
        raise ValueError("must be at least 1s; a delivery cannot wait forever")
    return seconds


def make_agent(options, base_dir: Path) -> LmtpAgent:
    """The ``[delivery]`` table (without ``plugin``) -> an :class:`LmtpAgent`."""
    values = read_table(
        dict(options),
        {
            "host": Key(string, ""),
            "port": Key(_port, 24),
            "socket": Key(string, ""),
            "timeout": Key(_timeout, 30),
        },
        "[delivery]",
    )
    host, path = values["host"].strip(), values["socket"].strip()
    if host and path:
        raise errors.ConfigError("[delivery] key 'socket': give either host (and port) or socket, not both")
    if "port" in options and not host:
        raise errors.ConfigError("[delivery] key 'port': a port needs a host; for a Unix socket give socket alone")
    if not host and not path:
        raise errors.ConfigError(
            "[delivery] key 'host' is missing; give host (and port) of the LMTP server, or socket for a Unix socket")
    if path:
        return LmtpAgent(path=base_dir / path, timeout=values["timeout"])
    return LmtpAgent(host=host, port=values["port"], timeout=values["timeout"])


@hookimpl
def rpop_delivery_agents():
    return {"lmtp": make_agent}
