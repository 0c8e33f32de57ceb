"""Delivery to an SMTP relay or MTA (RFC 5321), which takes the message on
for its recipients.  The core also uses this plugin as the outbound relay
(``[bounces] relay``) for non-local recipients and delivery status
notifications.

The client is :class:`rpopcore.smtp.client.SmtpClient`; one session per
message: EHLO (HELO for a server that does not know EHLO), STARTTLS and EHLO
again when asked for, AUTH when credentials are given, MAIL FROM with the
envelope sender, one RCPT TO per recipient, DATA, the message, QUIT.

When the server offers DSN (RFC 3461), each RCPT says when the relay may
report: ``NOTIFY=FAILURE`` for a recipient whose failure is to be reported
(``Recipient.report_failure``), ``NOTIFY=NEVER`` for the others, and
``ORCPT=rfc822;<original>`` when the original address is known.

A relay is not a final delivery: the copy gets no Return-Path or
Delivered-To, and leaves out the fields named in the envelope's
``remove_fields`` (always Return-Path).

Outcomes (see :mod:`rpopcore.smtp.delivery`): a RCPT refused with 5xx is
permanent for that recipient, with 4xx temporary; the one reply after the
data decides every accepted recipient (2xx delivered, 5xx permanent, else
temporary); a 5xx to MAIL FROM decides them all.  Whatever stops the session early -- no connection, a timeout,
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

import socket
import ssl
from pathlib import Path

from rpopcore.api import (
    ConfigError,
    Key,
    boolean,
    delivery_timeout,
    hookimpl,
    is_loopback_host,
    port,
    read_table,
    string,
)


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

    async def deliver(self, message, envelope, recipients):
        # Imported here: every rpop command loads this plugin, and the SMTP
        # client is needed only by a site that delivers or relays through it.
        from rpopcore.api import SmtpClient, ConnectOptions, smtp_deliver

        # pipelining=False: one command at a time towards a relay, as this
        # plugin has always spoken; turning PIPELINING on is a change of its own.
        client = SmtpClient(ConnectOptions(host=self.host, port=self.port, timeout=self.timeout, hello_name=self.helo,
                                           tls_context=self.tls, username=self.username, password=self._password,
                                           pipelining=False))
        return await smtp_deliver(client, message, envelope, recipients, dsn=True)

    async def close(self) -> None:
        pass  # each deliver() closes its own connection


def make_agent(options, base_dir: Path) -> SmtpAgent:
    """The ``[delivery]`` table (without ``plugin``) -> an :class:`SmtpAgent`."""
    values = read_table(
        dict(options),
        {
            "host": Key(string),
            "port": Key(port, 25),
            "starttls": Key(boolean, False),
            "ca_file": Key(string, ""),
            "tls_verify": Key(boolean, True),
            "username": Key(string, ""),
            "password": Key(string, ""),
            "helo": Key(string, ""),
            "timeout": Key(delivery_timeout, 30),
        },
        "[delivery]",
    )
    host = values["host"].strip()
    if not host:
        raise ConfigError("[delivery] key 'host': must not be empty; name the SMTP relay")
    if bool(values["username"]) != bool(values["password"]):
        missing = "password" if values["username"] else "username"
        raise ConfigError(f"[delivery] key '{missing}' is missing; AUTH needs both username and password")
    if values["username"] and not values["starttls"] and not is_loopback_host(host):
        raise ConfigError(
            "[delivery] key 'username': set starttls = true, or the password crosses the network in clear text")
    if not values["starttls"]:
        for key in ("ca_file", "tls_verify"):
            if key in options:
                raise ConfigError(f"[delivery] key '{key}': only means something with starttls = true")
    helo = values["helo"].strip()
    if any(c.isspace() or not c.isprintable() for c in helo):
        raise ConfigError(f"[delivery] key 'helo': {helo!r} is not a host name")
    tls = None
    if values["starttls"]:
        ca_file = base_dir / values["ca_file"] if values["ca_file"] else None
        try:
            tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"[delivery] key 'ca_file': cannot load {ca_file}: {getattr(exc, 'strerror', None) or exc}") from None
        if not values["tls_verify"]:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    return SmtpAgent(host=host, port=values["port"], tls=tls, username=values["username"],
                     password=values["password"], helo=helo, timeout=values["timeout"])


@hookimpl
def rpop_delivery_agents():
    return {"smtp": make_agent}
