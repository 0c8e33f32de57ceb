"""Delivery into Maildir folders: ``<root>/<domain>/<localpart>/{tmp,new,cur}``.

Each copy is written under ``tmp/``, fsync'd, renamed into ``new/`` and the
``new/`` directory fsync'd: at most one fsync pair per delivered file, after
which the copy survives a crash and the message may leave the server.
Deliveries run in worker threads, several at once; renames into one folder
that happen while its directory is being fsync'd share the next fsync
(group commit), so a busy folder costs fewer than one directory fsync per
file.  File names
follow the Maildir convention (time, microseconds, pid, a counter, the host
name) plus ``,S=<size>``, which Dovecot and others use to skip a stat.

Site file::

    [delivery]
    plugin = "maildir"
    root = "mail"          # relative to the site file's folder
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import socket
import threading
import time
from pathlib import Path

from rpopcore import errors
from rpopcore.config.schema import Key, read_table, string
from rpopcore.hookspecs import hookimpl
from rpopcore.message import trace_fields
from rpopcore.model import Outcome, RecipientOutcome

_counter = itertools.count(1)
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")



class _DirectorySync:
    """Group commit of one directory's fsyncs.  A rename is durable once an
    fsync of the directory that began after the rename has finished; a
    thread that finds such an fsync done need not start its own."""

    def __init__(self, path: str):
        self.path = path
        self._count = threading.Lock()
        self._syncing = threading.Lock()
        self.renamed = 0
        self.synced = 0

    def after_rename(self) -> int:
        with self._count:
            self.renamed += 1
            return self.renamed

    def make_durable(self, ticket: int) -> None:
        with self._syncing:
            if self.synced >= ticket:
                return
            with self._count:
                covered = self.renamed
            _fsync_dir(self.path)
            self.synced = covered


#: Worker threads writing files; each takes every queued delivery at once
#: (up to BATCH), writes and fsyncs the files, then fsyncs each folder once.
WORKERS = 4
BATCH = 64
#: Deliveries asked for in one turn of an event loop are handed to the
#: workers together, in parts of this size so that several workers share a
#: burst (their fsyncs overlap on a disk).
HAND_OVER = BATCH // WORKERS


class MaildirAgent:
    def __init__(self, root: Path):
        self.root = root
        self._ready: set[str] = set()
        self._syncs: dict[str, _DirectorySync] = {}
        self._syncs_lock = threading.Lock()
        # Jobs asked for in the current turn of each event loop.
        self._gathering: dict[asyncio.AbstractEventLoop, list] = {}
        # Lists of jobs for the workers; a C queue, so a hand-over costs no
        # Python-level lock dance (threading.Condition showed in profiles).
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def _sync_for(self, path: str) -> _DirectorySync:
        with self._syncs_lock:
            sync = self._syncs.get(path)
            if sync is None:
                sync = self._syncs[path] = _DirectorySync(path)
            return sync

    async def deliver(self, message, envelope, recipients):
        # File writes and fsync block: worker threads do them while the event
        # loop (and other records' sessions) moves on.  A job carries its
        # loop, so one agent serves polls on any loop.  Pipelined messages
        # arrive many to a network read, so their deliveries start in the
        # same turn of the loop: they go to the workers together at the end
        # of it, one wake-up of a worker for the lot instead of one each.
        if self._closed:
            raise RuntimeError("the Maildir agent is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        gathering = self._gathering.get(loop)
        if gathering is None:
            gathering = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathering.append((loop, future, message, envelope, recipients))
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._gathering.pop(loop, [])
        with self._lock:  # no job can slip in behind close()'s marker
            if self._closed:
                for _loop, future, *_ in jobs:
                    if not future.done():
                        future.set_exception(RuntimeError("the Maildir agent is closed"))
                return
            for start in range(0, len(jobs), HAND_OVER):
                self._jobs.put(jobs[start : start + HAND_OVER])
            wanted = min(WORKERS, len(self._workers) + -(-len(jobs) // HAND_OVER))
            while len(self._workers) < wanted:
                worker = threading.Thread(target=self._work, name="rpop-maildir", daemon=True)
                self._workers.append(worker)
                worker.start()

    def _work(self) -> None:
        """Take the jobs handed over and every list queued behind them (up to
        BATCH jobs), run them as one batch; stop at the closing marker
        (None), leaving it for the other workers."""
        while True:
            jobs = self._jobs.get()
            if jobs is None:
                self._jobs.put(None)
                return
            batch = list(jobs)
            closing = False
            while len(batch) < BATCH:
                try:
                    jobs = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if jobs is None:
                    self._jobs.put(None)
                    closing = True
                    break
                batch.extend(jobs)
            self._run_batch(batch)
            if closing:
                return

    def _run_batch(self, batch) -> None:
        """Write every copy of the batch, make their folders durable (one
        directory fsync per folder), then settle the whole batch at once."""
        results = []
        durable: dict[_DirectorySync, int] = {}
        for loop, future, message, envelope, recipients in batch:
            try:
                outcomes = []
                for recipient in recipients:
                    outcome, pending = self._deliver_one(message, envelope, recipient)
                    outcomes.append(outcome)
                    if pending is not None:
                        sync, ticket = pending
                        durable[sync] = max(ticket, durable.get(sync, 0))
                results.append((loop, future, outcomes, None))
            except Exception as exc:  # a bug: fail that delivery, not the worker
                results.append((loop, future, None, exc))
        failed_dirs: dict[_DirectorySync, OSError] = {}
        for sync, ticket in durable.items():
            try:
                sync.make_durable(ticket)
            except OSError as exc:
                failed_dirs[sync] = exc
        if failed_dirs:
            results = [_undo_undurable(result, failed_dirs) for result in results]
        by_loop: dict = {}
        for result in results:
            by_loop.setdefault(result[0], []).append(result)
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:
                pass  # that loop has closed: nobody waits for these any more

    def _deliver_one(self, message, envelope, recipient):
        """Write one copy; (outcome, (folder sync, ticket) still to make
        durable, or None)."""
        localpart, _, domain = recipient.address.rpartition("@")
        if not _safe(localpart) or not _safe(domain):
            return RecipientOutcome(recipient, Outcome.PERMANENT, f"{recipient.address!r} cannot name a Maildir folder"), None
        # Plain strings, not Path objects: this runs once per copy.
        folder = f"{self.root}/{domain.lower()}/{localpart.lower()}"
        try:
            path, sync, ticket = self._write(folder, message, envelope.remove_fields,
                                             trace_fields(envelope.sender, recipient.address))
        except OSError as exc:
            # Disk full, permissions, a read-only mount, a folder removed:
            # all things an administrator can fix, so the message waits on
            # the server (and the folder is checked afresh next time).
            self._ready.discard(folder)
            return RecipientOutcome(recipient, Outcome.TEMPORARY, f"cannot write to {folder}: {exc.strerror or exc}"), None
        return RecipientOutcome(recipient, Outcome.DELIVERED, path), (sync, ticket)

    def _prepare(self, folder: str) -> None:
        if folder in self._ready:
            return
        created = []
        for sub in ("tmp", "new", "cur"):
            path = Path(folder, sub)
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                created.append(path)
        if created:
            # New directory entries must be durable too, up to the root.
            for path in {Path(folder), Path(folder).parent, self.root}:
                _fsync_dir(path)
        self._ready.add(folder)

    def _write(self, folder: str, message, remove, trace) -> tuple[str, _DirectorySync, int]:
        self._prepare(folder)
        now = time.time()
        base = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST}"
        tmp = f"{folder}/tmp/{base}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                size = message.write_to(fd, remove, trace)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = f"{folder}/new/{base},S={size}"
            os.rename(tmp, final)
            sync = self._sync_for(f"{folder}/new")
            ticket = sync.after_rename()
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return final, sync, ticket

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            self._jobs.put(None)


def _settle(results) -> None:
    """On the waiting loop: hand each delivery its outcomes."""
    for _loop, future, outcomes, error in results:
        if future.done():  # the waiting poll was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcomes)


def _undo_undurable(result, failed_dirs):
    """A folder whose fsync failed holds copies that may not survive a crash:
    those recipients are temporary failures (the message stays on the
    server); a second copy after a crash is better than none."""
    loop, future, outcomes, error = result
    if outcomes is None:
        return result
    fixed = []
    for outcome in outcomes:
        folder = None
        if outcome.outcome is Outcome.DELIVERED:
            folder = os.path.dirname(outcome.detail)
        broken = next((exc for sync, exc in failed_dirs.items() if sync.path == folder), None)
        if broken is not None:
            outcome = RecipientOutcome(outcome.recipient, Outcome.TEMPORARY,
                                       f"cannot make {folder} durable: {broken.strerror or broken}")
        fixed.append(outcome)
    return loop, future, fixed, error


def _safe(part: str) -> bool:
    return bool(part) and part not in (".", "..") and "/" not in part and "\0" not in part


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_agent(options, base_dir: Path) -> MaildirAgent:
    values = read_table(dict(options), {"root": Key(string, "mail")}, "[delivery]")
    if not values["root"]:
        raise errors.ConfigError("[delivery] key 'root': must not be empty; name the Maildir root folder")
    return MaildirAgent(base_dir / values["root"])


@hookimpl
def rpop_delivery_agents():
    return {"maildir": make_agent}
