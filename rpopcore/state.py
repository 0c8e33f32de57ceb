"""What a state store is: where records, module settings, the local
directory, remembered UIDs and poll statuses live.

All methods are coroutines so that a networked store (PostgreSQL, shared by
several workers) fits the same contract as the embedded SQLite one; all SQL
lives inside storage plugins.  ``tests/contract/`` holds the one test suite
every store must pass.

A store raises :class:`rpopcore.errors.StateFailed` when it cannot read or
write (a full disk, an I/O error), never its driver's own exception: the
poll then ends with ``state-failed`` and leaves unrecorded mail on the
server.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping, Protocol, Sequence

from rpopcore.model import (
    Directory,
    ModuleSettings,
    PendingCopy,
    PlanEntry,
    PollStatus,
    RemoteRecord,
    WebSession,
    WorkerInfo,
)

#: How long a removed record's mailbox keeps its UIDs (and journal), in
#: seconds: adding the same mailbox back within it retrieves nothing twice.
REMOVED_MAILBOX_RETENTION = 90 * 24 * 3600


class StateStore(Protocol):
    async def open(self) -> None:
        """Connect, create or upgrade the schema."""

    async def close(self) -> None:
        """Release connections."""

    async def schema_version(self) -> int:
        """The version of the stored schema (``open`` brought it up to date)."""

    # --- configuration ----------------------------------------------------

    async def load_settings(self) -> ModuleSettings:
        """The module settings (defaults when never set)."""

    async def load_directory(self) -> Directory:
        """The local domains, accounts and aliases."""

    async def list_records(self, *, ids: Iterable[int] | None = None, owner: str | None = None
                           ) -> list[RemoteRecord]:
        """Every record, ordered by id; only those with these ``ids``, or
        only those of this ``owner`` (a local address), when given.  Both
        filters go through an index."""

    async def count_records_by_owner(self) -> dict[str, int]:
        """Owner (local address) -> how many records name it, for the owners
        that have any."""

    async def get_record(self, record_id: int) -> RemoteRecord | None:
        """One record, or None."""

    async def save_record(self, record: RemoteRecord) -> RemoteRecord:
        """Create (``id`` None: the store assigns one) or change a record;
        returns it with its id."""

    async def delete_record(self, record_id: int) -> None:
        """Remove a record and its status; its mailbox's UIDs are kept for
        :data:`REMOVED_MAILBOX_RETENTION`."""

    async def replace_configuration(
        self, settings: ModuleSettings, directory: Directory, records: Sequence[RemoteRecord]
    ) -> list[RemoteRecord]:
        """Make the stored configuration exactly this, in one transaction
        (all or nothing).  A record whose :attr:`RemoteRecord.mailbox`
        matches a stored one keeps its id and status; stored records not given
        are removed (their mailboxes' UIDs are kept for
        :data:`REMOVED_MAILBOX_RETENTION`).  Returns the records with ids."""

    # --- retrieval state -------------------------------------------------
    #
    # Keyed by the remote mailbox's identity (:attr:`RemoteRecord.mailbox`),
    # not by record: a record changed to another port or TLS mode, or removed
    # and added back within :data:`REMOVED_MAILBOX_RETENTION`, keeps them.

    async def mailboxes_with_state(self) -> list[str]:
        """Every mailbox with remembered UIDs, per-recipient progress or
        journal entries (removed ones within their retention too), sorted:
        what moving a site to another store must carry."""

    async def seen_uids(self, mailbox: str) -> set[str]:
        """UIDs of messages already delivered from this mailbox."""

    async def remember_uids(self, mailbox: str, uids: Iterable[str]) -> None:
        """Record that these messages were delivered (durably, before this
        call), in one transaction; their per-recipient progress and journal
        entries go with it."""

    async def forget_uids_except(self, mailbox: str, present: Iterable[str]) -> int:
        """Forget remembered UIDs (and per-recipient progress) of messages no
        longer on the server; returns how many UIDs were forgotten."""

    async def recipient_progress(self, mailbox: str) -> dict[str, set[str]]:
        """UID -> recipients already complete, for partly delivered messages."""

    async def remember_recipients(self, mailbox: str, uid: str, recipients: Iterable[str]) -> None:
        """Record that these recipients of a message are complete (delivered,
        or failed permanently with any report due sent), in one transaction;
        their journal entries go with it."""

    # --- the delivery journal (see rpopcore.journal) -----------------------

    async def journal_copies(self, copies: Sequence[PendingCopy]) -> None:
        """Write these copies (of any mailboxes) to the journal, in one
        durable transaction, before their agent makes them visible."""

    async def pending_copies(self, mailbox: str) -> list[PendingCopy]:
        """Copies journaled and not yet settled: what a crash left undecided."""

    async def settle_copies(self, visible: Sequence[PendingCopy], abandoned: Sequence[PendingCopy]) -> None:
        """Settle journaled copies, in one transaction: a message whose copies
        are all ``visible`` and all ``completes`` becomes a remembered UID;
        other visible copies become per-recipient progress; ``abandoned``
        copies (never made visible) are dropped."""

    # --- leases ------------------------------------------------------------

    async def acquire_lease(self, record_id: int, holder: str, seconds: int) -> bool:
        """Take (or renew) the right to poll a record: True when ``holder`` has
        it now, False when another holder has it.  Atomic: two processes (or
        workers on two machines sharing a networked store) never both get it.
        A lease never outlives its holder by more than ``seconds`` or the
        store's own documented bound (SQLite ties it to the process, so it
        ends the instant the process dies; PostgreSQL to the process's
        database session, within its ``lease_timeout``).  A renewal by a
        holder whose lease was lost meanwhile answers False: the poll must
        stop, never take the lease again."""

    async def release_lease(self, record_id: int, holder: str) -> None:
        """Give the lease back (only if ``holder`` still has it)."""

    async def lease_holders(self) -> dict[int, str]:
        """Record id -> the process polling it now (``host:pid``), for every
        leased record, whichever process or machine holds it."""

    # --- workers ------------------------------------------------------------

    async def announce_worker(self, role: str, processors: int) -> None:
        """Say that this process polls through the store (``role``: ``run``
        or ``poll``) with up to ``processors`` polls at once, until it
        closes the store or dies."""

    async def list_workers(self) -> list[WorkerInfo]:
        """The live processes that announced themselves, oldest first; a
        process that died is not listed (an embedded store, private to one
        machine, may list only this one)."""

    async def save_status(self, status: PollStatus) -> None:
        """Store the outcome of the latest poll of a record; the record is
        no longer planned (see :meth:`records_to_plan`)."""

    async def load_status(self, record_id: int) -> PollStatus | None:
        """The latest status of one record, or None if never polled."""

    async def load_statuses(self, ids: Iterable[int] | None = None) -> dict[int, PollStatus]:
        """The latest status of every record that has one (of those with
        these ``ids`` when given)."""

    async def statuses_with_error(self, errors: Iterable[str]) -> dict[int, PollStatus]:
        """The statuses whose error is one of these codes (through an
        index: the daemon asks for the hosts that failed on every tick)."""

    # --- planning --------------------------------------------------------------
    #
    # So that a daemon's look at the store costs what is due, not what is
    # stored, a store keeps per record when a daemon last worked out it is
    # next due (rpopcore.schedule decides; the store only keeps the answer).
    # A record is *unplanned* when it is new or changed, when its status is
    # saved, and when the module settings change: its due time must then be
    # worked out again.  A disabled record (no ``poll_every``) is never read.

    async def records_to_plan(self, by: dt.datetime, limit: int) -> list[PlanEntry]:
        """At most ``limit`` enabled records that are unplanned or planned
        for ``by`` or earlier: unplanned ones first, then the earliest.
        Through an index on the planned time."""

    async def plan_records(self, planned: Mapping[int, tuple[dt.datetime, int]]) -> None:
        """Note when records are next due: record id -> (when, the
        :attr:`PlanEntry.stamp` it was worked out from).  A record whose
        stamp changed since (a change, a new status) is left unplanned."""

    # --- the web interface (see rpopcore.web) ------------------------------
    #
    # Addresses are final local addresses (``alice@example.test``, lower
    # case).  The store keeps what it is given; hashing a password and
    # digesting a session token happen before these calls.

    async def load_web_password(self, address: str) -> str | None:
        """The web password hash of a local account, or None when it has
        none (it cannot sign in with the built-in password plugin)."""

    async def save_web_password(self, address: str, password_hash: str | None) -> None:
        """Set (or, with None, remove) an account's web password hash.  Its
        sessions end with it: every web session of the address is deleted."""

    async def save_web_session(self, session: WebSession) -> None:
        """Store a new session; sessions expired by then may be deleted."""

    async def load_web_session(self, key: str) -> WebSession | None:
        """The session with this key, or None (never one that has expired)."""

    async def delete_web_session(self, key: str) -> None:
        """End a session (signing out); no error if there is none."""
