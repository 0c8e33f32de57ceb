"""Polling one record: connect, log in, retrieve, deliver, and only then
delete or remember.

The order of the steps is what keeps mail safe:

1. RETR streams the message into a spool (memory, or a temp file when large).
2. The recipient strategy rebuilds the envelope; the delivery agent delivers
   and reports per recipient.  ``delivered`` means durable.  A Maildir
   delivers through the journal (:mod:`rpopcore.journal`), so that a kill at
   any instant neither loses nor repeats a message; other agents' messages
   are remembered the moment they are accepted, one at a time.
3. Only when every recipient is complete is the UID remembered (state
   store), and only then, with ``leave = false``, is DELE sent.
4. QUIT commits the deletions.  A session cut before QUIT deletes nothing;
   the remembered UIDs make the next poll skip (and delete) what was
   delivered already, so nothing arrives twice.

UIDs belong to the remote mailbox (:attr:`RemoteRecord.mailbox`), not to the
record.  One record is polled by one process at a time: a lease in the state
store, which ends with its holder.

When the server offers PIPELINING, RETR and DELE commands are sent ahead of
their answers, several at a time, so a slow link costs one round trip per
window rather than one per message.  Answers are then matched to commands
by their order alone, so each RETR n is followed by UIDL n, and message n is
delivered only once that answer names it: a message that ended early or
never ended, or an answer sent twice, ends the session as
``protocol-error`` before anything read after it is delivered.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import itertools
import logging
import os
import socket
import ssl
import uuid
from typing import TYPE_CHECKING, Callable, Sequence

import attrs

from rpopcore import auth, errors, journal, logs
from rpopcore.bounces import Bouncer
from rpopcore.delivery import DeliveryAgent, stages
from rpopcore.message import MessageSpool, RetrievedMessage
from rpopcore.model import (
    Directory,
    Envelope,
    ModuleSettings,
    Outcome,
    PollResult,
    PendingCopy,
    PollStatus,
    RecipientOutcome,
    RecordKind,
    RemoteRecord,
)
from rpopcore.pop3.client import ConnectOptions, Pop3Client
from rpopcore.plugins import install_hint
from rpopcore.secrets import Keyring
from rpopcore.selfpoll import refuse_self_poll
from rpopcore.state import StateStore

if TYPE_CHECKING:
    from rpopcore.metrics import Metrics
    from rpopcore.progress import PollProgress

log = logging.getLogger("rpop.retrieval")

#: Commands kept in flight when the server pipelines: enough that a slow
#: link (50 ms) stays busy; each costs a few bytes of the server's buffer.
PIPELINE_WINDOW = 128
#: Messages being delivered while the next ones arrive, when every delivery
#: goes through the journal.  Otherwise one: a message an LMTP, SMTP or pipe
#: target accepted is remembered before the next is sent, so that a kill
#: repeats at most one message.
DELIVERIES_IN_FLIGHT = 32
#: UIDs of journaled messages remembered together in one transaction (and
#: always before a DELE); until then the journal names them.
UID_BATCH = 64
#: One record is polled by one process at a time: a lease in the state
#: store, renewed after every message.  A store that ties leases to its
#: holder's process (SQLite) or database session (PostgreSQL) ends them
#: when the holder dies; one that counts time would let them expire after
#: this long without renewal.  A renewal refused (the lease was lost) stops
#: the poll before its next message.
LEASE_SECONDS = 600
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_poll_numbers = itertools.count(1)


@attrs.define
class PollContext:
    """Everything a poll needs besides the record."""

    settings: ModuleSettings
    directory: Directory
    store: StateStore
    agent: DeliveryAgent
    keyring: Keyring
    hook: object  # the plugin manager's hook relay
    mechanisms: Sequence[auth.AuthMechanism]
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    bouncer: Bouncer | None = None  # reports for "report on failure" recipients
    relay: DeliveryAgent | None = None  # non-local recipients, when a relay is configured
    stop: asyncio.Event | None = None  # set: finish the message in hand, then QUIT
    progress: "PollProgress | None" = None  # told of each message, for a terminal's progress bars
    metrics: "Metrics | None" = None  # the daemon's Prometheus figures
    cleartext_warned: set = attrs.field(factory=set)
    _routes: dict = attrs.field(factory=dict, init=False, repr=False)
    #: Shared by every poll of this context: concurrent polls' copies are
    #: journaled in one transaction.
    journal_writer: journal.JournalWriter = attrs.field(init=False, repr=False)

    @journal_writer.default
    def _journal_writer(self) -> journal.JournalWriter:
        return journal.JournalWriter(self.store)

    def route(self, address: str) -> str | None:
        """The routing hook's answer, remembered for this context (its
        directory does not change): a per-user record routes its owner for
        every message."""
        try:
            return self._routes[address]
        except KeyError:
            routed = self._routes[address] = self.hook.rpop_route_address(address=address, directory=self.directory)
            return routed


#: ``poll_record(..., planned_on=...)`` when the plan saw no status.
NEVER_POLLED = object()


async def poll_record(ctx: PollContext, record: RemoteRecord, planned_on: object = None) -> PollResult:
    """Poll one record once and store its status; never raises for a failed
    poll: the result carries the error code.

    ``planned_on``: the status (or :data:`NEVER_POLLED`) a scheduler found
    the record due by.  When, by the time the lease is taken, another worker
    has polled the record since, it is not polled again (``record-busy``):
    several workers planning from one database poll each due record once.
    """
    rlog = logs.for_record(log, record.id)
    # Each poll holds its own lease, so that two polls of one record in one
    # process (the daemon and a "poll now") exclude each other too.
    holder = f"{HOLDER}:{next(_poll_numbers)}"
    # A worker's scheduler meets records others are polling all the time:
    # not a problem worth a line at the default level.
    busy_level = logs.PROBLEM if planned_on is None else logs.LINK
    if not await ctx.store.acquire_lease(record.id, holder, LEASE_SECONDS):
        rlog.log(busy_level, "not polled: another process or worker is polling this record now")
        return PollResult(record_id=record.id, error=errors.RecordBusy.code,
                          detail="another process or worker is polling this record now")
    try:
        if planned_on is not None:
            current = await ctx.store.load_status(record.id)
            seen = NEVER_POLLED if current is None else current.last_attempt
            expected = planned_on if planned_on is NEVER_POLLED else planned_on.last_attempt
            if seen != expected:
                rlog.log(busy_level, "not polled: another worker polled this record a moment ago")
                return PollResult(record_id=record.id, error=errors.RecordBusy.code,
                                  detail="another worker polled this record a moment ago")
        return await _poll_leased(ctx, record, rlog, holder)
    finally:
        await ctx.store.release_lease(record.id, holder)


async def logged_in(ctx: PollContext, record: RemoteRecord, rlog: logs.RecordLog) -> Pop3Client:
    """A session with the record's mailbox, logged in, for work that
    retrieves nothing (``poll --check``); the caller closes it."""
    return await _Session(ctx, record, rlog, f"{HOLDER}:check").open()


async def _poll_leased(ctx: PollContext, record: RemoteRecord, rlog: logs.RecordLog, holder: str) -> PollResult:
    started = ctx.clock()
    session = _Session(ctx, record, rlog, holder)
    error: errors.RpopError | None = None
    try:
        try:
            await session.run()
        finally:
            if ctx.progress is not None:
                ctx.progress.finished(record.id)
    except errors.PollError as exc:
        error = exc
    except errors.ConfigError as exc:
        error = errors.SecretUnavailable(str(exc))
    except Exception as exc:  # a bug of ours or a plugin's: fail this record, keep the others going
        rlog.exception("poll crashed")
        error = errors.RpopError(f"internal error: {type(exc).__name__}: {exc}")
    finished = ctx.clock()
    try:
        previous = await ctx.store.load_status(record.id)
    except errors.StateFailed:
        previous = None  # the status cannot be stored either; said below
    total = (previous.retrieved_total if previous else 0) + session.retrieved
    if error is None:
        rlog.log(logs.MAJOR, "poll done: %d retrieved, %d delivered", session.retrieved, session.delivered)
        status = PollStatus(record.id, last_success=finished, last_attempt=started, error=None,
                            retrieved=session.retrieved, retrieved_total=total)
    else:
        rlog.log(logs.PROBLEM, "poll failed (%s): %s", error.code, error)
        status = PollStatus(
            record.id,
            last_success=previous.last_success if previous else None,
            last_attempt=started,
            error=error.code,
            detail=str(error),
            retrieved=session.retrieved,
            retrieved_total=total,
        )
    try:
        await ctx.store.save_status(status)
    except errors.StateFailed as exc:
        rlog.log(logs.PROBLEM, "the poll's status could not be stored: %s", exc)
        error = error or exc  # the poll itself went well, but status would not say so
    result = PollResult(
        record_id=record.id,
        retrieved=session.retrieved,
        delivered=session.delivered,
        error=error.code if error else None,
        detail=str(error) if error else "",
    )
    ctx.hook.rpop_poll_finished(record=record, result=result, settings=ctx.settings)
    return result


def tls_context(record: RemoteRecord) -> ssl.SSLContext:
    """Verified against the system CAs, or the record's ``ca_file`` alone;
    unverified only when the record says ``tls_verify = false``.  Contexts
    are shared between polls: loading the system CAs costs milliseconds, and
    a thousand mailboxes would pay it a thousand times per cycle."""
    stamp = 0
    if record.ca_file:
        try:
            stamp = os.stat(record.ca_file).st_mtime_ns  # a replaced CA file is read again
        except OSError:
            stamp = -1
    return _tls_context(record.ca_file, record.tls_verify, stamp)


@functools.lru_cache(maxsize=64)
def _tls_context(ca_file: str, verify: bool, stamp: int) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def source_address(record: RemoteRecord, settings: ModuleSettings, directory: Directory) -> str:
    """The seed's Default IP Address / Use Domain IP Addresses rule."""
    if settings.use_domain_ip_addresses and record.kind is RecordKind.REMOTE and record.owner:
        domain = directory.domain(record.owner.rpartition("@")[2])
        if domain is not None and domain.ip_addresses:
            return domain.ip_addresses[0]
    return settings.default_ip_address


