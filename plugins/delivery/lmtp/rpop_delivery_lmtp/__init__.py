"""Delivery over LMTP (RFC 2033) to a mail store such as Dovecot's
``dovecot-lmtpd``.

LMTP answers once per accepted recipient after the message data, so one
message can be delivered to alice and refused for bob.  The client is
:class:`rpopcore.smtp.client.LmtpClient`; one session per message (LHLO,
MAIL FROM, one RCPT TO per recipient, DATA, the message, QUIT), with the
commands up to DATA in one write when the server offers PIPELINING
(RFC 2920).  An LMTP server is local, so connecting costs little.

The server writes the trace fields itself: Return-Path from MAIL FROM, and
Delivered-To (Dovecot only when the transaction has a single recipient).
The copy sent leaves out the fields named in the envelope's
``remove_fields`` (always Return-Path) and adds none.

Outcomes per recipient (see :mod:`rpopcore.smtp.delivery`): a 2xx reply is
delivered, 5xx permanent, anything else temporary.  A 5xx to MAIL FROM or
to DATA decides every recipient not decided before.  A connection that
cannot be made, breaks, times out or answers nonsense leaves every
recipient not yet answered for temporary: the message stays on the server
and is tried again on the next poll.

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

import socket
from pathlib import Path

from rpopcore.api import ConfigError, Key, delivery_timeout, hookimpl, port, read_table, string


class LmtpAgent:
    """Delivers over LMTP to ``(host, port)`` or to a Unix socket ``path``."""

    def __init__(self, *, host: str = "", port: int = 24, path: Path | None = None, timeout: float = 30,
                 lhlo_name: str | None = None):
        self.host = host
        self.port = port
        self.path = path
        self.timeout = timeout
        self.lhlo_name = lhlo_name or socket.gethostname() or "localhost"

    async def deliver(self, message, envelope, recipients):
        # Imported here: every rpop command loads this plugin (see the SMTP one).
        from rpopcore.api import LmtpClient, ConnectOptions, smtp_deliver

        client = LmtpClient(ConnectOptions(host=self.host, port=self.port, socket=self.path, timeout=self.timeout,
                                           hello_name=self.lhlo_name))
        return await smtp_deliver(client, message, envelope, recipients)

    async def close(self) -> None:
        pass  # each deliver() closes its own connection


def make_agent(options, base_dir: Path) -> LmtpAgent:
    """The ``[delivery]`` table (without ``plugin``) -> an :class:`LmtpAgent`."""
    values = read_table(
        dict(options),
        {
            "host": Key(string, ""),
            "port": Key(port, 24),
            "socket": Key(string, ""),
            "timeout": Key(delivery_timeout, 30),
        },
        "[delivery]",
    )
    host, path = values["host"].strip(), values["socket"].strip()
    if host and path:
        raise ConfigError("[delivery] key 'socket': give either host (and port) or socket, not both")
    if "port" in options and not host:
        raise ConfigError("[delivery] key 'port': a port needs a host; for a Unix socket give socket alone")
    if not host and not path:
        raise ConfigError(
            "[delivery] key 'host' is missing; give host (and port) of the LMTP server, or socket for a Unix socket")
    if path:
        return LmtpAgent(path=base_dir / path, timeout=values["timeout"])
    return LmtpAgent(host=host, port=values["port"], timeout=values["timeout"])


@hookimpl
def rpop_delivery_agents():
    return {"lmtp": make_agent}
