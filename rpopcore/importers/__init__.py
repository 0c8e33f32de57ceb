"""``rpop import``: bring another fetcher's configuration over.

``rpop -c SITE import fetchmailrc|getmailrc|mpoprc FILE... [--uids UIDFILE]...``
prints a declarative file on stdout: the site's stored configuration plus a
record per mailbox the files poll.  Each option with no rpop equivalent is a
comment in that file and a line on stderr -- nothing is dropped silently.
With ``--uids``, the old tool's memory of retrieved messages is stored in
the site's state under each mailbox's identity (account at host name), so
that after applying the file rpop does not retrieve that mail again.

One parser per tool (:mod:`.fetchmail`, :mod:`.getmail`, :mod:`.mpop`)
reads files into :class:`~rpopcore.importers.model.Imported`; one writer
(:mod:`.writer`) prints it.
"""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import attrs

from rpopcore.importers import fetchmail, getmail, mpop
from rpopcore.importers.model import Delivery, ImportedMailbox, LocalNames, Note, UidList
from rpopcore.importers.writer import render
from rpopcore.model import Directory, Domain

if TYPE_CHECKING:
    from rpopcore.service import Site

#: The command's format names, each with its parser module.
FORMATS = {"fetchmailrc": fetchmail, "getmailrc": getmail, "mpoprc": mpop}


@attrs.frozen
class ImportReport:
    """What ``rpop import`` prints: the file (stdout) and one line per
    option not imported or UID list not used (stderr)."""

    text: str
    warnings: tuple[str, ...]
    mailboxes: int
    uids_stored: int
    uid_mailboxes: int


async def run_import(
    site: "Site",
    tool: str,
    files: Sequence[Path],
    uid_files: Sequence[Path] = (),
    domain: str | None = None,
    owner: str | None = None,
) -> ImportReport:
    """Read ``files`` of ``tool``'s format, store the UIDs of ``uid_files``,
    and return the declarative file to apply."""
    parser = FORMATS[tool]
    settings = await site.store.load_settings()
    directory = await site.store.load_directory()
    main = directory.main_domain
    notes: list[Note] = []
    if not domain and not main:
        domain = _host_domain()
        notes.append(Note("--domain", "not given", f"the site has no [[domain]]: local users are taken to be in "
                                                   f"{domain}; give --domain to choose the local domain"))
    domain = (domain or main.name).lower()
    mailboxes: list[ImportedMailbox] = []
    deliveries: list[Delivery] = []
    seen: dict[str, str] = {}
    for path in files:
        local = LocalNames(domain=domain, default_owner=_owner(owner, path, domain))
        imported = parser.parse(Path(path), local)
        notes += imported.notes
        for delivery in imported.deliveries:
            deliveries.append(delivery)
            notes += delivery.notes
        for mailbox in imported.mailboxes:
            mailbox = _usable_ca_file(mailbox)
            if mailbox.mailbox in seen:
                notes.append(Note(mailbox.source, f"{mailbox.label} ({mailbox.mailbox})",
                                  f"the same mailbox as {seen[mailbox.mailbox]}: imported once"))
                continue
            seen[mailbox.mailbox] = mailbox.source
            mailboxes.append(mailbox)
    stored = await site.store.list_records()
    kept = [r for r in stored if r.mailbox not in seen]
    warnings = [f"import: {note.line()}" for note in notes]
    warnings += [f"import: {n.line()}" for m in mailboxes for n in m.notes]
    stored_uids, uid_mailboxes, uid_warnings = await _store_uids(
        site, parser, uid_files, {m.mailbox for m in mailboxes} | {r.mailbox for r in kept})
    warnings += uid_warnings
    text = render(
        tool=tool, files=[str(p) for p in files], settings=settings,
        directory=_with_local_users(directory, mailboxes), kept=kept, mailboxes=mailboxes,
        deliveries=deliveries, notes=notes,
    )
    return ImportReport(text, tuple(warnings), len(mailboxes), stored_uids, uid_mailboxes)


async def _store_uids(site, parser, uid_files, known: set[str]) -> tuple[int, int, list[str]]:
    lists: list[UidList] = []
    for path in uid_files:
        lists += parser.read_uids(Path(path))
    warnings = []
    stored = mailboxes = 0
    for uid_list in lists:
        if uid_list.mailbox not in known:
            warnings.append(f"import: {uid_list.source}: UIDs of {uid_list.mailbox} not stored: no imported or "
                            "stored record polls that mailbox")
            continue
        if uid_list.uids:
            await site.store.remember_uids(uid_list.mailbox, uid_list.uids)
            stored += len(uid_list.uids)
            mailboxes += 1
    return stored, mailboxes, warnings


def _usable_ca_file(mailbox: ImportedMailbox) -> ImportedMailbox:
    """A CA file that is not on this machine would make the whole file
    fail to apply: it is left out, and said so."""
    if not mailbox.ca_file or Path(mailbox.ca_file).expanduser().is_file():
        return attrs.evolve(mailbox, ca_file=str(Path(mailbox.ca_file).expanduser()) if mailbox.ca_file else "")
    note = Note(mailbox.source, f"CA file {mailbox.ca_file}", "not found on this machine: left out (the system's "
                                                              "CAs verify); copy it here and set ca_file")
    return attrs.evolve(mailbox, ca_file="", notes=mailbox.notes + (note,))


def _with_local_users(directory: Directory, mailboxes: Sequence[ImportedMailbox]) -> Directory:
    """The directory with every local user an imported mailbox names added
    to its domain's accounts (a domain is added when missing)."""
    wanted: dict[str, set[str]] = {}
    for mailbox in mailboxes:
        if mailbox.owner:
            local, _, name = mailbox.owner.rpartition("@")
            wanted.setdefault(name, set()).add(local)
        for name in mailbox.domains:
            wanted.setdefault(name, set()).update(mailbox.accounts)
    domains = []
    for existing in directory.domains:
        more = {a for a in wanted.pop(existing.name, set()) if a not in existing.aliases}
        domains.append(attrs.evolve(existing, accounts=existing.accounts | more))
    for name, accounts in wanted.items():
        domains.append(Domain(name=name, main=not domains, accounts=accounts))
    return Directory(domains=tuple(domains))


def _owner(given: str | None, path: Path, domain: str) -> str:
    """The owner of mailboxes a file names no local user for: ``--owner``,
    else the login name of the file's owner (whose ~/.getmail or ~/.mpoprc
    it is) at ``domain``."""
    if given:
        return given.lower() if "@" in given else f"{given.lower()}@{domain}"
    try:
        name = pwd.getpwuid(os.stat(path).st_uid).pw_name
    except (OSError, KeyError):
        name = "postmaster"
    return f"{name.lower()}@{domain}"


def _host_domain() -> str:
    """This machine's domain, for the local users of a site without
    domains; ``localhost`` when the machine has no domain name (fetchmail's
    own default for local delivery)."""
    name = socket.getfqdn().strip(".").lower()
    return name if "." in name and not name.startswith("localhost") else "localhost"
