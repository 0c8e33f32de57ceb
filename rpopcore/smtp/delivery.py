"""One message through one SMTP or LMTP session, reported as a delivery
agent reports it (:class:`rpopcore.delivery.DeliveryAgent`), and the
``[delivery]`` keys the agents of the family share.

The agents are shared by every record polled at once, so each message gets
a session of its own: one record's trouble (a timeout, a server that hung up
mid-reply) stays away from the others, and ``close()`` has nothing to close.

Outcomes: an address that cannot be written in its command is permanent and
never sent (a bad sender decides everyone); a reply decides its recipients
(2xx delivered, 5xx permanent, anything else temporary); whatever stops the
session early -- no connection, a timeout, a broken or nonsensical reply,
TLS or credentials refused -- leaves every recipient not decided yet
temporary, so the message stays on the server.  Nothing here raises for a
delivery failure.
"""

from __future__ import annotations

import ssl
from typing import Sequence

from rpopcore.message import RetrievedMessage
from rpopcore.model import Envelope, Outcome, Recipient, RecipientOutcome
from rpopcore.smtp.client import RcptTo, SmtpClient, Transaction
from rpopcore.smtp.replies import SessionBroken, path_of


def outcome_of(code: int) -> Outcome:
    """2xx delivered, 5xx permanent, anything else (4xx, a stray 3xx) temporary."""
    if 200 <= code < 300:
        return Outcome.DELIVERED
    if 500 <= code < 600:
        return Outcome.PERMANENT
    return Outcome.TEMPORARY


async def deliver(
    client: SmtpClient,
    message: RetrievedMessage,
    envelope: Envelope,
    recipients: Sequence[Recipient],
    *,
    dsn: bool = False,
) -> list[RecipientOutcome]:
    """Deliver ``message`` to ``recipients`` in one session of the fresh
    ``client``: one outcome per recipient, in order.  ``dsn`` asks the
    server, when it offers DSN, to report a failure only for recipients
    with ``report_failure`` (RFC 3461 NOTIFY), naming ``original`` (ORCPT).

    The copy leaves out the fields named in ``envelope.remove_fields`` and
    gets no trace fields: an LMTP server writes Return-Path and Delivered-To
    itself, and a relay is not a final delivery."""
    recipients = list(recipients)
    if path_of(envelope.sender) is None:
        detail = f"the sender {envelope.sender!r} cannot be written in MAIL FROM"
        return [RecipientOutcome(r, Outcome.PERMANENT, detail) for r in recipients]
    outcomes: dict[int, RecipientOutcome] = {}
    sent: list[int] = []
    for i, recipient in enumerate(recipients):
        if path_of(recipient.address) is None:
            outcomes[i] = RecipientOutcome(
                recipient, Outcome.PERMANENT, f"{recipient.address!r} cannot be written in RCPT TO")
        else:
            sent.append(i)
    mail = Transaction(envelope.sender, [_rcpt_to(recipients[i], dsn) for i in sent])
    detail = "no reply"
    if sent:
        try:
            try:
                await client.open()
                await client.send_mail(mail, message.chunks(envelope.remove_fields, b""))
                await client.quit()
            finally:
                await client.close()
        except (OSError, SessionBroken) as exc:
            detail = _describe(exc, client)
    for i, reply in zip(sent, mail.replies):
        outcomes[i] = (RecipientOutcome(recipients[i], Outcome.TEMPORARY, detail) if reply is None
                       else RecipientOutcome(recipients[i], outcome_of(reply.code), f"{client.peer}: {reply}"))
    return [outcomes[i] for i in range(len(recipients))]


def _rcpt_to(recipient: Recipient, dsn: bool) -> RcptTo:
    if not dsn:
        return RcptTo(recipient.address)
    return RcptTo(recipient.address, "FAILURE" if recipient.report_failure else "NEVER", recipient.original)


def _describe(exc: OSError | SessionBroken, client: SmtpClient) -> str:
    """Why the session stopped, for the recipients it left undecided."""
    peer = client.peer
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to the {peer}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return f"the {peer} did not answer within {client.options.timeout}s"
    if isinstance(exc, ssl.SSLError):
        return f"{peer}: TLS failed: {getattr(exc, 'verify_message', None) or exc.reason or exc}"
    if isinstance(exc, OSError):
        return f"{peer}: connection failed: {exc.strerror or exc}"
    return f"{peer}: {exc}"
