"""What a delivery agent is: the contract between the retrieval pipeline and
the plugins that write mail somewhere (a Maildir, an LMTP or SMTP server, an
MDA command)."""

from __future__ import annotations

from typing import Protocol, Sequence

from rpopcore.message import RetrievedMessage
from rpopcore.model import Envelope, Recipient, RecipientOutcome


class DeliveryAgent(Protocol):
    """Delivers a message to its local recipients.

    An agent must report ``delivered`` for a recipient only once the copy is
    durable (for a file: written, fsync'd, and its directory entry fsync'd),
    because the message is deleted from the server (or marked seen) right
    after.  Anything uncertain is ``temporary``: the message stays on the
    server and is tried again on the next poll.
    """

    async def deliver(
        self, message: RetrievedMessage, envelope: Envelope, recipients: Sequence[Recipient]
    ) -> list[RecipientOutcome]:
        """Deliver ``message`` to each of ``recipients`` (a subset of
        ``envelope.recipients``: those not delivered to already).  The copy
        carries ``Return-Path:`` from ``envelope.sender`` and leaves out the
        fields named in ``envelope.remove_fields``; see
        :meth:`RetrievedMessage.chunks` and :func:`rpopcore.message.trace_fields`.
        Returns one outcome per recipient, in order."""

    async def close(self) -> None:
        """Release connections and files."""
