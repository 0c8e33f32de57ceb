"""Delivery into Maildir folders: ``<root>/<domain>/<localpart>/{tmp,new,cur}``.

Each copy is written under ``tmp/``, fsync'd, renamed into ``new/`` and the
``new/`` directory fsync'd: one fsync pair per delivered file, after which
the copy survives a crash and the message may leave the server.  File names
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
import socket
import time
from pathlib import Path

from rpopcore import errors
from rpopcore.config.schema import Key, read_table, string
from rpopcore.hookspecs import hookimpl
from rpopcore.message import trace_fields
from rpopcore.model import Outcome, RecipientOutcome

_counter = itertools.count(1)
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")



class MaildirAgent:
    def __init__(self, root: Path):
        self.root = root
        self._ready: set[Path] = set()

    async def deliver(self, message, envelope, recipients):
        # File writes and fsync block; a worker thread keeps the event loop
        # (and other records' sessions) moving meanwhile.
        return await asyncio.to_thread(self._deliver_all, message, envelope, recipients)

    def _deliver_all(self, message, envelope, recipients):
        return [self._deliver_one(message, envelope, recipient) for recipient in recipients]

    def _deliver_one(self, message, envelope, recipient):
        localpart, _, domain = recipient.address.rpartition("@")
        if not _safe(localpart) or not _safe(domain):
            return RecipientOutcome(recipient, Outcome.PERMANENT, f"{recipient.address!r} cannot name a Maildir folder")
        folder = self.root / domain.lower() / localpart.lower()
        try:
            path = self._write(folder, message.chunks(envelope.remove_fields, trace_fields(envelope.sender, recipient.address)))
        except OSError as exc:
            # Disk full, permissions, a read-only mount: all things an
            # administrator can fix, so the message waits on the server.
            return RecipientOutcome(recipient, Outcome.TEMPORARY, f"cannot write to {folder}: {exc.strerror or exc}")
        return RecipientOutcome(recipient, Outcome.DELIVERED, str(path))

    def _prepare(self, folder: Path) -> None:
        if folder in self._ready:
            return
        created = []
        for sub in ("tmp", "new", "cur"):
            path = folder / sub
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                created.append(path)
        if created:
            # New directory entries must be durable too, up to the root.
            for path in {folder, folder.parent, self.root}:
                _fsync_dir(path)
        self._ready.add(folder)

    def _write(self, folder: Path, chunks) -> Path:
        self._prepare(folder)
        now = time.time()
        base = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST}"
        tmp = folder / "tmp" / base
        size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                for chunk in chunks:
                    f.write(chunk)
                    size += len(chunk)
                os.fsync(f.fileno())
            final = folder / "new" / f"{base},S={size}"
            os.rename(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(folder / "new")
        return final

    async def close(self) -> None:
        pass


def _safe(part: str) -> bool:
    return bool(part) and part not in (".", "..") and "/" not in part and "\0" not in part


def _fsync_dir(path: Path) -> None:
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
