"""Delivery to an SMTP relay or MTA (RFC 5321), which takes the message on
for its recipients.  The core also uses this plugin as the outbound relay
(``[bounces] relay``) for non-local recipients and delivery status
notifications.

One connection per ``deliver()`` call: EHLO (HELO for a server that does
not know EHLO), STARTTLS and EHLO again when asked for, AUTH when
credentials are given, MAIL FROM with the envelope sender, one RCPT TO per
recipient, DATA, the message, QUIT.  The agent is shared by every record
polled at once; a connection per message keeps one record's trouble away
from the others.  ``close()`` has no connection left to close.

When the server offers DSN (RFC 3461), each RCPT says when the relay may
report: ``NOTIFY=FAILURE`` for a recipient whose failure is to be reported
(``Recipient.report_failure``), ``NOTIFY=NEVER`` for the others, and
``ORCPT=rfc822;<original>`` when the original address is known.

A relay is not a final delivery: the copy gets no Return-Path or
Delivered-To, and leaves out the fields named in the envelope's
``remove_fields`` (always Return-Path).  Lines go out with CRLF endings and
dot-stuffed, chunk by chunk.

Outcomes: a RCPT refused with 5xx is permanent for that recipient, with 4xx
temporary; the one reply after the data decides every accepted recipient
(2xx delivered, 5xx permanent, else temporary); a 5xx to MAIL FROM decides
them all.  Whatever stops the session early -- no connection, a timeout,
STARTTLS not offered or failing, credentials refused -- leaves every
recipient not yet decided temporary: the message stays on the server.

Site file::

    [delivery]
    plugin = "smtp"
    host = "relay.example.net"
    port = 25                  # the default
    starttls = false           # true: STARTTLS first, certificate verified; never falls back to clear text
    ca_file = ""               # CA certificates (PEM) to verify the relay with; default: the system's
    tls_verify = true
    username = ""              # with password: AUTH PLAIN (or LOGIN) after EHLO; needs starttls
    password = ""              #   unless the relay is on this machine
    helo = ""                  # the name to greet with; default: this host's name
    timeout = "30s"            # to connect, and for each reply or write
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import NamedTuple

from rpopcore import errors
from rpopcore.config.schema import Key, boolean, duration, integer, read_table, string
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


def xtext(text: str) -> str:
    """RFC 3461 4: printable ASCII but ``+`` and ``=`` as is, the rest ``+XX``."""
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in text.encode("utf-8", "surrogateescape")
    )


class _Session:
    """One SMTP connection: writes with a deadline, reads whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

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
                raise _Broken(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:].strip().decode("utf-8", "replace"))
            if sep != b"-":
                return _Reply(int(code), tuple(lines))

    async def command(self, line: str | bytes) -> _Reply:
        await self.send((line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line) + b"\r\n")
        return await self.reply()

    async def close(self, polite: bool) -> None:
        try:
            if polite:
                await self.command("QUIT")
        except (OSError, TimeoutError, _Broken):
            pass  # every outcome is decided already
        finally:
            self.writer.close()
            try:
                async with asyncio.timeout(self.timeout):
                    await self.writer.wait_closed()
            except (OSError, TimeoutError):
                pass


