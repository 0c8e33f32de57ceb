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
"""

from __future__ import annotations

import logging
import sys

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
    handler: logging.Handler = logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s RPOP %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    set_level(level)
    logger.propagate = False


def set_level(level: str) -> None:
    """Log from now on at the seed's ``level`` (the daemon follows changes)."""
    logging.getLogger(ROOT).setLevel(THRESHOLDS[level])
