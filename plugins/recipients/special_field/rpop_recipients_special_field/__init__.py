"""Unified Domain-Wide Accounts with a special field (the seed's "Special
Header Fields and Mail Distribution").

The provider copies the envelope recipients into a header field (``X-Real-To``
from the seed's sendmail recipe, or any name the record gives).  Its addresses
become the envelope recipients, every one flagged "report on failure":

* an account or alias of a local domain: delivered to the account;
* a local domain but no such account: a permanent failure, reported;
* another domain: relayed when ``[bounces] relay`` is configured, otherwise a
  permanent failure, reported.

The field may occur once per recipient or hold a comma list, with or without
angle brackets.  Every occurrence is removed from the delivered copy.  A
message that carries no such field at all goes to the main domain's
postmaster, without reports: it cannot have come through the provider's
envelope copying, so its recipients are unknown.
"""

from __future__ import annotations

from rpopcore.api import Envelope, Recipient, RecordKind, addresses_in, hookimpl


@hookimpl
def rpop_resolve_envelope(record, message, route, directory):
    if record.kind is not RecordKind.UNIFIED or not record.special_field:
        return None
    field = record.special_field
    recipients = []
    for address in addresses_in(message.field_values(field)):
        local = route(address)
        domain = address.rpartition("@")[2]
        if local is not None:
            recipients.append(Recipient(local, report_failure=True, original=address))
        elif directory.domain(domain) is not None:
            recipients.append(
                Recipient(address.lower(), report_failure=True, original=address, failure="no such local account")
            )
        else:
            recipients.append(Recipient(address, report_failure=True, original=address, local=False))
    seen = set()
    unique = []
    for recipient in recipients:  # two aliases of one account: one copy
        if recipient.address.lower() not in seen:
            seen.add(recipient.address.lower())
            unique.append(recipient)
    if not unique:
        main = directory.main_domain
        postmaster = f"postmaster@{main.name}" if main else "postmaster"
        unique = [Recipient(postmaster, report_failure=False, original=postmaster)]
    return Envelope(sender=message.return_path, recipients=tuple(unique), remove_fields={field})