class SmtpAgent:
    """Delivers to the SMTP server at ``(host, port)``."""

    def __init__(self, *, host: str, port: int = 25, tls: ssl.SSLContext | None = None,
                 username: str = "", password: str = "", helo: str = "", timeout: float = 30):
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self._password = password
        self.helo = helo or socket.getfqdn() or "localhost"
        self.timeout = timeout
        self.label = f"SMTP server {host}:{port}"

    async def deliver(self, message, envelope, recipients):
        recipients = list(recipients)
        decided: dict[int, RecipientOutcome] = {}
        sender = path_of(envelope.sender)
        if sender is None:
            detail = f"the sender {envelope.sender!r} cannot be written in MAIL FROM"
            return [RecipientOutcome(r, Outcome.PERMANENT, detail) for r in recipients]
        for i, recipient in enumerate(recipients):
            if path_of(recipient.address) is None:
                decided[i] = RecipientOutcome(
                    recipient, Outcome.PERMANENT, f"{recipient.address!r} cannot be written in RCPT TO")
        detail = "no reply"
        if len(decided) < len(recipients):
            try:
                await self._session(message, envelope, sender, recipients, decided)
            except ConnectionRefusedError as exc:
                detail = f"cannot connect to the {self.label}: {exc.strerror or exc}"
            except TimeoutError:
                detail = f"the {self.label} did not answer within {self.timeout}s"
            except ssl.SSLError as exc:
                detail = f"{self.label}: TLS failed: {getattr(exc, 'verify_message', None) or exc.reason or exc}"
            except OSError as exc:
                detail = f"{self.label}: connection failed: {exc.strerror or exc}"
            except _Broken as exc:
                detail = f"{self.label}: {exc}"
        return [decided.get(i) or RecipientOutcome(r, Outcome.TEMPORARY, detail) for i, r in enumerate(recipients)]

    async def _session(self, message, envelope, sender, recipients, decided) -> None:
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=LINE_LIMIT)
        session = _Session(reader, writer, self.timeout)
        polite = False
        try:
            polite = await self._transaction(session, message, envelope, sender, recipients, decided)
        finally:
            await session.close(polite)

    async def _hello(self, session: _Session) -> dict[str, str] | None:
        """EHLO -> ``{KEYWORD: parameters}``; None when only HELO worked."""
        reply = await session.command(f"EHLO {self.helo}")
        if reply.code == 250:
            offered = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                if keyword:
                    offered[keyword.upper()] = params.strip()
            return offered
        if reply.code in (500, 502) and self.tls is None and not self.username:
            reply = await session.command(f"HELO {self.helo}")
            if reply.code == 250:
                return None
        raise _Broken(f"refused the greeting: {reply}")

    async def _transaction(self, session, message, envelope, sender, recipients, decided) -> bool:
        """Fill ``decided``; True when the session may end with QUIT."""

        def decide(indexes, reply: _Reply) -> None:
            for i in indexes:
                decided[i] = RecipientOutcome(recipients[i], outcome_of(reply.code), f"{self.label}: {reply}")

        greeting = await session.reply()
        if greeting.code != 220:
            raise _Broken(f"greeted with {greeting}")
        offered = await self._hello(session)
        if self.tls is not None:
            if "STARTTLS" not in (offered or {}):
                raise _Broken("does not offer STARTTLS, and starttls = true; nothing is sent in clear text")
            reply = await session.command("STARTTLS")
            if reply.code != 220:
                raise _Broken(f"refused STARTTLS: {reply}")
            async with asyncio.timeout(self.timeout):
                await session.writer.start_tls(self.tls, server_hostname=self.host)
            offered = await self._hello(session)  # RFC 3207 4.2: forget what was said before TLS
        offered = offered or {}
        if self.username:
            await self._authenticate(session, offered.get("AUTH", "").upper().split())

        addresses = [envelope.sender] + [r.address for r in recipients]
        mail = b"MAIL FROM:" + sender
        if "8BITMIME" in offered:
            mail += b" BODY=8BITMIME"
        if "SMTPUTF8" in offered and not all(a.isascii() for a in addresses):
            mail += b" SMTPUTF8"
        reply = await session.command(mail)
        undecided = [i for i in range(len(recipients)) if i not in decided]
        if reply.code // 100 != 2:
            decide(undecided, reply)
            return True
        accepted = []
        for i in undecided:
            rcpt = b"RCPT TO:" + path_of(recipients[i].address)
            if "DSN" in offered:
                rcpt += self._dsn_parameters(recipients[i])
            reply = await session.command(rcpt)
            if reply.code // 100 == 2:
                accepted.append(i)
            else:
                decide([i], reply)
        if not accepted:
            return True
        reply = await session.command("DATA")
        if reply.code != 354:
            decide(accepted, reply)
            return True
        encoder = DataEncoder()
        # A relay is not the final delivery: no trace fields here.
        for chunk in message.chunks(envelope.remove_fields, b""):
            data = encoder.feed(chunk)
            if data:
                await session.send(data)
        await session.send(encoder.finish())
        decide(accepted, await session.reply())  # one reply for every accepted recipient
        return True

    @staticmethod
    def _dsn_parameters(recipient) -> bytes:
        params = " NOTIFY=FAILURE" if recipient.report_failure else " NOTIFY=NEVER"
        if recipient.original:
            params += f" ORCPT=rfc822;{xtext(recipient.original)}"
        return params.encode("ascii")

    async def _authenticate(self, session: _Session, mechanisms: list[str]) -> None:
        user, password = self.username.encode(), self._password.encode()
        if "PLAIN" in mechanisms:
            token = base64.b64encode(b"\0" + user + b"\0" + password)
            reply = await session.command(b"AUTH PLAIN " + token)
        elif "LOGIN" in mechanisms:
            reply = await session.command("AUTH LOGIN")
            for answer in (user, password):
                if reply.code != 334:
                    break
                reply = await session.command(base64.b64encode(answer))
        else:
            offered = " ".join(mechanisms) or "no AUTH at all"
            raise _Broken(f"offers {offered}; username is set, and only AUTH PLAIN or LOGIN is spoken here")
        if reply.code != 235:
            raise _Broken(f"refused the credentials of {self.username!r}: {reply}")

    async def close(self) -> None:
        pass  # each deliver() closes its own connection


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


