"""The delivery journal: how a message reaches a mailbox exactly once even
if rpop is killed at any instant.

A message's fate (delivered or not) and its UID's fate (remembered or not)
must be one.  They live in two places -- the mail store and the state
store -- so no single write can change both.  The journal orders the writes
so that a crash between any two of them leaves a state the next poll
recognises and finishes, never one it repeats:

1. The delivery agent *stages* each copy: written and fsync'd, not visible
   (a Maildir file under ``tmp/``).  A crash here: the copy is invisible and
   nothing names it; the message is still on the server, not remembered,
   and is retrieved again.  (The Maildir agent sweeps ``tmp/`` of such files
   after 36 hours.)
2. The copies are *journaled* in the state store (:class:`PendingCopy`, one
   durable transaction for every copy staged in the same turn of the event
   loop).  A crash after this: the journal names copies whose fate is
   undecided.
3. The agent *commits* them: one atomic step each (a rename into ``new/``),
   then made durable.  A crash here or later: the journal still names them.
4. The UID is remembered and its journal entries dropped, in one
   transaction, for several messages at once (before any of them is deleted
   from the server).

At the start of the next poll of the mailbox, :func:`recover` asks the agent
about every copy the journal names -- visible or not -- and settles each: a
message all of whose copies became visible is remembered (not retrieved
again); the rest are dropped (retrieved again; nothing visible was made of
them).  So a kill at any instant leaves each message either delivered once
and remembered, or not delivered and still on the server.

Agents that cannot stage (LMTP, SMTP, a pipe) cannot be part of this: the
server accepts a message before rpop can record that it did.  For them the
UID is remembered the moment the agent reports the delivery, one message
at a time, so a kill can repeat at most the message in hand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from rpopcore import logs
from rpopcore.delivery import DeliveryAgent, stages
from rpopcore.model import PendingCopy
from rpopcore.state import StateStore


class JournalWriter:
    """Journals copies with group commit: every copy asked for in one turn
    of the event loop -- by every poll sharing the writer -- goes into one
    transaction, and every caller waits for that transaction."""

    def __init__(self, store: StateStore):
        self.store = store
        self._gathered: list[PendingCopy] = []
        self._written: asyncio.Future | None = None
        self._flushing: asyncio.Task | None = None

    async def write(self, copies: Sequence[PendingCopy]) -> None:
        """Return once ``copies`` are durably journaled; raises what the
        store raised (:class:`rpopcore.errors.StateFailed`) otherwise."""
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            # The task's first step runs after everything already queued in
            # this turn: the deliveries resumed with this one add theirs.
            self._flushing = loop.create_task(self._flush())
        self._gathered.extend(copies)
        written = self._written
        await asyncio.shield(written)

    async def _flush(self) -> None:
        copies, self._gathered = self._gathered, []
        written, self._written = self._written, None
        try:
            await self.store.journal_copies(copies)
        except BaseException as exc:
            written.set_exception(exc)
            written.exception()  # every waiter re-raises it; none is left unread
            if not isinstance(exc, Exception):
                raise
        else:
            written.set_result(None)


def settlement(
    visible: Sequence[PendingCopy], abandoned: Sequence[PendingCopy]
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], list[str]]]:
    """What settling these copies means, for a store's ``settle_copies``:
    the ``(mailbox, uid)`` of messages now complete (every copy visible and
    ``completes``), and the recipients complete of the other messages with
    a visible copy."""
    by_message: dict[tuple[str, str], list[PendingCopy]] = {}
    for copy in visible:
        by_message.setdefault((copy.mailbox, copy.uid), []).append(copy)
    unsettled = {(copy.mailbox, copy.uid) for copy in abandoned}
    complete, partial = [], {}
    for message, copies in by_message.items():
        if message not in unsettled and all(copy.completes for copy in copies):
            complete.append(message)
        else:
            partial[message] = [copy.recipient for copy in copies]
    return complete, partial


async def recover(store: StateStore, agent: DeliveryAgent, mailbox: str, log: logging.LoggerAdapter) -> int:
    """Settle the copies a killed poll of ``mailbox`` left in the journal;
    returns how many messages were found delivered.  Call it holding the
    record's lease, before reading the remembered UIDs."""
    pending = await store.pending_copies(mailbox)
    if not pending:
        return 0
    if stages(agent):
        outcome = await agent.recover([copy.token for copy in pending])
    else:
        # The site changed to an agent that cannot tell (a Maildir journal
        # read by an LMTP agent): retrieving again is the choice that cannot
        # lose mail.
        log.log(logs.PROBLEM, "%d journaled copies cannot be checked by this delivery agent; "
                "their messages are retrieved again", len(pending))
        outcome = [False] * len(pending)
    visible = [copy for copy, seen in zip(pending, outcome) if seen]
    abandoned = [copy for copy, seen in zip(pending, outcome) if not seen]
    await store.settle_copies(visible, abandoned)
    delivered = {copy.uid for copy in visible} - {copy.uid for copy in abandoned}
    log.log(logs.PROBLEM, "an earlier poll was cut short: %d of its messages had arrived (remembered now), "
            "%d had not (retrieved again)", len(delivered), len({copy.uid for copy in pending} - delivered))
    return len(delivered)
