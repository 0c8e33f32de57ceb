"""Small probes tests use to look at what happened: a server's CAPA answer
read with a raw socket, and rpop's own client lines from the log."""

from __future__ import annotations

import socket


def capa(host: str, port: int) -> list[str]:
    """The CAPA lines a POP3 server offers before login."""
    with socket.create_connection((host, port), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()  # greeting
        s.sendall(b"CAPA\r\n")
        f.readline()  # +OK
        lines = []
        while (line := f.readline()) not in (b".\r\n", b""):
            lines.append(line.decode().strip())
        return lines


def client_lines(caplog) -> list[str]:
    """What rpop sent, as its protocol log shows it (secrets redacted)."""
    return [r.getMessage().split("] ", 1)[1] for r in caplog.records if "] C: " in r.getMessage()]
