"""Logging: the seed's log levels, the ``RPOP`` tag and the record id on every
line.

The seed's levels are cumulative -- each shows what the one before shows and
more -- so each maps to a threshold on Python's numeric levels, and each kind
of line is logged at its own numeric level:

==========  ===================================================  =========
rpop level  adds                                                 threshold
==========  ===================================================  =========
none        nothing at all                                       above all
major       message transfers                                    MAJOR
problems    non-fatal errors (failed polls, retries)             PROBLEM
low-level   protocol lines (``C:``/``S:``, secrets redacted)      PROTOCOL
all         link-level detail (connects, TLS, chunk sizes)       LINK
==========  ===================================================  =========

Secrets never reach a log line: the protocol layer logs a command through
its redacted form (see :meth:`rpopcore.pop3.client.Pop3Client.command`).

Logging is never the reason a poll fails: a log file that cannot be written
(a full disk, its folder gone, no permission) costs one line on stderr that
names it, the lines are dropped, and once the file can be written again a
line in it says how many were lost (:class:`LogFile`).  Only at start-up is
a path that cannot be a log file at all -- its folder missing, no
permission, a read-only disk -- refused, as bad input (:func:`check_file`).

A log file rpop creates is readable by its owner only: log lines name
accounts, hosts and senders.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time

MAJOR = 28
PROBLEM = 24
PROTOCOL = 14
LINK = 6

for _level, _name in ((MAJOR, "MAJOR"), (PROBLEM, "PROBLEM"), (PROTOCOL, "PROTOCOL"), (LINK, "LINK")):
    logging.addLevelName(_level, _name)

THRESHOLDS = {"none": logging.CRITICAL + 10, "major": MAJOR, "problems": PROBLEM, "low-level": PROTOCOL, "all": LINK}

ROOT = "rpop"


class RecordLog(logging.LoggerAdapter):
    """A logger that puts ``[record N]`` on every line it writes."""

    def process(self, msg, kwargs):
        return f"[record {self.extra['record']}] {msg}", kwargs


def for_record(logger: logging.Logger, record_id: object) -> RecordLog:
    return RecordLog(logger, {"record": record_id})


def configure(level: str, file: str | None = None) -> None:
    """Send rpop's log lines to stderr (or ``file``) at the seed's ``level``."""
    # No line shows the caller's file, thread or process, so the logging
    # module need not look them up for every record (the "Optimization"
    # section of the logging HOWTO): at the default level every delivered
    # message writes a line, and the stack walk cost more than the writing.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handler: logging.Handler = LogFile(file) if file else logging.StreamHandler(sys.stderr)
    # Under journald the journal stamps each line itself.
    from rpopcore.systemd import under_journald

    stamp = "" if not file and under_journald() else "%(asctime)s "
    handler.setFormatter(logging.Formatter(stamp + "RPOP %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    set_level(level)
    logger.propagate = False


def set_level(level: str) -> None:
    """Log from now on at the seed's ``level`` (the daemon follows changes)."""
    logging.getLogger(ROOT).setLevel(THRESHOLDS[level])


#: Why a file cannot be opened when its path is wrong: no waiting cures
#: these.  A full disk or an I/O error is not among them.
WRONG_PATH = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP, errno.ENAMETOOLONG,
})


def open_file(path: str) -> int:
    """The log file opened for appending; created readable by its owner only."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def check_file(path: str) -> None:
    """Raise OSError if ``path`` cannot be a log file because the path is
    wrong (see :data:`WRONG_PATH`); creates it if missing.  Any other
    failure is left to :class:`LogFile`, which goes on without the file."""
    try:
        os.close(open_file(path))
    except OSError as exc:
        if exc.errno in WRONG_PATH:
            raise


#: A log file that keeps failing is reported on stderr at most this often,
#: in seconds: once for a disk that fills, not once per line.
REPORT_EVERY = 3600.0


class LogFile(logging.Handler):
    """Lines appended to a file, each with one ``write``; a file that cannot
    be written does not stop rpop.

    Where :class:`logging.FileHandler` prints a traceback on stderr for
    every line it fails to write (and cannot even be created when the file
    cannot be opened), this handler says so once, in one line on stderr
    naming the file and the reason, and drops lines from then on.  It keeps
    trying: the first line that can be written again is preceded by one
    that says how many were lost, so a reader of the file knows there is a
    gap.  A line cut short by a full disk is ended before the next.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = str(path)
        self._fd: int | None = None
        self._failure: OSError | None = None  # why lines are being lost
        self._lost = 0
        self._cut = False  # the file ends inside a line
        self._reported: float | None = None  # when stderr was last told
        try:
            self._open()
        except OSError as exc:
            self._failed(exc)

    def _open(self) -> None:
        self._fd = open_file(self.path)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:  # a bad format string: a bug of ours, reported as logging does
            self.handleError(record)
            return
        try:
            if self._fd is None:
                self._open()
            if self._failure is not None:
                self._write(self._gap_notice())
                self._failure, self._lost = None, 0
            self._write(line)
        except OSError as exc:
            self._lost += 1
            self._failed(exc)

    def _write(self, data: bytes) -> None:
        if self._cut:
            data = b"\n" + data
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError:
                self._cut = self._cut or len(view) < len(data)
                raise
            view = view[written:]
        self._cut = False

    def _gap_notice(self) -> bytes:
        notice = logging.LogRecord(
            "rpop.logs", PROBLEM, __file__, 0,
            "%d log lines could not be written to this file (%s)", (self._lost, _reason(self._failure)), None,
        )
        return (self.format(notice) + "\n").encode("utf-8", "backslashreplace")

    def _failed(self, exc: OSError) -> None:
        if self._failure is None:
            self._failure = exc
        now = time.monotonic()
        if self._reported is not None and now - self._reported < REPORT_EVERY:
            return
        self._reported = now
        try:
            sys.stderr.write(f"rpop: cannot write the log file {self.path}: {_reason(exc)}; "
                             "rpop goes on, and log lines are lost until the file can be written\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass  # no stderr either: nothing more can be said

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = None
        finally:
            self.release()
        super().close()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
