"""The values that cross the hooks: records, settings, the local directory,
envelopes and delivery outcomes.

All are frozen attrs classes: a value is checked once, when it is made (when a
file is read, when a form is submitted), and cannot change afterwards.
"""

from __future__ import annotations

import datetime as _dt
import enum
import ipaddress
from typing import Mapping

import attrs

from rpopcore import activity
from rpopcore.durations import parse_duration


# --- module settings -------------------------------------------------------

LOG_LEVELS = ("none", "major", "problems", "low-level", "all")


def _valid_schedule(_inst, _attribute, value):
    activity.parse_schedule(value)


def _valid_zone(_inst, _attribute, value):
    activity.zone(value)


def _non_negative(_inst, attribute, value):
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


@attrs.frozen
class ModuleSettings:
    """The RPOP module settings (the seed's "Configuring the RPOP module").

    Durations are whole seconds.  Defaults are what an installation starts
    with; ``rpop settings`` shows both.
    """

    processors: int = attrs.field(default=10, validator=_non_negative)
    delay_failed_hosts: int = attrs.field(default=600, converter=parse_duration)
    delay_failed_accounts: int = attrs.field(default=600, converter=parse_duration)
    min_poll_period_for_users: int = attrs.field(default=600, converter=parse_duration)
    max_accounts_per_user: int = attrs.field(default=5, validator=_non_negative)
    use_apop: bool = True
    allow_self_poll: bool = False
    own_addresses: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    default_ip_address: str = ""
    use_domain_ip_addresses: bool = False
    activity_schedule: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_valid_schedule)
    time_zone: str = attrs.field(default="UTC", validator=_valid_zone)
    log_level: str = attrs.field(default="problems", validator=attrs.validators.in_(LOG_LEVELS))
    timeout: int = attrs.field(default=30, converter=parse_duration)
    max_status_line: int = attrs.field(default=65536, validator=_non_negative)


# --- the local directory ---------------------------------------------------


@attrs.frozen
class Domain:
    """A local domain: its accounts, aliases (alias -> account) and assigned
    IP addresses (the first is the source address when
    ``use_domain_ip_addresses`` is on)."""

    name: str = attrs.field(converter=str.lower)
    main: bool = False
    accounts: frozenset[str] = attrs.field(
        factory=frozenset, converter=lambda xs: frozenset(x.lower() for x in xs)
    )
    aliases: Mapping[str, str] = attrs.field(
        factory=dict, converter=lambda m: {k.lower(): v.lower() for k, v in dict(m).items()}
    )
    ip_addresses: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: The seed's "right to specify remote POP accounts": whether the
    #: domain's users may keep remote accounts of their own in the web
    #: pages, and per account (``{"bob": False}``) where it differs.
    users_may_poll: bool = False
    account_may_poll: Mapping[str, bool] = attrs.field(
        factory=dict, converter=lambda m: {k.lower(): bool(v) for k, v in dict(m).items()}
    )

    def may_poll(self, account: str) -> bool:
        """Whether ``account`` (the local part) may keep remote accounts."""
        return self.account_may_poll.get(account.lower(), self.users_may_poll)


@attrs.frozen
class Directory:
    """Every local domain.  Exactly one is the main domain when any exist."""

    domains: tuple[Domain, ...] = attrs.field(default=(), converter=tuple)

    def domain(self, name: str) -> Domain | None:
        name = name.lower()
        for domain in self.domains:
            if domain.name == name:
                return domain
        return None

    @property
    def main_domain(self) -> Domain | None:
        for domain in self.domains:
            if domain.main:
                return domain
        return self.domains[0] if self.domains else None


# --- remote account records ------------------------------------------------


class RecordKind(str, enum.Enum):
    REMOTE = "remote"  # a remote mailbox polled for one local user
    UNIFIED = "unified"  # a Unified Domain-Wide Account


@attrs.frozen
class SecretRef:
    """Where a record's secret comes from.

    ``stored``: ``value`` is a Fernet token encrypted with the site key;
    ``env``: ``value`` names an environment variable; ``file``: ``value`` is a
    path whose first line is the secret; ``none``: no secret.
    """

    source: str = attrs.field(default="none", validator=attrs.validators.in_(("stored", "env", "file", "none")))
    value: str = attrs.field(default="", repr=False)


def split_host(host: str, tls: bool, default_port: int | None = None) -> tuple[str, int]:
    """``pop.example.com:1110`` -> (name, port); the port defaults to
    ``default_port``, else 110, or 995 for implicit TLS.  IPv6 literals go in
    brackets: ``[::1]:1110``."""
    host = host.strip()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""
    if not name:
        raise ValueError("the host name is empty")
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"port {port!r} is not a number from 1 to 65535")
        return name, int(port)
    if default_port is not None:
        return name, default_port
    return name, 995 if tls else 110


