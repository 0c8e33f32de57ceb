"""Per-user records: every message goes to the record's owner, whatever its
headers say, flagged "do not report failures" (the seed's "Specifying Remote
Accounts for Individual Users")."""

from __future__ import annotations

from rpopcore.api import Envelope, Recipient, RecordKind, hookimpl


@hookimpl
def rpop_resolve_envelope(record, message, route):
    if record.kind is not RecordKind.REMOTE:
        return None
    # The owner was routed when the record was applied; route again so an
    # alias changed since then still reaches its current account.
    owner = route(record.owner) or record.owner
    return Envelope(
        sender=message.return_path,
        recipients=(Recipient(address=owner, report_failure=False, original=record.owner),),
    )
