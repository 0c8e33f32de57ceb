"""What a delivery agent is: the contract between the retrieval pipeline and
the plugins that write mail somewhere (a Maildir, an LMTP or SMTP server, an
MDA command)."""

from __future__ import annotations

from typing import Protocol, Sequence

from rpopcore.message import RetrievedMessage
from rpopcore.model import Envelope, Recipient, RecipientOutcome


class DeliveryAgent(Protocol):
    """Delivers a message to its local recipients.

    A plugin's factory (see :func:`rpopcore.hookspecs.rpop_delivery_agents`)
    must be cheap and open nothing -- no connection, no file or process kept
    open: the core also calls it when a site opens, only to check the
    ``[delivery]`` options, and closes the agent at once.  Connections belong
    in :meth:`deliver`.

    One agent serves every record of a site, and :meth:`deliver` may be
    called concurrently: by several polls (:meth:`rpopcore.service.Site.poll_once`
    runs the records' polls with ``asyncio.gather``, up to ``processors`` at
    once; the daemon likewise), and within one poll for messages that arrive
    one after another (:mod:`rpopcore.retrieval` keeps a few deliveries in
    flight).  Per-message state belongs in the call, not on the agent.

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
        leaves out the fields named in ``envelope.remove_fields`` (always
        Return-Path; see :meth:`RetrievedMessage.chunks`).  Only a final
        delivery the agent makes itself (a Maildir, a pipe to an MDA) puts
        ``Return-Path:`` from ``envelope.sender`` on top, with
        :func:`rpopcore.message.trace_fields`; an LMTP server adds it itself
        from MAIL FROM, and an SMTP relay must not get one.
        Returns one outcome per recipient, in order; a delivery failure is
        an outcome, never an exception."""

    async def close(self) -> None:
        """Release connections and files."""
