"""Unified Domain-Wide Accounts without a special field (the seed's "Mail
Distribution without Special Header Fields").

Every address in the ``To:``, ``Cc:`` and ``Bcc:`` fields that routes to an
existing local account (aliases included) becomes a recipient, flagged "do
not report failures"; every other address is ignored without a report.  When
none is accepted, the message goes to the main domain's postmaster.

Providers that store one copy per recipient would make each user receive N
copies; the retrieval pipeline suppresses those duplicates by Message-ID
within one poll (``dedupe``, on by default).
"""

from __future__ import annotations

from rpopcore.api import Envelope, Recipient, RecordKind, addresses_in, hookimpl

FIELDS = ("To", "Cc", "Bcc")


@hookimpl
def rpop_resolve_envelope(record, message, route, directory):
    if record.kind is not RecordKind.UNIFIED or record.special_field:
        return None
    values = [value for name in FIELDS for value in message.field_values(name)]
    recipients = []
    seen = set()
    for address in addresses_in(values):
        local = route(address)
        if local is not None and local not in seen:
            seen.add(local)
            recipients.append(Recipient(local, report_failure=False, original=address))
    if not recipients:
        main = directory.main_domain
        postmaster = f"postmaster@{main.name}" if main else "postmaster"
        recipients.append(Recipient(postmaster, report_failure=False, original=postmaster))
    return Envelope(sender=message.return_path, recipients=tuple(recipients))
