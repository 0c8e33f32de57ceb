"""What a delivery agent is: the contract between the retrieval pipeline and
the plugins that write mail somewhere (a Maildir, an LMTP or SMTP server, an
MDA command)."""

from __future__ import annotations

from typing import Protocol, Sequence

import attrs

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


@attrs.frozen
class StagedCopy:
    """A copy a :class:`StagingAgent` has written durably but not yet made
    visible.  ``token`` is the agent's own name for it (a Maildir file name):
    what the core journals, and what :meth:`StagingAgent.recover` is given
    after a crash."""

    recipient: Recipient
    token: str


class StagingAgent(DeliveryAgent, Protocol):
    """A delivery agent that can deliver exactly once, even if rpop is killed
    at any instant: it stages a copy durably out of sight, the core journals
    the copy's token in the state store, and only then does the agent make
    the copy visible in one atomic step (a Maildir's rename from ``tmp/`` to
    ``new/``).  After a crash, the journal names every copy whose fate is
    undecided and :meth:`recover` decides it.  See :mod:`rpopcore.journal`.

    Agents that cannot (LMTP, SMTP, a pipe: the server's acceptance and
    rpop's record of it cannot be one step) implement :meth:`deliver` only;
    the core then records each message the moment it is accepted, so a kill
    can repeat at most the message in hand.
    """

    async def stage(
        self, message: RetrievedMessage, envelope: Envelope, recipients: Sequence[Recipient]
    ) -> tuple[list[StagedCopy], list[RecipientOutcome]]:
        """Write a durable, invisible copy for each recipient; returns the
        staged copies and an outcome (``temporary`` or ``permanent``) for
        each recipient that could not be staged."""

    async def commit(self, copies: Sequence[StagedCopy]) -> list[RecipientOutcome]:
        """Make staged copies visible and durable; one outcome per copy, in
        order: ``delivered``, or ``temporary`` when it is not certain to
        survive a crash."""

    async def discard(self, copies: Sequence[StagedCopy]) -> None:
        """Remove staged copies that will not be committed."""

    async def recover(self, tokens: Sequence[str]) -> list[bool]:
        """After a crash: for each journaled token, whether its copy became
        visible (True) or not (False; any staged file is removed).  When it
        cannot be told, False: a message delivered twice is better than one
        lost."""


def stages(agent: DeliveryAgent) -> bool:
    """Whether ``agent`` delivers exactly once through staging."""
    return callable(getattr(agent, "stage", None)) and callable(getattr(agent, "recover", None))
