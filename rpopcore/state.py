"""What a state store is: where records, module settings, the local
directory, remembered UIDs and poll statuses live.

All methods are coroutines so that a networked store (PostgreSQL, shared by
several workers) fits the same contract as the embedded SQLite one; all SQL
lives inside storage plugins.  ``tests/contract/`` holds the one test suite
every store must pass.
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

from rpopcore.model import Directory, ModuleSettings, PollStatus, RemoteRecord


class StateStore(Protocol):
    async def open(self) -> None:
        """Connect, create or upgrade the schema."""

    async def close(self) -> None:
        """Release connections."""

    # --- configuration ----------------------------------------------------

    async def load_settings(self) -> ModuleSettings:
        """The module settings (defaults when never set)."""

    async def load_directory(self) -> Directory:
        """The local domains, accounts and aliases."""

    async def list_records(self) -> list[RemoteRecord]:
        """Every record, ordered by id."""

    async def get_record(self, record_id: int) -> RemoteRecord | None:
        """One record, or None."""

    async def save_record(self, record: RemoteRecord) -> RemoteRecord:
        """Create (``id`` None: the store assigns one) or change a record;
        returns it with its id."""

    async def delete_record(self, record_id: int) -> None:
        """Remove a record with its remembered UIDs and status."""

    async def replace_configuration(
        self, settings: ModuleSettings, directory: Directory, records: Sequence[RemoteRecord]
    ) -> list[RemoteRecord]:
        """Make the stored configuration exactly this, in one transaction
        (all or nothing).  A record whose :attr:`RemoteRecord.natural_key`
        matches a stored one keeps its id, remembered UIDs and status;
        stored records not given are removed.  Returns the records with ids."""

    # --- retrieval state --------------------------------------------------

    async def seen_uids(self, record_id: int) -> set[str]:
        """UIDs of messages already delivered from this record."""

    async def remember_uids(self, record_id: int, uids: Iterable[str]) -> None:
        """Record that these messages were delivered (durably, before this
        call), in one transaction."""

    async def forget_uids_except(self, record_id: int, present: Iterable[str]) -> int:
        """Forget remembered UIDs that are no longer on the server; returns
        how many were forgotten."""

    async def delivered_recipients(self, record_id: int, uid: str) -> set[str]:
        """Recipients a partly delivered message already reached."""

    async def remember_recipient(self, record_id: int, uid: str, recipient: str) -> None:
        """Record that one recipient of a message is complete (delivered, or
        failed permanently with any report due sent)."""

    async def forget_recipients(self, record_id: int, uid: str) -> None:
        """Drop per-recipient progress once the whole message is complete."""

    async def acquire_lease(self, record_id: int, holder: str, seconds: int) -> bool:
        """Take (or renew) the right to poll a record for ``seconds``: True
        when ``holder`` has it now, False when another holder's lease has not
        expired.  Atomic: two processes (or workers on two machines sharing a
        networked store) never both get it."""

    async def release_lease(self, record_id: int, holder: str) -> None:
        """Give the lease back (only if ``holder`` still has it)."""

    async def save_status(self, status: PollStatus) -> None:
        """Store the outcome of the latest poll of a record."""

    async def load_status(self, record_id: int) -> PollStatus | None:
        """The latest status of one record, or None if never polled."""

    async def load_statuses(self) -> dict[int, PollStatus]:
        """The latest status of every record that has one."""
