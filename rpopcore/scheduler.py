"""The daemon: polls each record when it is due (:mod:`rpopcore.schedule`),
never more than ``processors`` at once, until told to stop.

Each look at the state store reads only the records that are due or whose
due time is to be worked out (the store's planning index, see
:meth:`rpopcore.state.StateStore.records_to_plan`), their statuses and the
statuses that say a host failed: what it costs follows what is due, not
how many records are stored.  A record found not yet due has its due time
written back, so it is not read again before then unless it, its status or
the module settings change.

Several daemons (workers, on one machine or many) may share one state
store: each plans from the same records and statuses, skips records another
holds the lease of, and polls a due record only if, once it holds the
lease, nobody polled it since the plan was made.  So each due record is
polled once, by whichever worker is free first; a failed host's status is
seen by all (``delay_failed_hosts`` is shared).

Changes made while it runs (``rpop apply``, or later the web pages) are
picked up by reading the state store again on every tick, at most
:data:`TICK` seconds apart; SIGHUP makes it look at once.  That includes
``log_level``: lines written from then on follow the new level.  SIGTERM or SIGINT
stop it: no new poll starts, each poll in progress finishes the message in
hand, records it, sends QUIT, and the daemon exits 0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import time
from typing import Callable

from rpopcore import logs, schedule
from rpopcore.errors import HostDelayed, RecordBusy
from rpopcore.model import PollStatus
from rpopcore.metrics import record_state
from rpopcore.retrieval import NEVER_POLLED, poll_record
from rpopcore.systemd import Notifier

log = logging.getLogger("rpop.scheduler")

#: Longest sleep between looks at the state store, in seconds.
TICK = 5.0
#: How long to wait before trying again a record whose lease another
#: process took between this daemon's plan and its attempt.  Short: a
#: holder killed then must not delay the record much beyond its lease.
BUSY_RETRY = TICK
#: How long a stop waits for polls in progress before cutting them off.
STOP_GRACE = 60.0
#: Records read by one look at the state store; when that many came, the
#: next look follows at once.
PLAN_BATCH = 1000
#: The Prometheus record-state gauge reads every record: at most this often
#: (seconds), so that metrics do not make a look cost what is stored.
METRICS_RECORDS_EVERY = 10.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Daemon:
    def __init__(self, site, clock: Callable[[], dt.datetime] = _now, tick: float = TICK,
                 log_level: str | None = None, metrics=None, notifier=None):
        self.site = site
        self.clock = clock
        self.tick = tick
        self.started = clock()
        self.running: dict[int, asyncio.Task] = {}
        self.wake = asyncio.Event()
        self.relay = None
        self.busy_until: dict[int, dt.datetime] = {}
        # The log level logging was configured with (cli.py, from the store);
        # None: this daemon leaves logging alone.
        self.log_level = log_level
        #: Prometheus figures (rpopcore.metrics.Metrics), or None.
        self.metrics = metrics
        #: sd_notify (rpopcore.systemd.Notifier), or None.
        self.notifier = notifier
        self._last_ping = 0.0
        self._metrics_counted = -METRICS_RECORDS_EVERY
        self.announced: int | None = None  # the processors 'rpop workers' shows for this one
        self.status_line = "starting"
        self._status_sent = ""

    async def run(self, stop: asyncio.Event) -> None:
        agent = self.site.delivery_agent()
        self.relay = self.site.relay_agent()
        log.log(logs.MAJOR, "[daemon] started")
        ready = False
        settings = await self.site.store.load_settings()
        self.announced = settings.processors
        await self.site.announce("run", self.announced)
        try:
            while not stop.is_set():
                delay = await self._start_due(agent, stop)
                if not ready and self.notifier is not None:
                    self.notifier.notify("READY=1", f"STATUS={self.status_line}")
                    ready = True
                delay = self._systemd_tick(delay)
                self.wake.clear()
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
                waiters.extend(self.running.values())
                done, _ = await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters[:2]:
                    waiter.cancel()
            if self.notifier is not None:
                self.notifier.notify("STOPPING=1", f"STATUS=stopping: {len(self.running)} polls finishing")
            await self._drain()
        finally:
            await agent.close()
            if self.relay is not None:
                await self.relay.close()
            log.log(logs.MAJOR, "[daemon] stopped")

    async def _start_due(self, agent, stop: asyncio.Event) -> float:
        """Start every due record the processors allow; return how long to
        sleep before looking again."""
        for rid, task in list(self.running.items()):
            if task.done():
                del self.running[rid]
                if not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    log.error("[record %s] poll crashed: %s: %s", rid, type(exc).__name__, exc)
                elif not task.cancelled() and task.result().error == RecordBusy.code:
                    # Someone else is polling it (rpop poll --once): look again later.
                    self.busy_until[rid] = self.clock() + dt.timedelta(seconds=BUSY_RETRY)
        store = self.site.store
        ctx = await self.site.poll_context(agent, stop, relay=self.relay)
        ctx.metrics = self.metrics
        self._follow_log_level(ctx.settings.log_level)
        if ctx.settings.processors != self.announced:  # 'rpop workers' shows the limit in force
            self.announced = ctx.settings.processors
            await self.site.announce("run", self.announced)
        now = self.clock()
        # Only what is due by the next tick, or unplanned; records another
        # worker (or 'rpop poll') is polling now are skipped without asking
        # for their lease.
        entries = await store.records_to_plan(now + dt.timedelta(seconds=self.tick), PLAN_BATCH)
        statuses = await store.load_statuses([entry.record.id for entry in entries])
        leased = await store.lease_holders()
        delays = await self.site.host_delays(ctx.settings)
        sleep = self.tick
        plan = []
        later: dict[int, tuple[dt.datetime, int]] = {}
        for entry in entries:
            record = entry.record
            if record.id in self.running or record.id in leased:
                continue
            if self.busy_until.get(record.id, now) > now:
                sleep = min(sleep, (self.busy_until[record.id] - now).total_seconds())
                continue
            status = statuses.get(record.id)
            when = schedule.due(record, status, ctx.settings, self.started, delays)
            look_again = when.at
            if when.reason == "host-delayed" and (status is None or status.error != "host-delayed"):
                own = schedule.due(record, status, ctx.settings, self.started, {})
                if own.at <= now:
                    await self._mark_host_delayed(record, status, when)
                    continue  # its new status makes it unplanned: the next look plans it
                look_again = own.at  # to be marked host-delayed when its own time comes
            if look_again > now and look_again != entry.planned_for:
                later[record.id] = (look_again, entry.stamp)
            plan.append((when, record))
        if later:
            await store.plan_records(later)
            if len(entries) == PLAN_BATCH:
                sleep = 0.0  # more may be waiting behind the ones just planned
        plan.sort(key=lambda item: item[0].at)
        for when, record in plan:
            if when.at > now:
                sleep = min(sleep, (when.at - now).total_seconds())
                break
            if len(self.running) >= ctx.settings.processors:
                break
            planned_on = statuses.get(record.id) or NEVER_POLLED
            self.running[record.id] = asyncio.create_task(self._poll(ctx, record, planned_on), name=f"poll-{record.id}")
        due = sum(1 for when, record in plan if when.at <= now and record.id not in self.running)
        self.status_line = (f"{len(self.running)} polling, {due} due and waiting for a processor" if due else
                            f"{len(self.running)} polling")
        if self.metrics is not None:
            await self._count_records_for_metrics(ctx.settings)
            self.metrics.set_running(len(self.running), ctx.settings.processors)
        return max(sleep, 0.05)

    async def _count_records_for_metrics(self, settings) -> None:
        """The record-state gauge, from every record: at most every
        :data:`METRICS_RECORDS_EVERY` seconds."""
        if time.monotonic() - self._metrics_counted < METRICS_RECORDS_EVERY:
            return
        self._metrics_counted = time.monotonic()
        store = self.site.store
        every = await store.list_records()
        statuses = await store.load_statuses()
        delays = schedule.host_delays(every, statuses, settings)
        self.metrics.set_records(
            record_state(r, statuses.get(r.id), schedule.due(r, statuses.get(r.id), settings, self.started, delays))
            for r in every)

    async def _poll(self, ctx, record, planned_on):
        """One poll, timed for the metrics."""
        started = time.monotonic()
        result = await poll_record(ctx, record, planned_on)
        if self.metrics is not None:
            self.metrics.poll_ended(result.error, time.monotonic() - started)
            self.metrics.set_running(sum(1 for t in self.running.values() if not t.done()) - 1,
                                     ctx.settings.processors)
        return result

    def _systemd_tick(self, delay: float) -> float:
        """Tell systemd what is going on, ping its watchdog when due; the
        sleep shortened so that the next ping is not late."""
        notifier = self.notifier
        if notifier is None or not notifier.enabled:
            return delay
        lines = [f"STATUS={self.status_line}"] if self.status_line != self._status_sent else []
        self._status_sent = self.status_line
        interval = notifier.watchdog_interval
        if interval is not None:
            now = time.monotonic()
            if now - self._last_ping >= interval * 0.9:
                lines.append("WATCHDOG=1")
                self._last_ping = now
            delay = min(delay, max(interval - (now - self._last_ping), 0.05))
        if lines:
            notifier.notify(*lines)
        return delay

    def _follow_log_level(self, level: str) -> None:
        if self.log_level is not None and level != self.log_level:
            # One line says so: under the old level when logging is being
            # switched off, under the new one otherwise.
            if level == "none":
                log.log(logs.MAJOR, "[daemon] log level %s -> %s", self.log_level, level)
            logs.set_level(level)
            if level != "none":
                log.log(logs.MAJOR, "[daemon] log level %s -> %s", self.log_level, level)
            self.log_level = level

    async def _mark_host_delayed(self, record, status, when) -> None:
        """The record is due, but its host failed a moment ago: say so in its
        status (the seed's "Last" field) without connecting."""
        host = record.address[0]
        detail = f"connecting to {host} failed recently; no record on it is polled before {when.at.isoformat()}"
        logs.for_record(log, record.id).log(logs.PROBLEM, "not polled: %s", detail)
        await self.site.store.save_status(
            PollStatus(
                record.id,
                last_success=status.last_success if status else None,
                last_attempt=status.last_attempt if status else None,
                error=HostDelayed.code,
                detail=detail,
                retrieved_total=status.retrieved_total if status else 0,
            )
        )

    async def _drain(self) -> None:
        if not self.running:
            return
        log.log(logs.MAJOR, "[daemon] stopping: waiting for %d polls to finish the message in hand", len(self.running))
        done, pending = await asyncio.wait(self.running.values(), timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


async def run_daemon(site, log_level: str) -> int:
    """``rpop run``: the daemon until SIGTERM/SIGINT; exit status 0.
    ``log_level`` is the level logging was configured with."""
    site.check_key(await site.store.list_records())
    web = None
    if site.config.web is not None:  # [web] in the site file: serve the pages too
        from rpopcore.web.server import WebServer

        web = WebServer(site, site.config.web)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    metrics = None
    if site.config.metrics_listen:
        from rpopcore.metrics import Metrics

        metrics = Metrics()
        host, port = metrics.serve(site.config.metrics_listen)
        log.log(logs.MAJOR, "[daemon] metrics on http://%s:%d/metrics", host, port)
    notifier = Notifier()
    daemon = Daemon(site, log_level=log_level, metrics=metrics, notifier=notifier)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.wake.set)
    try:
        await asyncio.gather(daemon.run(stop), *([web.serve(stop)] if web else []))
    finally:
        notifier.close()
        if metrics is not None:
            metrics.close()
    return 0
