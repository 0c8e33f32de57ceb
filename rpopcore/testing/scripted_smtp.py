"""Scripted SMTP and LMTP servers: they answer as told and record what they
got, for what real servers will not do on demand (no PIPELINING, a refused
sender, a connection that drops between the per-recipient replies,
silence).  As with the clients, LMTP is a small subclass."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest


class ScriptedSmtp:
    """An SMTP server that answers as told and records what it got.

    ``replies`` maps a command's first word (or ``MAIL``/``RCPT <address>``)
    to the reply; ``after_data`` are the lines sent after the final dot
    (default: :meth:`saved`), and ``hang_up`` closes the connection after
    them.  ``greeting=None`` is a server that never says a word."""

    HELLO = "EHLO"

    def __init__(self, *, extensions=("PIPELINING", "8BITMIME"), replies=None, after_data=None,
                 hang_up=False, greeting=b"220 scripted\r\n"):
        self.extensions = extensions
        self.replies = dict(replies or {})
        self.after_data = after_data
        self.hang_up = hang_up
        self.greeting = greeting
        self.commands: list[str] = []
        self.data: bytes | None = None
        self.server = None

    def saved(self, accepted: int) -> list[str]:
        """The lines after the data unless ``after_data`` says: one reply."""
        return ["250 2.0.0 queued"]

    async def serve(self, reader, writer):
        try:
            if self.greeting is None:
                await asyncio.sleep(3600)
            writer.write(self.greeting)
            accepted = 0
            while line := await reader.readline():
                command = line.decode().rstrip("\r\n")
                self.commands.append(command)
                verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == self.HELLO and verb not in self.replies:
                    writer.write(b"".join(b"250-%s\r\n" % e.encode() for e in ("scripted",) + self.extensions[:-1])
                                 + b"250 %s\r\n" % (self.extensions[-1] if self.extensions else "ok").encode())
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                elif verb == "RCPT":
                    address = command.split("<", 1)[1].split(">", 1)[0]
                    reply = self.replies.get(f"RCPT {address}", "250 2.1.5 ok")
                    accepted += reply.startswith("2")
                    writer.write(reply.encode() + b"\r\n")
                elif verb == "DATA":
                    reply = self.replies.get("DATA", "354 go ahead" if accepted else "503 no valid recipients")
                    writer.write(reply.encode() + b"\r\n")
                    if reply.startswith("354"):
                        chunks = []
                        while (line := await reader.readline()) != b".\r\n":
                            if not line:
                                return
                            chunks.append(line)
                        self.data = b"".join(chunks)
                        after = self.after_data if self.after_data is not None else self.saved(accepted)
                        writer.write(b"".join(a.encode() + b"\r\n" for a in after))
                        if self.hang_up:
                            break
                else:
                    writer.write(self.replies.get(verb, "250 2.1.0 ok").encode() + b"\r\n")
                await writer.drain()
        finally:
            writer.close()

    async def start(self, path: Path | None = None):
        if path is None:
            self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        else:
            self.server = await asyncio.start_unix_server(self.serve, str(path))
        return self

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()


class ScriptedLmtp(ScriptedSmtp):
    """The LMTP server: LHLO, and one reply per accepted RCPT after the data."""

    HELLO = "LHLO"

    def saved(self, accepted: int) -> list[str]:
        return ["250 2.0.0 saved"] * accepted


@pytest.fixture
async def scripted():
    """A factory: ``await scripted(ScriptedSmtp or ScriptedLmtp, **options)``
    -> a server on 127.0.0.1, stopped after the test."""
    servers = []

    async def start(kind=ScriptedSmtp, **kwargs):
        server = await kind(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
