"""Delivery into Maildir folders: ``<root>/<domain>/<localpart>/{tmp,new,cur}``.

Exactly once, through staging (see :class:`rpopcore.delivery.StagingAgent`):
:meth:`MaildirAgent.stage` writes each copy under ``tmp/`` and fsyncs it;
the core journals the copy's final name in the state store;
:meth:`MaildirAgent.commit` renames it into ``new/`` and fsyncs ``new/``,
after which the copy survives a crash and the message may leave the server.
A kill between any two of these steps leaves either a ``tmp/`` file (never
visible: :meth:`MaildirAgent.recover` removes it and the message is
retrieved again) or a visible copy the journal names (remembered, not
retrieved again).  Files left in ``tmp/`` by anything else are removed after
36 hours, as the Maildir convention says.

Jobs run in worker threads, several at once; renames into one folder that
happen while its directory is being fsync'd share the next fsync (group
commit), so a busy folder costs fewer than one directory fsync per file.
File names follow the Maildir convention (time, microseconds, pid, a
counter, the host name) plus ``,S=<size>``, which Dovecot and others use to
skip a stat.

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

from rpopcore.api import (
    ConfigError,
    Key,
    Outcome,
    RecipientOutcome,
    StagedCopy,
    hookimpl,
    read_table,
    string,
    trace_fields,
)

_counter = itertools.count(1)
# The Maildir convention's escapes: a file name's host part holds no "/",
# ":" or "," (the last also separates our ",S=" field).
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")
#: A file left in ``tmp/`` this long belongs to a delivery that was killed
#: (the Maildir convention's 36 hours); it is removed.
STALE_TMP_SECONDS = 36 * 3600
#: How often a long-running agent sweeps a folder's ``tmp/`` again.
SWEEP_EVERY = 3600



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
        # Folder -> when its tmp/ is due for another sweep of stale files.
        self._ready: dict[str, float] = {}
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

    # --- the agent's operations: each becomes a job for the workers --------

    async def deliver(self, message, envelope, recipients):
        """Stage and commit at once (no journal between): for callers that
        need no exactly-once guarantee."""
        copies, failures = await self.stage(message, envelope, recipients)
        delivered = await self.commit(copies) if copies else []
        by_address = {o.recipient.address: o for o in [*failures, *delivered]}
        return [by_address[r.address] for r in recipients]

    async def stage(self, message, envelope, recipients):
        """Write each copy under ``tmp/`` and fsync it; nothing is visible yet."""
        return await self._submit(self._stage_all, (message, envelope, recipients))

    async def commit(self, copies):
        """Rename each staged copy into ``new/``; durable once its folder is
        fsync'd (one fsync per folder per batch)."""
        return await self._submit(self._commit_all, copies)

    async def discard(self, copies):
        await self._submit(self._discard_all, copies)

    async def recover(self, tokens):
        return await self._submit(self._recover_all, tokens)

    async def _submit(self, operation, argument):
        # File writes and fsync block: worker threads do them while the event
        # loop (and other records' sessions) moves on.  A job carries its
        # loop, so one agent serves polls on any loop.  Pipelined messages
        # arrive many to a network read, so their jobs start in the same turn
        # of the loop: they go to the workers together at the end of it, one
        # wake-up of a worker for the lot instead of one each.
        if self._closed:
            raise RuntimeError("the Maildir agent is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        gathering = self._gathering.get(loop)
        if gathering is None:
            gathering = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathering.append((loop, future, operation, argument))
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
        """Run every job of the batch, make the folders they renamed into
        durable (one directory fsync per folder), then settle the whole
        batch at once."""
        results = []
        durable: dict[_DirectorySync, int] = {}
        for loop, future, operation, argument in batch:
            try:
                results.append((loop, future, operation(argument, durable), None))
            except Exception as exc:  # a bug: fail that job, not the worker
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

    # --- what the workers do ------------------------------------------------

    def _stage_all(self, job, _durable) -> tuple[list[StagedCopy], list[RecipientOutcome]]:
        message, envelope, recipients = job
        copies, failures = [], []
        for recipient in recipients:
            staged = self._stage_one(message, envelope, recipient)
            (copies if isinstance(staged, StagedCopy) else failures).append(staged)
        return copies, failures

    def _stage_one(self, message, envelope, recipient) -> StagedCopy | RecipientOutcome:
        localpart, _, domain = recipient.address.rpartition("@")
        if not _safe(localpart) or not _safe(domain):
            return RecipientOutcome(recipient, Outcome.PERMANENT, f"{recipient.address!r} cannot name a Maildir folder")
        # Plain strings, not Path objects: this runs once per copy.
        folder = f"{self.root}/{domain.lower()}/{localpart.lower()}"
        try:
            self._prepare(folder)
            return StagedCopy(recipient, self._write_tmp(folder, message, envelope.remove_fields,
                                                         trace_fields(envelope.sender, recipient.address)))
        except OSError as exc:
            # Disk full, permissions, a read-only mount, a folder removed:
            # all things an administrator can fix, so the message waits on
            # the server (and the folder is checked afresh next time).
            self._ready.pop(folder, None)
            return RecipientOutcome(recipient, Outcome.TEMPORARY, f"cannot write to {folder}: {exc.strerror or exc}")

    def _write_tmp(self, folder: str, message, remove, trace) -> str:
        """Write and fsync ``tmp/<base>``; returns the token: the path the
        copy will have in ``new/``."""
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
        except BaseException:
            _unlink(tmp)
            raise
        return f"{folder}/new/{base},S={size}"

    def _commit_all(self, copies, durable) -> list[RecipientOutcome]:
        outcomes = []
        for copy in copies:
            final = copy.token
            try:
                os.rename(_tmp_path(final), final)
            except OSError as exc:
                outcomes.append(RecipientOutcome(copy.recipient, Outcome.TEMPORARY,
                                                 f"cannot move into {os.path.dirname(final)}: {exc.strerror or exc}"))
                continue
            sync = self._sync_for(os.path.dirname(final))
            durable[sync] = max(sync.after_rename(), durable.get(sync, 0))
            outcomes.append(RecipientOutcome(copy.recipient, Outcome.DELIVERED, final))
        return outcomes

    def _discard_all(self, copies, _durable) -> None:
        for copy in copies:
            _unlink(_tmp_path(copy.token))

    def _recover_all(self, tokens, _durable) -> list[bool]:
        listings: dict[str, set[str]] = {}
        return [_visible(token, listings) for token in tokens]

    def _prepare(self, folder: str) -> None:
        now = time.time()
        if self._ready.get(folder, 0) > now:
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
        else:
            _remove_stale(f"{folder}/tmp", now - STALE_TMP_SECONDS)
        self._ready[folder] = now + SWEEP_EVERY

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            self._jobs.put(None)


def _settle(results) -> None:
    """On the waiting loop: hand each job its result."""
    for _loop, future, result, error in results:
        if future.done():  # the waiting poll was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _undo_undurable(result, failed_dirs):
    """A folder whose fsync failed holds copies that may not survive a crash:
    those recipients are temporary failures (the message stays on the
    server); a second copy after a crash is better than none.  Only commit
    jobs deliver, so only their outcomes can need it."""
    loop, future, outcomes, error = result
    if not isinstance(outcomes, list) or not all(isinstance(o, RecipientOutcome) for o in outcomes):
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


def _tmp_path(token: str) -> str:
    """Where a staged copy waits: ``<folder>/tmp/<base>`` for the token
    ``<folder>/new/<base>,S=<size>``."""
    folder, _, name = token.rpartition("/new/")
    return f"{folder}/tmp/{name.partition(',')[0]}"


def _visible(token: str, listings: dict[str, set[str]]) -> bool:
    """Whether a journaled copy reached the mailbox.  Its ``tmp/`` file still
    there: the rename never happened (the file is removed).  Otherwise it is
    in ``new/``, or in ``cur/`` under the same base name once a mail reader
    has seen it.  Neither: it cannot be told (a sweep removed an old staged
    file, or the user already deleted the message), and False is the
    answer that cannot lose mail."""
    tmp = _tmp_path(token)
    if os.path.exists(tmp):
        _unlink(tmp)
        return False
    if os.path.exists(token):
        return True
    folder, _, name = token.rpartition("/new/")
    base = name.partition(",")[0]
    cur = f"{folder}/cur"
    if cur not in listings:
        try:
            listings[cur] = {entry.split(":", 1)[0].split(",", 1)[0] for entry in os.listdir(cur)}
        except OSError:
            listings[cur] = set()
    return base in listings[cur]


def _remove_stale(tmp_dir: str, older_than: float) -> None:
    try:
        entries = list(os.scandir(tmp_dir))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < older_than:
                os.unlink(entry.path)
        except OSError:
            pass  # gone already, or not ours to remove: the next sweep looks again


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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
        raise ConfigError("[delivery] key 'root': must not be empty; name the Maildir root folder")
    return MaildirAgent(base_dir / values["root"])


@hookimpl
def rpop_delivery_agents():
    return {"maildir": make_agent}