def _on_this_machine(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_agent(options, base_dir: Path) -> SmtpAgent:
    """The ``[delivery]`` table (without ``plugin``) -> an :class:`SmtpAgent`."""
    values = read_table(
        dict(options),
        {
            "host": Key(string),
            "port": Key(_port, 25),
            "starttls": Key(boolean, False),
            "ca_file": Key(string, ""),
            "tls_verify": Key(boolean, True),
            "username": Key(string, ""),
            "password": Key(string, ""),
            "helo": Key(string, ""),
            "timeout": Key(_timeout, 30),
        },
        "[delivery]",
    )
    host = values["host"].strip()
    if not host:
        raise errors.ConfigError("[delivery] key 'host': must not be empty; name the SMTP relay")
    if bool(values["username"]) != bool(values["password"]):
        missing = "password" if values["username"] else "username"
        raise errors.ConfigError(f"[delivery] key '{missing}' is missing; AUTH needs both username and password")
    if values["username"] and not values["starttls"] and not _on_this_machine(host):
        raise errors.ConfigError(
            "[delivery] key 'username': set starttls = true, or the password crosses the network in clear text")
    if not values["starttls"]:
        for key in ("ca_file", "tls_verify"):
            if key in options:
                raise errors.ConfigError(f"[delivery] key '{key}': only means something with starttls = true")
    helo = values["helo"].strip()
    if any(c.isspace() or not c.isprintable() for c in helo):
        raise errors.ConfigError(f"[delivery] key 'helo': {helo!r} is not a host name")
    tls = None
    if values["starttls"]:
        ca_file = base_dir / values["ca_file"] if values["ca_file"] else None
        try:
            tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigError(
                f"[delivery] key 'ca_file': cannot load {ca_file}: {getattr(exc, 'strerror', None) or exc}") from None
        if not values["tls_verify"]:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    return SmtpAgent(host=host, port=values["port"], tls=tls, username=values["username"],
                     password=values["password"], helo=helo, timeout=values["timeout"])


@hookimpl
def rpop_delivery_agents():
    return {"smtp": make_agent}
