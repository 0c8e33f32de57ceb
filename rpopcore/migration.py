"""Moving a site's state to another store: ``rpop migrate-state --to
OTHER_SITE.toml`` (SQLite to PostgreSQL, typically).

Everything a poll relies on is copied: module settings, the directory,
records with their secrets (sealed again under the other site's key when it
has another), every mailbox's remembered UIDs, per-recipient progress and
delivery journal, and the latest statuses.  So the first poll through the
new store retrieves nothing twice.  The target store must hold no records
yet, and nothing may be polling through the source meanwhile.
"""

from __future__ import annotations

import attrs

from rpopcore import errors


@attrs.frozen
class MigrationReport:
    records: int
    secrets: int
    mailboxes: int
    uids: int


async def migrate_state(source, target) -> MigrationReport:
    """Copy ``source`` site's state into ``target`` site's (both opened
    :class:`rpopcore.service.Site`)."""


    busy = await source.store.list_workers()
    if busy:
        raise errors.ConfigError(
            f"{source.config.path}: {len(busy)} rpop processes are polling through this state store "
            f"({', '.join(w.name for w in busy)}); stop them, then migrate"
        )
    if await target.store.list_records():
        raise errors.ConfigError(
            f"{target.config.path}: its state store already holds records; migrate-state copies into an empty "
            "store (point the other site at a new database)"
        )
    records = await source.store.list_records()
    secrets = 0
    moved = []
    same_key = source.keyring.key_file.resolve() == target.keyring.key_file.resolve()
    for record in records:
        if not same_key:
            record, sealed = source.resealed(record, source.keyring, target.keyring)
            secrets += sealed
        moved.append(record)
    saved = await target.store.replace_configuration(
        await source.store.load_settings(), await source.store.load_directory(), moved
    )
    # Retrieval state first and statuses last: a status says "polled", which
    # must never be true of a copy that lacks the UIDs of that poll.
    mailboxes = await source.store.mailboxes_with_state()
    uids = 0
    for mailbox in mailboxes:
        seen = await source.store.seen_uids(mailbox)
        if seen:
            await target.store.remember_uids(mailbox, seen)
            uids += len(seen)
        for uid, recipients in (await source.store.recipient_progress(mailbox)).items():
            await target.store.remember_recipients(mailbox, uid, recipients)
        pending = await source.store.pending_copies(mailbox)
        if pending:
            await target.store.journal_copies(pending)
    statuses = await source.store.load_statuses()
    for old, new in zip(records, saved):
        status = statuses.get(old.id)
        if status is not None:
            await target.store.save_status(attrs.evolve(status, record_id=new.id))
    return MigrationReport(records=len(saved), secrets=secrets, mailboxes=len(mailboxes), uids=uids)