def check_host(host: str) -> None:
    """Refuse a ``host`` a person mistyped, saying what to write instead
    (ValueError): a URL, a space, an unclosed or misused ``[``, more than one
    port, a character no host name has.  :func:`split_host` stays lenient, so
    that a record stored before this check still loads; this is the check
    made where a person writes a host (a declarative file)."""
    text = host.strip()
    scheme, is_url, rest = text.partition("://")
    if is_url:
        bare = rest.split("/", 1)[0] or "pop.isp.example"
        fix = f"drop '{scheme}://' and write host = \"{bare}\""
        if scheme.lower() == "pop3s":
            fix += " with tls = true"
        else:
            fix += " (and tls = true for pop3s)"
        raise ValueError(f"{host!r} is a URL; {fix}")
    if any(c.isspace() for c in text):
        raise ValueError(f"{host!r} contains a space; write one host name, like \"pop.isp.example\" or \"pop.isp.example:995\"")
    if text.startswith("["):
        inside, closed, after = text[1:].partition("]")
        if not closed:
            raise ValueError(f"{host!r} has no closing ']'; write an IPv6 address as \"[{inside}]\" or \"[{inside}]:995\"")
        if not _is_ipv6(inside):
            raise ValueError(f"{host!r}: brackets hold an IPv6 address, and {inside!r} is none; "
                             f"write a host name without brackets, like \"{inside}{after or ':995'}\"")
        if after and not after.startswith(":"):
            raise ValueError(f"{host!r}: {after!r} after ']'; write \"[{inside}]\" or \"[{inside}]:995\"")
    elif text.count(":") > 1 and not _is_ipv6(text):
        name, port = text.split(":")[:2]
        raise ValueError(f"{host!r} has more than one ':'; write one port, like \"{name}:{port}\", "
                         "or an IPv6 address in brackets, like \"[2001:db8::1]:995\"")
    try:
        name, _port = split_host(text, tls=False)
    except ValueError as exc:
        raise ValueError(f"{exc}; write host or host:port") from None
    if text.endswith(":"):
        raise ValueError(f"{host!r} ends in ':' without a port; write \"{text[:-1]}\" or \"{text}995\"")
    if _is_ipv6(name):
        return
    if "@" in name:
        raise ValueError(f"{host!r} contains '@'; the user name goes in account, and host is the server alone, "
                         f"like \"{name.rpartition('@')[2]}\"")
    odd = next((c for c in name if not (c.isalnum() or c in ".-_")), None)
    if odd is not None:
        raise ValueError(f"{host!r}: {odd!r} is not part of a host name; write a name like \"pop.isp.example\", "
                         "with \":PORT\" if the port is not the usual one")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def mailbox_identity(account: str, host_name: str) -> str:
    """``account@host`` with the host name in lower case and without a
    trailing dot: what :attr:`RemoteRecord.mailbox` is, for code that knows
    a mailbox but has no record (an import of another tool's UID file)."""
    return f"{account}@{host_name.lower().rstrip('.')}"


@attrs.frozen
class RemoteRecord:
    """One remote mailbox to poll (a row of the seed's account tables).

    ``id`` is given by the state store.  ``poll_every`` is seconds, or None for
    "disabled" (kept, never polled by the scheduler).  ``owner`` is the local
    address mail goes to for per-user records and None for unified ones.
    """

    kind: RecordKind = attrs.field(converter=RecordKind)
    account: str
    host: str
    id: int | None = None
    owner: str | None = None
    poll_every: int | None = 600
    secret: SecretRef = attrs.field(factory=SecretRef, repr=False)
    leave: bool = True
    apop: bool = False
    tls: bool = False
    tls_verify: bool = True
    ca_file: str = ""
    server_name: str = ""
    starttls: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "required", "never")))
    auth: str = "auto"
    timeout: int | None = None
    special_field: str = ""
    dedupe: bool = True
    set_by: str = attrs.field(default="admin", validator=attrs.validators.in_(("admin", "user")))
    options: Mapping[str, object] = attrs.field(factory=dict, repr=False)

    def __attrs_post_init__(self):
        split_host(self.host, self.tls)  # validates
        if self.kind is RecordKind.REMOTE and not self.owner:
            raise ValueError("a per-user record needs an owner")

    @property
    def address(self) -> tuple[str, int]:
        """(host name, port) to connect to."""
        return split_host(self.host, self.tls)

    @property
    def name(self) -> str:
        """The server's name for TLS verification and mechanism selection:
        ``server_name`` when set (connecting to an address that is not the
        server's name), else the host name."""
        return self.server_name or self.address[0]

    @property
    def mailbox(self) -> str:
        """The remote mailbox's identity: the account at the host name, without
        the port (``alice.smith@pop.isp.example``).  It identifies a record
        across applies, and the UID memory belongs to it, not to a row: the
        same mailbox reached over another port or TLS mode, with another
        password or period, or removed and added back, is not retrieved again.
        One mailbox is one record."""
        return mailbox_identity(self.account, self.address[0])


