"""Delivery status notifications (RFC 3464) for "report on failure"
recipients.

When delivery to such a recipient fails permanently, the envelope sender is
told with a ``multipart/report`` message: a human-readable part, the
``message/delivery-status`` part with ``Original-Recipient``,
``Final-Recipient``, ``Action`` and ``Status`` per failed recipient, and the
original header (``text/rfc822-headers``).  It goes to the outbound relay
when the site file names one (``[bounces] relay``); otherwise it is written
as an ``.eml`` file into the spool folder (``[bounces] spool``) for an
administrator to send on.  Nothing is dropped silently, and nothing is ever
sent to the null sender ``<>``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Sequence

from rpopcore import logs
from rpopcore.delivery import DeliveryAgent
from rpopcore.message import MessageSpool, RetrievedMessage
from rpopcore.model import Envelope, Outcome, Recipient, RecipientOutcome

log = logging.getLogger("rpop.bounces")

_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def status_code(outcome: RecipientOutcome) -> str:
    """The RFC 3463 status: the one the refusing server gave, if any, else
    5.1.1 for an unknown account or 5.0.0."""
    match = _ENHANCED.search(outcome.detail)
    if match and match.group(1).startswith("5"):
        return match.group(1)
    if outcome.recipient.failure:
        return "5.1.1"
    return "5.0.0"


def compose_dsn(
    message: RetrievedMessage,
    envelope: Envelope,
    failures: Sequence[RecipientOutcome],
    reporting_mta: str,
    postmaster: str,
    now: dt.datetime,
) -> bytes:
    """The complete DSN message, LF line endings."""
    boundary = f"rpop-dsn-{uuid.uuid4().hex}"
    date = email.utils.format_datetime(now)
    listed = "\n".join(f"  <{f.recipient.original or f.recipient.address}>: {f.detail}" for f in failures)
    head = (
        f"From: Mail Delivery System <{postmaster}>\n"
        f"To: <{envelope.sender}>\n"
        f"Subject: Undelivered Mail Returned to Sender\n"
        f"Date: {date}\n"
        f"Message-ID: <{uuid.uuid4().hex}@{reporting_mta}>\n"
        f"Auto-Submitted: auto-replied\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\n"
    )
    human = (
        "This is the mail system at host "
        f"{reporting_mta}.\n\nYour message could not be delivered to the following recipients:\n\n{listed}\n"
    )
    per_message = f"Reporting-MTA: dns; {reporting_mta}\n"
    if message.message_id:
        per_message += f"X-Original-Message-ID: {message.message_id}\n"
    per_recipient = "".join(
        "\n"
        + (f"Original-Recipient: rfc822; {f.recipient.original}\n" if f.recipient.original else "")
        + f"Final-Recipient: rfc822; {f.recipient.address}\n"
        + "Action: failed\n"
        + f"Status: {status_code(f)}\n"
        + f"Diagnostic-Code: x-rpop; {' '.join(f.detail.split())}\n"
        for f in failures
    )
    original_header = message.header_without(frozenset()).decode("utf-8", "surrogateescape")
    body = (
        f"\nThis is a MIME-encapsulated message.\n\n--{boundary}\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Description: Notification\n\n"
        f"{human}\n--{boundary}\n"
        "Content-Type: message/delivery-status\nContent-Description: Delivery report\n\n"
        f"{per_message}{per_recipient}\n--{boundary}\n"
        "Content-Type: text/rfc822-headers\nContent-Description: Undelivered message header\n\n"
        f"{original_header}\n--{boundary}--\n"
    )
    return (head + body).encode("utf-8", "surrogateescape")


class Bouncer:
    """Sends DSNs through the relay, or spools them."""

    def __init__(self, spool: Path, relay: DeliveryAgent | None, postmaster_domain: str | None):
        self.spool = spool
        self.relay = relay
        self.reporting_mta = socket.getfqdn() or "localhost"
        self.postmaster = f"MAILER-DAEMON@{postmaster_domain or self.reporting_mta}"

    async def report(
        self, message: RetrievedMessage, envelope: Envelope, failures: Sequence[RecipientOutcome], rlog
    ) -> bool:
        """Report ``failures``; True when the report was sent or spooled (or
        none is due), False when it could not be (try again next poll)."""
        due = [f for f in failures if f.recipient.report_failure]
        if not due:
            return True
        if not envelope.sender:
            rlog.log(logs.PROBLEM, "no report for %s: the sender is <>",
                     ", ".join(f.recipient.address for f in due))
            return True
        dsn = compose_dsn(message, envelope, due, self.reporting_mta, self.postmaster,
                          dt.datetime.now(dt.timezone.utc))
        if self.relay is not None:
            return await self._send(dsn, envelope.sender, rlog)
        return self._write(dsn, message, envelope, rlog)

    async def _send(self, dsn: bytes, to: str, rlog) -> bool:
        spool = MessageSpool()
        spool.write(dsn)
        spool.finish()
        report = RetrievedMessage(None, 0, spool)
        target = Recipient(to, report_failure=False, original=to, local=False)
        try:
            (outcome,) = await self.relay.deliver(report, Envelope(sender="", recipients=(target,)), [target])
        finally:
            report.close()
        if outcome.outcome is Outcome.DELIVERED:
            rlog.log(logs.PROBLEM, "delivery status notification sent to <%s> through the relay", to)
            return True
        if outcome.outcome is Outcome.PERMANENT:
            rlog.log(logs.PROBLEM, "the relay refused the report to <%s> for good (%s); not retried", to, outcome.detail)
            return True
        rlog.log(logs.PROBLEM, "the relay did not take the report to <%s> (%s); the message stays on the server", to, outcome.detail)
        return False

    def _write(self, dsn: bytes, message: RetrievedMessage, envelope: Envelope, rlog) -> bool:
        try:
            self.spool.mkdir(parents=True, exist_ok=True)
            name = f"{int(dt.datetime.now().timestamp())}-{uuid.uuid4().hex[:12]}.eml"
            path = self.spool / name
            tmp = self.spool / f".{name}.tmp"
            with open(tmp, "wb") as f:
                f.write(dsn)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
            fd = os.open(self.spool, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            rlog.log(logs.PROBLEM, "cannot write the report for <%s> into %s: %s; the message stays on the server",
                     envelope.sender, self.spool, exc.strerror or exc)
            return False
        rlog.log(logs.PROBLEM, "no relay configured: report to <%s> written to %s", envelope.sender, path)
        return True
