"""What an import found in another tool's configuration, before it is
written out: one :class:`ImportedMailbox` per polled mailbox, the delivery
the old tool used, and a :class:`Note` for every option that has no rpop
equivalent.  The parsers (one module per tool) make these values; one writer
(:mod:`rpopcore.importers.writer`) turns them into a declarative file.
"""

from __future__ import annotations

from typing import Mapping

import attrs

from rpopcore.model import mailbox_identity, split_host


@attrs.frozen
class Note:
    """An option of the old configuration that the declarative file cannot
    say, or says differently: ``where`` is ``FILE:LINE`` (or ``FILE:
    [section]``), ``option`` the text as written, ``why`` what rpop does
    instead."""

    where: str
    option: str
    why: str

    def line(self) -> str:
        return f"{self.where}: '{self.option}': {self.why}"


@attrs.frozen
class ImportedMailbox:
    """One remote mailbox the old tool polled.

    ``owner`` is the local address mail goes to (a per-user ``[[remote]]``),
    or None for a domain mailbox (``[[unified]]``), whose local users are
    ``accounts`` of the local ``domains``.  ``poll_every`` None is rpop's
    default period; ``disabled`` keeps the record without polling it.  ``host`` is ``name`` or ``name:port``.
    ``password`` is the secret as the old file held it, or None;
    ``password_command`` a command the old tool ran to get it (rpop has no
    such source: it becomes a note).
    """

    source: str  # FILE:LINE where the mailbox is declared
    label: str  # the old tool's name for it (poll name, account, file)
    account: str
    host: str
    owner: str | None = None
    domains: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    password: str | None = None
    leave: bool = True
    apop: bool = False
    tls: bool = False
    starttls: str = "auto"
    tls_verify: bool = True
    ca_file: str = ""
    server_name: str = ""
    auth: str = "auto"
    timeout: int | None = None
    poll_every: int | None = None
    disabled: bool = False
    special_field: str = ""
    notes: tuple[Note, ...] = ()

    @property
    def unified(self) -> bool:
        return self.owner is None

    @property
    def mailbox(self) -> str:
        """The identity rpop keeps UIDs under (:func:`mailbox_identity`)."""
        return mailbox_identity(self.account, split_host(self.host, self.tls)[0])


@attrs.frozen
class Delivery:
    """Where the old tool handed mail over, as rpop's ``[delivery]`` table
    would say it (``plugin`` and its keys), or ``plugin`` empty when rpop
    has no equivalent (then ``notes`` say why)."""

    source: str
    plugin: str
    options: Mapping[str, object] = attrs.field(factory=dict)
    notes: tuple[Note, ...] = ()


@attrs.frozen
class Imported:
    """Everything one import read: the mailboxes in file order, the
    deliveries they named, and notes that belong to no mailbox."""

    mailboxes: tuple[ImportedMailbox, ...] = ()
    deliveries: tuple[Delivery, ...] = ()
    notes: tuple[Note, ...] = ()

    def all_notes(self) -> list[Note]:
        """Every note, global ones first, then per delivery and mailbox."""
        found = list(self.notes)
        for delivery in self.deliveries:
            found += delivery.notes
        for mailbox in self.mailboxes:
            found += mailbox.notes
        return found


@attrs.frozen
class UidList:
    """UIDs another tool remembered for one mailbox: ``account`` at
    ``host`` (a name, no port), from ``source``."""

    source: str
    account: str
    host: str
    uids: frozenset[str]

    @property
    def mailbox(self) -> str:
        return mailbox_identity(self.account, self.host)


@attrs.frozen
class LocalNames:
    """How the old tool's local user names become rpop addresses: a bare
    name is ``name@domain``; ``default_owner`` is the owner of mailboxes
    whose file names no local user (getmail, mpop: the file's owner)."""

    domain: str
    default_owner: str