# --- status ----------------------------------------------------------------


@attrs.frozen
class PollStatus:
    """The outcome of the latest poll of a record (the seed's "Last" field):
    ``last_success`` is when the latest successful poll ended; ``error`` is the
    code of the latest attempt when it failed, else None."""

    record_id: int
    last_success: _dt.datetime | None = None
    last_attempt: _dt.datetime | None = None
    error: str | None = None
    detail: str = ""
    #: Messages retrieved by the latest poll, and by every poll of the
    #: record since it was added.
    retrieved: int = 0
    retrieved_total: int = 0


@attrs.frozen
class PlanEntry:
    """A record as the daemon's planning reads it from a state store: when
    a daemon last worked out it is next due (``planned_for``; None when it
    has not since the record, its status or the module settings changed),
    and the *stamp* that changes with each of those, so that a plan worked
    out from what was read is never written over a newer change."""

    record: RemoteRecord
    planned_for: _dt.datetime | None
    stamp: int


# --- the web interface -------------------------------------------------------


@attrs.frozen
class WebSession:
    """A signed-in browser.  ``key`` is a digest of the token in its cookie
    (the store never holds a token a stolen copy of it could replay);
    ``csrf`` is the token every form of the session carries; ``address`` is
    the local account signed in; ``expires`` is an aware time."""

    key: str
    address: str
    csrf: str = attrs.field(repr=False)
    expires: _dt.datetime


# --- envelopes and delivery ------------------------------------------------


@attrs.frozen
class Recipient:
    """One envelope recipient.

    ``address`` is where delivery goes: the final local address
    (``localpart@domain`` with aliases resolved) or, for relayed mail, a
    remote one.  ``original`` is the address as the message named it (RFC 3464
    Original-Recipient).  ``report_failure`` is the seed's "report on failure"
    flag: only such recipients ever cause a delivery status notification.
    ``local`` is False for an address outside the local domains (relayed, if
    a relay is configured).  ``failure`` is set when the strategy already
    knows delivery must fail permanently (an unknown account of a local
    domain): no delivery is tried, and a report follows if one is due.
    """

    address: str
    report_failure: bool = False
    original: str = ""
    local: bool = True
    failure: str = ""

    @property
    def localpart(self) -> str:
        local, at, _ = self.address.rpartition("@")
        return local if at else self.address

    @property
    def domain(self) -> str:
        _, at, domain = self.address.rpartition("@")
        return domain if at else ""


@attrs.frozen
class Envelope:
    """The rebuilt SMTP envelope: ``sender`` ("" is the null sender ``<>``)
    and the recipients.  ``remove_fields`` names header fields to strip from
    the delivered copy (always Return-Path; the special field for unified
    records)."""

    sender: str
    recipients: tuple[Recipient, ...] = attrs.field(converter=tuple)
    remove_fields: frozenset[str] = attrs.field(
        default=frozenset({"return-path"}), converter=lambda xs: frozenset(x.lower() for x in xs) | {"return-path"}
    )


class Outcome(str, enum.Enum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"  # try again later: the message stays on the server
    PERMANENT = "permanent"  # will never succeed for this recipient


@attrs.frozen
class RecipientOutcome:
    """What happened to one recipient of one message."""

    recipient: Recipient
    outcome: Outcome
    detail: str = ""


@attrs.frozen
class PendingCopy:
    """A copy of a message journaled in the state store just before its
    delivery agent makes it visible (see :mod:`rpopcore.journal`);
    ``mailbox`` and ``uid`` say which message (:attr:`RemoteRecord.mailbox`).

    ``token`` is the agent's name for the copy (a Maildir file name), by
    which it can tell after a crash whether the copy became visible.
    ``completes``: when this copy and the others journaled with it become
    visible, every recipient of the message is complete, so the UID counts
    as remembered; otherwise only these recipients do.
    """

    mailbox: str
    uid: str
    recipient: str
    token: str
    completes: bool = True


@attrs.frozen
class PollResult:
    """What one poll of one record did (``poll --json`` prints these)."""

    record_id: int
    retrieved: int = 0
    delivered: int = 0
    error: str | None = None
    detail: str = ""


@attrs.frozen
class WorkerInfo:
    """A live process polling through a shared state store (``rpop run``
    or ``rpop poll``): where it runs, since when, and how many records it
    is polling now (``polling``) of the ``processors`` it may."""

    name: str
    host: str
    pid: int
    role: str
    started: _dt.datetime
    processors: int
    polling: int