class _Session:
    def __init__(self, ctx: PollContext, record: RemoteRecord, rlog: logging.LoggerAdapter, holder: str):
        self.ctx = ctx
        self.holder = holder
        self.record = record
        self.log = rlog
        self.retrieved = 0
        self.delivered = 0
        self.delivery_error: errors.PollError | None = None
        # RETRs the server answered with -ERR: (message number, its text).
        self.refusals: list[tuple[int, str]] = []
        self.lease_lost = False
        self.mailbox = record.mailbox
        # Journaled messages delivered whole, waiting to be remembered in a batch.
        self.delivered_uids: list[str] = []
        # UID -> recipients complete before this poll (of partly delivered messages).
        self.progress: dict[str, set[str]] = {}
        self.staging = stages(ctx.agent)
        # Relayed copies cannot be journaled: one message at a time is
        # relayed and remembered, so a kill repeats at most that one.
        self.relay_turn = asyncio.Lock()
        # (Message-ID, recipient) delivered in this poll: duplicates a
        # provider stored once per recipient are not delivered again.
        self.seen_in_poll: set[tuple[str, str]] = set()

    async def run(self) -> None:
        client = await self.open()
        try:
            await self._retrieve(client)
            await client.quit()
        finally:
            await client.close()
        if self.delivery_error is not None:
            raise self.delivery_error
        if self.lease_lost:
            raise errors.StateFailed(
                "the lease on this record was lost (the state store's connection dropped); the poll stopped, "
                "and what was not delivered stays on the server for the next one"
            )
        if self.refusals:
            number, text = self.refusals[0]
            raise errors.ServerRefused(
                f"the server refused to hand over {len(self.refusals)} of the messages it listed "
                f"(RETR {number}: -ERR {text}); they stay on the server"
            )

    async def open(self) -> Pop3Client:
        """Connect, start TLS as the record says, and log in; the caller
        closes the client."""
        ctx, record = self.ctx, self.record
        secret = ctx.keyring.reveal(record.secret)
        host, port = record.address
        if not ctx.settings.allow_self_poll:
            await refuse_self_poll(host, port, ctx.settings.own_addresses)
        needs_tls = record.tls or record.starttls != "never"
        options = ConnectOptions(
            host=host,
            port=port,
            timeout=float(record.timeout or ctx.settings.timeout),
            implicit_tls=record.tls,
            tls_context=tls_context(record) if needs_tls else None,
            server_hostname=record.server_name or None,
            source_address=source_address(record, ctx.settings, ctx.directory),
            max_status_line=ctx.settings.max_status_line or 65536,
        )
        client = Pop3Client(options, self.log)
        try:
            await client.connect()
            await client.capa()
            if not client.tls_active:
                await self._starttls(client, options)
            if client.tls_active and not record.tls_verify:
                self.log.log(logs.PROBLEM, "the server's certificate was not checked (tls_verify = false): a machine "
                             "on the path could pose as the server; give ca_file instead")
            context = auth.AuthContext(
                record=record,
                settings=ctx.settings,
                host_name=record.name,
                apop_timestamp=client.apop_timestamp,
                capabilities=client.capabilities,
                tls_active=client.tls_active,
                reveal=ctx.keyring.reveal,
                store_secret=self._store_secret,
            )
            used = await auth.login(client, context, ctx.mechanisms, secret, self.log)
            self._warn_cleartext(used, client)
        except BaseException:
            await client.close()
            raise
        return client

    async def _store_secret(self, name: str, value: str) -> None:
        """Seal ``value`` and store it as the record's ``table.key`` secret
        (a secret part of a key a plugin adds), keeping everything else of
        the record."""
        table, _, key = name.partition(".")
        record = await self.ctx.store.get_record(self.record.id)
        if record is None or not key or not isinstance(record.options.get(table), dict):
            raise errors.RpopError(f"the record has no {table} table to store {name} in")
        sealed = self.ctx.keyring.seal(value)
        options = dict(record.options)
        options[table] = {**options[table], key: {"source": sealed.source, "value": sealed.value}}
        await self.ctx.store.save_record(attrs.evolve(record, options=options))
        self.log.log(logs.PROTOCOL, "stored the new %s the server's provider issued", name)

    def _warn_cleartext(self, mechanism_name: str, client: Pop3Client) -> None:
        mechanism = next((m for m in self.ctx.mechanisms if m.name == mechanism_name), None)
        if client.tls_active or not getattr(mechanism, "sends_password_in_clear", False):
            return
        if self.record.id in self.ctx.cleartext_warned:
            return
        self.ctx.cleartext_warned.add(self.record.id)
        self.log.log(
            logs.PROBLEM,
            "the password was sent in clear text (%s without TLS); use tls = true, a server offering STLS, "
            "or APOP/CRAM-MD5 where the server offers them",
            mechanism_name,
        )

    async def _starttls(self, client: Pop3Client, options: ConnectOptions) -> None:
        policy = self.record.starttls
        if policy == "never":
            return
        if client.capabilities.has("STLS"):
            await client.stls(options.tls_context)
        elif policy == "required":
            raise errors.TlsFailed(
                f"{options.host} does not offer STLS and the record says starttls = \"required\"; "
                "use tls = true for a TLS port, or starttls = \"auto\""
            )

    async def _retrieve(self, client: Pop3Client) -> None:
        ctx, record = self.ctx, self.record
        # The listing names every message 1..count exactly once (the client
        # checks it against STAT), so numbers need no table of their own.
        count, uids = await client.stat_and_uidl()
        deletes: collections.deque[int] = collections.deque()
        if uids is None:
            if record.leave:
                raise errors.NoUidl(
                    "the server does not support UIDL, so rpop cannot tell old mail from new; "
                    "nothing was retrieved. Set leave = false to retrieve and delete instead"
                )
            uids = {}
            fetch = collections.deque(range(1, count + 1))
        else:
            await journal.recover(ctx.store, ctx.agent, self.mailbox, self.log)
            seen = await ctx.store.seen_uids(self.mailbox)
            self.progress = await ctx.store.recipient_progress(self.mailbox)
            forgotten = await ctx.store.forget_uids_except(self.mailbox, set(uids.values()))
            if forgotten:
                self.log.log(logs.LINK, "forgot %d UIDs no longer on the server", forgotten)
            fetch = collections.deque(n for n in range(1, count + 1) if uids[n] not in seen)
            if not record.leave:
                # Delivered on an earlier poll whose QUIT never happened.
                deletes.extend(n for n in range(1, count + 1) if uids[n] in seen)
        self.log.log(logs.PROTOCOL, "%d messages, %d new", count, len(fetch))
        if ctx.progress is not None and fetch:
            _, sizes = await client.stat_and_list()  # the bytes to come, for the progress bar
            ctx.progress.started(record.id, self.mailbox, len(fetch), sum(sizes.get(n, 0) for n in fetch))
        pipelined = client.capabilities.pipelining
        window = PIPELINE_WINDOW if pipelined else 1
        outstanding: collections.deque[tuple[str, int]] = collections.deque()
        # Deliveries run while the next messages arrive; each settles (UID
        # remembered, DELE queued) only once its copy is durable.
        deliveries: collections.deque[asyncio.Task] = collections.deque()
        # Pipelined answers are matched to commands by their order alone, so
        # each RETR is followed by a step check (UIDL n) and its message is
        # held, not delivered, until that check's answer proves the RETR
        # answer was the whole of message n (Pop3Client.send_step_check).
        held: RetrievedMessage | None = None

        async def settle(task: asyncio.Task) -> None:
            number, complete = await task
            if complete and not record.leave:
                deletes.append(number)
            if len(self.delivered_uids) >= UID_BATCH:
                await self._remember_uids()

        try:
            while True:
                while deliveries and deliveries[0].done():
                    await settle(deliveries.popleft())
                if deletes and self.delivered_uids:
                    await self._remember_uids()  # a UID is remembered before its DELE goes out
                # Refill the pipeline in batches (one write for many commands),
                # once half the window has been answered.
                refill = client.in_flight <= window // 2
                while refill and client.in_flight < window and (deletes or (fetch and not self._stopping())):
                    if deletes:
                        n = deletes.popleft()
                        client.send(f"DELE {n}")
                        outstanding.append(("DELE", n))
                    else:
                        n = fetch.popleft()
                        client.send(f"RETR {n}", multiline=True)
                        outstanding.append(("RETR", n))
                        if pipelined:
                            client.send_step_check(n, uids.get(n))
                            outstanding.append(("CHECK", n))
                if not outstanding:
                    if not deliveries:
                        break
                    await settle(deliveries.popleft())
                    continue
                await client.flush()
                verb, n = outstanding.popleft()
                if verb == "DELE":
                    status = await client.receive()
                    if not status.ok:
                        self.log.log(logs.PROBLEM, "DELE %d refused (-ERR %s); it stays on the server", n, status.text)
                    continue
                if verb == "CHECK":
                    await client.receive_step_check(n, uids.get(n))
                    message, held = held, None
                elif self._stopping():
                    # Stopping: answers already requested are read (the
                    # session must reach QUIT) but not delivered; they stay
                    # on the server for the next poll.
                    await client.receive(None)
                    continue
                else:
                    message = await self._receive_message(client, n, uids.get(n))
                    if pipelined:
                        held = message
                        continue
                    # Without pipelining nothing else is in flight: whatever
                    # came after the answer is stray, and a refusal is
                    # checked at once (a stray "-ERR" would look just like one).
                    if message is not None:
                        try:
                            client.check_nothing_unread(f"delivering message {n}")
                        except errors.ProtocolError:
                            message.close()
                            raise
                    else:
                        await client.in_step(n, uids.get(n))
                if message is not None:
                    deliveries.append(asyncio.create_task(self._deliver_and_remember(message)))
                while len(deliveries) >= (DELIVERIES_IN_FLIGHT if self.staging else 1):
                    await settle(deliveries.popleft())
        finally:
            if held is not None:
                held.close()  # its check never came: not delivered, it stays on the server
            # Whatever ended the session, deliveries under way finish: their
            # copies and UIDs are recorded, so nothing arrives twice.
            if deliveries:
                await asyncio.gather(*deliveries, return_exceptions=True)
            await self._remember_uids()

    async def _remember_uids(self) -> None:
        """Remember the UIDs of journaled messages delivered since the last
        call, in one transaction.  Until then the journal names them."""
        if self.delivered_uids:
            uids, self.delivered_uids = self.delivered_uids, []
            await self.ctx.store.remember_uids(self.mailbox, uids)

    async def _receive_message(self, client: Pop3Client, number: int, uid: str | None) -> RetrievedMessage | None:
        """Read the answer to RETR into a spool; None when it was refused
        (the poll then fails as ``server-refused``)."""
        spool = MessageSpool()
        try:
            status = await client.receive(spool.write)
        except BaseException:
            spool.close()
            raise
        if not status.ok:
            spool.close()
            self.log.log(logs.PROBLEM, "RETR %d refused (-ERR %s); it stays on the server", number, status.text)
            self.refusals.append((number, status.text))
            return None
        spool.finish()
        self.retrieved += 1
        if self.ctx.progress is not None:
            self.ctx.progress.retrieved(self.record.id, spool.size)
        if self.ctx.metrics is not None:
            self.ctx.metrics.retrieved(spool.size)
        return RetrievedMessage(uid, number, spool)

    async def _deliver_and_remember(self, message: RetrievedMessage) -> tuple[int, bool]:
        """Deliver, then remember the UID; (number, whether it may be deleted)."""
        try:
            complete = await self._deliver(message)
            await self._renew_lease()
            return message.number, complete
        finally:
            message.close()

    async def _renew_lease(self) -> None:
        """Renew the lease; once it is lost (the store's connection dropped
        and another worker may take the record), retrieve nothing more."""
        if self.lease_lost:
            return
        try:
            held = await self.ctx.store.acquire_lease(self.record.id, self.holder, LEASE_SECONDS)
        except errors.StateFailed:
            held = False
        if not held:
            self.lease_lost = True
            self.log.log(logs.PROBLEM, "the lease on this record was lost; stopping after the messages in hand")

    def _stopping(self) -> bool:
        """Stop retrieving: the daemon stops, or the lease was lost."""
        return self.lease_lost or (self.ctx.stop is not None and self.ctx.stop.is_set())

    async def _deliver(self, message: RetrievedMessage) -> bool:
        """Deliver to every recipient not reached before and record what is
        complete; True when every recipient is complete: delivered, or
        failed permanently with any report that is due sent or spooled."""
        ctx, record = self.ctx, self.record
        envelope: Envelope | None = ctx.hook.rpop_resolve_envelope(
            record=record, message=message, route=ctx.route, directory=ctx.directory
        )
        if envelope is None:
            strategy = "owner" if record.kind is RecordKind.REMOTE else "special_field" if record.special_field else "headers"
            self.delivery_error = errors.DeliveryFailed(
                f"no installed recipient strategy handles {record.kind.value} records; the message stays on the "
                f"server; {install_hint('recipients', strategy)}"
            )
            return False
        name = message.uid or message.number
        dedupe_key = message.message_id if record.kind is RecordKind.UNIFIED and record.dedupe else ""
        copies: set[str] = set()
        if dedupe_key:
            # Claimed before any await: deliveries run concurrently, and a
            # second copy must see the first one's claim.  A copy whose
            # delivery fails for now stays on the server, so the claim can stay.
            copies = {r.address for r in envelope.recipients if (dedupe_key, r.address) in self.seen_in_poll}
            self.seen_in_poll.update((dedupe_key, r.address) for r in envelope.recipients)
        done = set(self.progress.get(message.uid, ())) if message.uid is not None else set()
        if copies - done:
            self.log.log(logs.MAJOR, "message %s: %s already got %s in this poll; not delivered again",
                         name, ", ".join(sorted(copies - done)), dedupe_key)
        done |= copies
        todo = [r for r in envelope.recipients if r.address not in done]
        outcomes, staged = await self._dispatch(message, envelope, todo)
        failed = [o for o in outcomes if o.outcome is Outcome.PERMANENT]
        reported = await ctx.bouncer.report(message, envelope, failed, self.log) if failed else True
        if failed and not reported:
            self.delivery_error = errors.DeliveryFailed("a delivery status notification could not be sent or spooled")
        complete = [o for o in outcomes if _is_complete(o, reported)]
        if staged:
            outcomes += await self._commit_journaled(message.uid, staged, len(complete) == len(outcomes))
            complete = [o for o in outcomes if _is_complete(o, reported)]
        for outcome in outcomes:
            self._log_outcome(name, outcome)
        all_complete = len(complete) == len(outcomes)
        if message.uid is not None:
            if all_complete and staged:
                self.delivered_uids.append(message.uid)  # the journal names it until the batch is remembered
            elif all_complete:
                await ctx.store.remember_uids(self.mailbox, [message.uid])  # accepted: remembered at once
            elif complete:
                await ctx.store.remember_recipients(self.mailbox, message.uid, [o.recipient.address for o in complete])
        if all_complete and (done or any(o.outcome is Outcome.DELIVERED for o in outcomes)):
            self.delivered += 1
            if ctx.metrics is not None:
                ctx.metrics.delivered(message.spool.size)
        return all_complete

    async def _commit_journaled(self, uid: str | None, staged, completes: bool) -> list[RecipientOutcome]:
        """Journal the staged copies, make them visible, and drop any that
        failed; their outcomes.  Without a UID there is nothing to journal
        them under (a server without UIDL: see docs/reliability.md)."""
        agent = self.ctx.agent
        if uid is not None:
            try:
                await self.ctx.journal_writer.write(
                    [PendingCopy(self.mailbox, uid, c.recipient.address, c.token, completes) for c in staged])
            except BaseException:
                await agent.discard(staged)
                raise
        outcomes = await agent.commit(staged)
        failed = [copy for copy, o in zip(staged, outcomes) if o.outcome is not Outcome.DELIVERED]
        if failed:
            await agent.discard(failed)
            if uid is not None:
                await self.ctx.store.settle_copies(
                    [], [PendingCopy(self.mailbox, uid, c.recipient.address, c.token) for c in failed])
        return outcomes

    def _log_outcome(self, name, outcome: RecipientOutcome) -> None:
        address = outcome.recipient.address
        if outcome.outcome is not Outcome.DELIVERED and self.ctx.metrics is not None:
            self.ctx.metrics.delivery_failed(outcome.outcome.value)
        if outcome.outcome is Outcome.DELIVERED:
            self.log.log(logs.MAJOR, "message %s delivered to %s", name, address)
        elif outcome.outcome is Outcome.PERMANENT:
            self.log.log(logs.PROBLEM, "message %s to %s failed permanently: %s", name, address, outcome.detail)
        else:
            self.log.log(logs.PROBLEM, "message %s to %s failed for now: %s; it stays on the server",
                         name, address, outcome.detail)
            self.delivery_error = errors.DeliveryFailed(outcome.detail)

    async def _dispatch(self, message, envelope: Envelope, todo) -> tuple[list[RecipientOutcome], list]:
        """Local recipients to the delivery agent, others to the relay; those
        the strategy already knows to fail, straight to a permanent failure.
        Returns the outcomes so far and the copies staged (not yet visible)
        when the agent delivers through the journal."""
        ctx = self.ctx
        outcomes = [RecipientOutcome(r, Outcome.PERMANENT, r.failure) for r in todo if r.failure]
        local = [r for r in todo if r.local and not r.failure]
        remote = [r for r in todo if not r.local and not r.failure]
        staged = []
        if remote:
            if ctx.relay is not None:
                async with self.relay_turn:
                    relayed = await ctx.relay.deliver(message, envelope, remote)
                    accepted = [o.recipient.address for o in relayed if o.outcome is Outcome.DELIVERED]
                    if accepted and message.uid is not None:
                        await ctx.store.remember_recipients(self.mailbox, message.uid, accepted)
                outcomes += relayed
            else:
                outcomes += [
                    RecipientOutcome(r, Outcome.PERMANENT, "not a local domain, and no relay is configured ([bounces] relay)")
                    for r in remote
                ]
        if local and self.staging:
            staged, failures = await ctx.agent.stage(message, envelope, local)
            outcomes += failures
        elif local:
            outcomes += await ctx.agent.deliver(message, envelope, local)
        return outcomes, staged


def _is_complete(outcome: RecipientOutcome, reported: bool) -> bool:
    """Delivered, or failed for good with the report that is due sent."""
    return outcome.outcome is Outcome.DELIVERED or (outcome.outcome is Outcome.PERMANENT and reported)
