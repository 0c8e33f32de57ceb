"""``rpop poll --check``: what is waiting on each server, without
retrieving it -- the question ``fetchmail -c`` answers.

Each record's mailbox is opened and logged in to as a poll would, its UID
and size listings read and compared with the UIDs rpop remembers; nothing
is retrieved, deleted, remembered or recorded as a poll.  No lease is
taken: a check changes nothing, so it may run beside the daemon's poll of
the same record (a server that allows one session per mailbox then refuses
one of them, and the check says so).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import attrs

from rpopcore import errors, logs
from rpopcore.model import RemoteRecord
from rpopcore.retrieval import PollContext, logged_in

log = logging.getLogger("rpop.check")


@attrs.frozen
class CheckResult:
    """What one record's mailbox holds: ``messages`` in all, ``new`` of
    them (``new_bytes`` in size) not yet delivered by rpop."""

    record_id: int
    mailbox: str
    messages: int = 0
    new: int = 0
    new_bytes: int = 0
    error: str | None = None
    detail: str = ""


async def check_records(ctx: PollContext, records: Sequence[RemoteRecord]) -> list[CheckResult]:
    """Check every record, ``processors`` at a time."""
    gate = asyncio.Semaphore(max(1, ctx.settings.processors))

    async def one(record: RemoteRecord) -> CheckResult:
        async with gate:
            return await check_record(ctx, record)

    return list(await asyncio.gather(*(one(r) for r in records)))


async def check_record(ctx: PollContext, record: RemoteRecord) -> CheckResult:
    """Check one record; a failure is in the result, never raised."""
    rlog = logs.for_record(log, record.id)
    try:
        client = await logged_in(ctx, record, rlog)
        try:
            count, uids = await client.stat_and_uidl()
            _, sizes = await client.stat_and_list()
            await client.quit()
        finally:
            await client.close()
        seen = await ctx.store.seen_uids(record.mailbox)
    except errors.PollError as exc:
        return CheckResult(record.id, record.mailbox, error=exc.code, detail=str(exc))
    except errors.ConfigError as exc:
        error = errors.SecretUnavailable(str(exc))
        return CheckResult(record.id, record.mailbox, error=error.code, detail=str(error))
    if uids is None:
        # Without UIDL rpop cannot tell old from new: every message counts.
        new = list(sizes)
    else:
        new = [number for number, uid in uids.items() if uid not in seen]
    total = sum(sizes.get(number, 0) for number in new)
    rlog.log(logs.MAJOR, "check: %d of %d messages new (%d bytes)", len(new), count, total)
    return CheckResult(record.id, record.mailbox, messages=count, new=len(new), new_bytes=total)
