"""A hostile POP3 server driven by hypothesis: the engine of ``python3 -m
bench.faults fuzz`` and of ``tests/faults/test_hostile_fuzz.py``.

Each case is one poll of one record (every login mechanism that needs no
OAuth provider, ``leave`` true and false) by rpop's own engine, in this
process, against a raw asyncio POP3 server in the same event loop whose
every answer comes from choices hypothesis draws (:class:`Tape`), read as
the session goes: the greeting, CAPA, the answers to USER, PASS, APOP and
AUTH and each SASL challenge, STLS, STAT, UIDL and LIST (whole listings and
single lines), each RETR, DELE and QUIT.
An answer is what an honest server holding the drawn mailbox would say, or
one of many things a broken or hostile one says instead (a wrong count, a
listing that does not add up, odd UIDs, a status line that is none, a body
with an early terminator or a status line in it, a 4 MB CAPA or listing,
absurd numbers), and it is sent whole, with stray bytes after it, cut off,
not at all, or dripped a byte at a time.

After each poll the case checks:

* **No crash**: the poll returned (no exception escaped it) with no error
  or a known code (:data:`rpopcore.errors.ERROR_CODES`) other than
  ``internal-error``, and nothing was logged with a traceback or left to
  the event loop's exception handler.
* **No hang**: the poll ended within :data:`HANG_LIMIT` (the record's
  timeout is :data:`TIMEOUT`).
* **Memory bounded**: the process's resident memory never grows more than
  :data:`RSS_BOUND` above its size when the case began (a watchdog thread
  samples it and stops the case that crosses it, so that a client that
  allocates for what a server announces fails the case, not the machine);
  and in one case of every :data:`TRACED_EVERY`, the peak of memory
  allocated while the case ran (``tracemalloc``: rpop, the server and the
  checks together) stays under :data:`MEMORY_BOUND`.  (Tracing every case
  would halve the rate.)
* **Only complete messages delivered**: every message in the Maildir is
  one the server sent as a complete answer to RETR (as a reference decoder
  of RFC 1939 reads the exact bytes sent), each at most once per message
  number; every UID rpop remembered is one the server's UIDL gave a message
  so delivered; every DELE names a message so delivered; and a poll that
  reports success against an honest STAT and listing brought every message.
* **No secret in the error**: the poll's detail holds none of the
  secret-bearing arguments rpop sent (password, digests, SASL responses),
  as sent or decoded, in either case (as :mod:`bench.faults.secrets`
  looks for them).

The UID memory is emptied before each case, so every case starts alike.
"""

from __future__ import annotations

import _thread
import argparse
import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Callable, Iterable, Iterator

import attrs
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bench.faults.secrets import leaks, secret_forms, windows
from rpopcore import retrieval
from rpopcore.errors import ERROR_CODES, RpopError
from rpopcore.testing.sites import open_site, remote

#: The record's timeout (seconds): idle, and the grace of the minimum rate.
#: Short, so a stalled server costs little; a loaded machine may make an
#: honest answer miss it, which is a ``timeout`` and still a known code.
TIMEOUT = 0.1
#: A poll still running this long after it began has hung (it is
#: cancelled, and the case ends as ``HUNG``).
HANG_LIMIT = TIMEOUT + 10.0
HUNG = "hung"
#: The most memory one case may allocate at its peak (tracemalloc): rpop's
#: own limits (64 KiB for CAPA, 128 bytes a message for a listing, RETR
#: spooled beyond 1 MiB) and the server's answers, at most about 4 MiB, fit
#: well inside.  A client that allocates for what a server announces (a
#: STAT of 10**12) does not.
MEMORY_BOUND = 64 << 20
#: Resident memory beyond this, above its size when the case began, fails
#: the case that crosses it: a client that allocates for a STAT of 10**7 or
#: reads a 4 MB listing into memory several times over crosses it within a
#: second.  Counted from each case's start, not the run's: the process
#: keeps what hypothesis held for a run (:data:`BATCH`) and what the
#: allocator does not give back after large answers, tens of MiB that no
#: case is to blame for (``rss_growth`` in the results shows the whole).
RSS_BOUND = 256 << 20
#: One case in this many is traced (tracemalloc) for :data:`MEMORY_BOUND`.
TRACED_EVERY = 8
#: Seconds between bytes of a dripped answer, and the most bytes sent at
#: once before the drip begins (rpop's deadline for an answer is its
#: timeout plus a second for each KiB received: a dripped answer must end
#: within about a second).
DRIP = 0.05
DRIP_AFTER = 1024
#: Cases per hypothesis run: each run starts its engine afresh.  A run
#: keeps about 3.5 KiB for each example it tried (its tree of choices, its
#: cache of results, each 600-byte tape) until it ends, 35 MiB for 10,000;
#: freed then, but the process stays as large as the run made it.  Runs of
#: 2,000 hold 7 MiB, and one costs a few milliseconds to begin.
BATCH = 2_000
PASSWORD = "fuzz-Secret-pw-0123456789"
#: The records polled: login mechanism x leave.
AUTHS = ("userpass", "apop", "plain", "cram-md5", "auto")
#: Bytes of hypothesis's choices for a case (two a choice; past them,
#: every answer is honest).
TAPE = 600
#: Failures described in the results at the most.
LISTED = 10

CRLF = b"\r\n"
APOP_STAMP = b"<1896.697170952@isp.test>"


# --- what the server sends -----------------------------------------------------


@attrs.frozen
class Wire:
    """Bytes to send, as segments ``(piece, repeat)`` so a 4 MB answer is
    never built whole."""

    segments: tuple[tuple[bytes, int], ...]

    @classmethod
    def of(cls, *pieces: bytes) -> "Wire":
        return cls(tuple((p, 1) for p in pieces if p))

    def __len__(self) -> int:
        return sum(len(p) * n for p, n in self.segments)

    def chunks(self, limit: int | None = None) -> Iterator[bytes]:
        """The bytes in chunks of about 64 KiB; only the first ``limit``."""
        left = len(self) if limit is None else limit
        for piece, repeat in self.segments:
            per = max(1, (64 << 10) // max(1, len(piece)))
            while repeat and left > 0:
                n = min(per, repeat)
                chunk = piece * n
                repeat -= n
                if len(chunk) > left:
                    chunk = chunk[:left]
                left -= len(chunk)
                yield chunk


@attrs.frozen
class Answer:
    """One answer: its bytes, whether an honest server holding the mailbox
    would say just this, and ``challenge`` when it opens a SASL step."""

    wire: Wire
    honest: bool = True
    challenge: bool = False


def line(text: bytes) -> Wire:
    return Wire.of(text, CRLF)


def stuffed(lines: Iterable[bytes], end: bytes = CRLF) -> bytes:
    """Lines as a multi-line body carries them: dot-stuffed, each ended."""
    return b"".join(b"." + x + end if x.startswith(b".") else x + end for x in lines)


def multiline(head: bytes, lines: Iterable[bytes], terminated: bool = True) -> Wire:
    return Wire.of(head, CRLF, stuffed(lines), b".\r\n" if terminated else b"")


#: Lines that are not what was asked: wrong, malformed or out of turn.
ODD_LINES = [b"-ERR", b"-ERR [IN-USE] locked", b"-ERR [LOGIN-DELAY] wait", b"-ERR [SYS/TEMP] busy",
             b"-ERR [SYS/PERM] gone", b"-ERR [AUTH] no", b"-ERR [", b"+OK", b"+", b"+ ", b"+ Zm9v", b"",
             b"garbage", b"OK", b"+ok lower", b"-err lower", b"+OK\x00nul", b"+OK \xff\xfe\xfd", b"\x00\x01",
             b".", b"..", b"+OK [", b"-ERR [" + b"X" * 300 + b"]", b"+OKAY", b"+OK" + b" " * 200]
#: Stray bytes sent after an answer.
STRAYS = [b"+OK\r\n", b"-ERR stray\r\n", b"stray\r\n", b".\r\n", b"\r\n", b"+OK 1 2\r\n", b"+ \r\n", b"+OK"]
CAPABILITIES = [b"UIDL", b"USER", b"PIPELINING", b"TOP", b"RESP-CODES", b"AUTH-RESP-CODE", b"SASL PLAIN",
                b"SASL CRAM-MD5", b"SASL PLAIN CRAM-MD5 XOAUTH2", b"STLS", b"IMPLEMENTATION hostile",
                b"LOGIN-DELAY 900", b"EXPIRE NEVER", b"SASL", b"X-" + b"A" * 500, b".", b"..", b"+OK stray",
                b"PIPELINING PIPELINING", b"\xff\xfe"]
HEADER_NAMES = [b"From", b"To", b"Subject", b"Message-ID", b"X-Real-To", b"Received", b"Date", b"Cc"]
BODY_LINES = [b"", b".", b"..", b".x", b"+OK fake", b"-ERR fake", b"From nobody", b"x" * 1000, b" ", b"\t",
              b"\xff\xfe", b"=?utf-8?q?x?=", b"\x00"]
NUMBERS = [0, 1, 2, 3, 10**6, 10**6 + 1, 10**7, 10**12, 10**30, -1]


def _clean(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


@attrs.frozen
class Stored:
    """A message in the drawn mailbox: its UID and its content (LF lines)."""

    uid: bytes
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content) + self.content.count(b"\n")


class Tape:
    """The choices of one case, from hypothesis's bytes: two bytes a choice,
    and choice 0 -- which hypothesis shrinks towards, and which every choice
    past the end of the tape is -- is always the honest one.  (One draw a
    case: hypothesis's interactive draws cost a millisecond each.)"""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0
        self.last = ""  # the name :meth:`weighted` chose last

    def number(self, n: int) -> int:
        """0 to n - 1."""
        if n <= 1 or self.at >= len(self.data):
            return 0
        value = int.from_bytes(self.data[self.at:self.at + 2], "big")
        self.at += 2
        return value % n

    def pick(self, options: list):
        return options[self.number(len(options))]

    def weighted(self, **weights: int) -> str:
        """A name, as likely as its weight (the first: the honest one)."""
        value = self.number(sum(weights.values()))
        for name, weight in weights.items():
            if value < weight:
                self.last = name
                return name
            value -= weight
        raise AssertionError("unreachable")

    def bytes(self, most: int) -> bytes:
        n = min(self.number(most + 1), len(self.data) - self.at)
        self.at += n
        return self.data[self.at - n:self.at]


class Script:
    """The answers of a case, chosen from its :class:`Tape` as the session
    asks for them."""

    def __init__(self, tape: Tape):
        self.tape = tape
        self.pick, self.weighted = tape.pick, tape.weighted

    def mailbox(self) -> list[Stored]:
        count = self.tape.number(5)
        prefix = self.pick([b"u", b"0000000a6b1151af", b"x" * 60, b"UID-"])
        return [Stored(prefix + str(n).encode(), self.content()) for n in range(count)]

    def content(self) -> bytes:
        if self.weighted(small=150, large=1) == "large":  # spooled to a file past 1 MiB
            return b"Subject: large\n\n" + (b"y" * 79 + b"\n") * 16000
        head = b"".join(self.pick(HEADER_NAMES) + b": " + _clean(self.tape.bytes(20)) + b"\n"
                        for _ in range(self.tape.number(5)))
        body = b"".join((self.pick(BODY_LINES) if self.tape.number(2) else _clean(self.tape.bytes(30))) + b"\n"
                        for _ in range(self.tape.number(7)))
        return head + b"\n" + body

    def status(self, honest: bytes, *, odd: list[bytes] = ODD_LINES, err: int = 4) -> Answer:
        """A one-line answer: ``honest``, or one of the odd lines, or one
        over 64 KiB, or one without its CR."""
        kind = self.weighted(honest=90, odd=4 + err, long=1, bare_lf=2)
        if kind == "honest":
            return Answer(line(honest))
        if kind == "long":
            return Answer(Wire(((b"+OK ", 1), (b"x", self.pick([1000, 70_000, 300_000])), (CRLF, 1))), False)
        if kind == "bare_lf":
            return Answer(Wire.of(honest, b"\n"), False)
        return Answer(line(self.pick(odd)), False)

    def odd(self) -> Answer:
        return Answer(line(self.pick(ODD_LINES)), False)

    # -- per command

    def greeting(self) -> Answer:
        stamp = self.pick([b" " + APOP_STAMP] * 20 + [b"", b" <>", b" <no-at-sign>", b" <" + b"x" * 5000 + b"@y>"])
        return self.status(b"+OK hostile server ready" + stamp)

    def capa(self) -> Answer:
        kind = self.weighted(listing=90, err=2, huge=2, unterminated=1, odd=2, drawn=6)
        if kind == "err":
            return Answer(line(b"-ERR unknown command"))
        if kind == "odd":
            return self.odd()
        if kind == "huge":
            count = self.pick([100, 700, 10_000, 40_000])
            return Answer(Wire(((b"+OK\r\n", 1), (b"X-PAD " + b"x" * 94 + CRLF, count), (b".\r\n", 1))), False)
        if kind == "drawn":
            caps = [self.pick(CAPABILITIES) for _ in range(self.tape.number(9))]
        else:  # what a server offering every mechanism rpop has here says; pipelining or not, STLS seldom
            caps = [b"UIDL", b"USER", b"TOP", b"RESP-CODES", b"AUTH-RESP-CODE", b"SASL PLAIN CRAM-MD5"]
            caps += self.pick([[b"PIPELINING"], []]) + self.pick([[]] * 40 + [[b"STLS"]])
        return Answer(multiline(b"+OK capability list follows", caps, terminated=kind != "unterminated"),
                      honest=kind == "listing")

    def login(self) -> Answer:
        return self.status(b"+OK logged in", err=12)

    def auth(self, mechanism: bytes, initial_response: bool) -> Answer:
        """The answer to ``AUTH mechanism [initial-response]``: honestly,
        the end of the exchange after an initial response, else the first
        challenge (PLAIN's is empty, CRAM-MD5's a timestamp)."""
        kind = self.weighted(honest=90, challenge=2, ok=2, refused=2, unknown=2, not_base64=1, bare=1, odd=1)
        if kind == "honest" and initial_response:
            return self.status(b"+OK logged in")
        if kind in ("honest", "challenge"):
            challenge = APOP_STAMP if mechanism.upper() == b"CRAM-MD5" else b""
            if kind == "challenge":
                challenge = self.pick([APOP_STAMP, b"", b"\x00\xff", b"x" * 3000])
            return Answer(line(b"+ " + base64.b64encode(challenge)), challenge=True)
        if kind == "not_base64":
            return Answer(line(b"+ not base64!"), False, challenge=True)
        if kind == "bare":
            return Answer(line(b"+"), challenge=True)
        return self.status({"ok": b"+OK logged in", "refused": b"-ERR [AUTH] invalid",
                            "unknown": b"-ERR unsupported mechanism", "odd": b"+OK"}[kind])

    def sasl_step(self) -> Answer:
        kind = self.weighted(ok=30, refused=2, again=1, json=1, odd=1)
        if kind == "again":
            return Answer(line(b"+ " + base64.b64encode(APOP_STAMP)), False, challenge=True)
        if kind == "json":
            return Answer(line(b"+ " + base64.b64encode(b'{"status":"400","schemes":"Bearer"}')), challenge=True)
        return self.status({"ok": b"+OK logged in", "refused": b"-ERR [AUTH] invalid", "odd": b"+OK"}[kind])

    def stls(self) -> Answer:
        if self.weighted(refused=1, begin=1) == "refused":
            return self.status(b"-ERR not now")
        # "+OK" and then no TLS at all, but whatever follows.
        return Answer(Wire.of(b"+OK begin TLS\r\n", self.pick([b"", b"\x16\x03\x01garbage", b"+OK\r\n"])), False)

    def stat(self, mailbox: list[Stored]) -> Answer:
        count, size = len(mailbox), sum(m.size for m in mailbox)
        kind = self.weighted(honest=90, count=6, size=2, fields=2, odd=2)
        if kind == "honest":
            return Answer(line(b"+OK %d %d" % (count, size)))
        if kind == "count":
            return Answer(line(b"+OK %d %d" % (self.pick([count + 1, max(0, count - 1), *NUMBERS]), size)), False)
        if kind == "size":
            return Answer(line(b"+OK %d %s" % (count, self.pick([b"9" * 25, b"-5", b"x", b"", b"1.5"]))), False)
        if kind == "fields":
            return Answer(line(self.pick([b"+OK %d" % count, b"+OK  %d  %d" % (count, size),
                                          b"+OK %d %d extra" % (count, size), b"+OK x %d" % size])), False)
        return self.odd()

    def listing(self, mailbox: list[Stored], verb: bytes) -> Answer:
        """The answer to UIDL or LIST without an argument."""
        def entry(n: int, m: Stored) -> bytes:
            return b"%d %s" % (n, m.uid if verb == b"UIDL" else str(m.size).encode())

        entries = [entry(n, m) for n, m in enumerate(mailbox, 1)]
        kind = self.weighted(honest=85, err=3, edit=8, huge=2, unterminated=1, odd=2)
        if kind == "honest":
            return Answer(multiline(b"+OK", entries))
        if kind == "err":
            return Answer(line(b"-ERR not supported"), honest=verb == b"UIDL")
        if kind == "odd":
            return self.odd()
        if kind == "huge":
            count = self.pick([1000, 100_000])
            pad = self.pick([b"", b" " + b"p" * 120])
            return Answer(Wire(((b"+OK\r\n", 1), (b"1 same-uid" + pad + CRLF, count), (b".\r\n", 1))), False)
        if kind == "unterminated":
            return Answer(multiline(b"+OK", entries, terminated=False), False)
        for _ in range(1 + self.tape.number(3)):
            edit = self.pick(["drop", "repeat", "beyond", "zero", "word", "uid", "swap", "dot"])
            at = self.tape.number(len(entries) + 1)
            if edit == "drop" and entries:
                del entries[min(at, len(entries) - 1)]
            elif edit == "repeat" and entries:
                entries.insert(at, entries[min(at, len(entries) - 1)])
            elif edit == "beyond":
                entries.insert(at, b"%d x%d" % (len(mailbox) + 1 + self.tape.number(3), at))
            elif edit == "zero":
                entries.insert(at, b"0 zero")
            elif edit == "word":
                entries.insert(at, self.pick([b"", b"one two", b"-1 neg", b"1", b"+OK", b"1  " + b"w" * 200]))
            elif edit == "uid" and entries:
                n = min(at, len(entries) - 1)
                number = entries[n].split(b" ", 1)[0]
                entries[n] = number + b" " + self.pick([b"a b", b"\xff\xfe", b"x" * 71, b"", b"\x00", b"same"])
            elif edit == "swap" and len(entries) > 1:
                entries[0], entries[-1] = entries[-1], entries[0]
            elif edit == "dot":
                entries.insert(at, b".")  # not stuffed: ends the listing early
        return Answer(Wire.of(b"+OK\r\n", b"".join(e + CRLF for e in entries), b".\r\n"), False)

    def one_entry(self, mailbox: list[Stored], verb: bytes, arg: bytes) -> Answer:
        """UIDL n or LIST n (rpop's probe after a refused RETR)."""
        n = int(arg) if arg.isdigit() else 0
        if not 1 <= n <= len(mailbox):
            return self.status(b"-ERR no such message")
        m = mailbox[n - 1]
        honest = b"+OK %d %s" % (n, m.uid if verb == b"UIDL" else str(m.size).encode())
        return self.status(honest, odd=[b"+OK %d other" % n, b"+OK %d" % (n + 1), *ODD_LINES])

    def retr(self, mailbox: list[Stored], arg: bytes) -> Answer:
        n = int(arg) if arg.isdigit() else 0
        if not 1 <= n <= len(mailbox):
            return self.status(b"-ERR no such message")
        m = mailbox[n - 1]
        lines = m.content.split(b"\n")[:-1]
        head = b"+OK %d octets" % m.size
        kind = self.weighted(honest=85, refused=4, bare_lf=2, early_end=3, status_first=2, unterminated=1, odd=2)
        if kind == "honest":
            return Answer(multiline(head, lines))
        if kind == "refused":
            return Answer(line(self.pick([b"-ERR [SYS/TEMP] cannot read", b"-ERR no such message", b"-ERR"])))
        if kind == "bare_lf":
            return Answer(Wire.of(head, b"\n", stuffed(lines, b"\n"), b".\n"), False)
        if kind == "early_end":  # a line "." the server did not stuff
            at = self.tape.number(len(lines) + 1)
            return Answer(Wire.of(head, CRLF, stuffed(lines[:at]), b".\r\n", stuffed(lines[at:]), b".\r\n"), False)
        if kind == "status_first":
            return Answer(multiline(head, [self.pick([b"+OK stray", b"-ERR stray", b"+OK"])] + lines), False)
        if kind == "unterminated":
            return Answer(multiline(head, lines, terminated=False), False)
        return self.odd()

    def dele(self) -> Answer:
        return self.status(b"+OK marked", odd=[b"-ERR no such message", *ODD_LINES])

    def quit(self) -> Answer:
        return self.status(b"+OK bye")

    def action(self) -> str:
        """How an answer goes out: whole, with stray bytes after it, not at
        all (closed or stalled), cut short (then closed, stalled or dripped)."""
        return self.weighted(send=1000, stray=16, close=8, cut=16, stall=1, hold=1, drip=1)

    def cut_at(self, length: int) -> int:
        return self.tape.number(max(1, length))


# --- reference decoding ----------------------------------------------------------


_TERMINATOR = re.compile(rb"(?:\A|(?<=\n))\.\r?\n")
_STUFFED = re.compile(rb"(?m)^\.")


def decode(wire: bytes) -> tuple[bytes, bytes] | None:
    """An RFC 1939 reading of a multi-line answer's bytes after its status
    line: (the content -- lines up to the one that is a lone ".", each
    without a leading "." and with LF for a CRLF end; the bytes after the
    terminator), or None when no line is a lone "."."""
    end = _TERMINATOR.search(wire)
    if end is None:
        return None
    return _STUFFED.sub(b"", wire[:end.start()]).replace(b"\r\n", b"\n"), wire[end.end():]


def listed(wire: bytes) -> dict[int, set[bytes]]:
    """What a listing's bytes (after the status line) say: number -> UIDs."""
    decoded = decode(wire)
    found: dict[int, set[bytes]] = collections.defaultdict(set)
    for text in (decoded[0] if decoded else b"").split(b"\n"):
        words = text.split()
        if len(words) >= 2 and words[0].isdigit():
            found[int(words[0])].add(words[1])
    return found


# --- the server ---------------------------------------------------------------------


@attrs.define
class Transcript:
    """What the server said and heard in one case."""

    mailbox: list[Stored] = attrs.field(factory=list)
    honest_listing: bool = True  # STAT and UIDL (or its refusal) as an honest server's, nothing stray
    asked_listing: bool = False
    complete: dict[int, list[bytes]] = attrs.field(factory=dict)  # RETR n -> contents sent complete
    uidls: list[dict[int, set[bytes]]] = attrs.field(factory=list)  # each UIDL listing sent, as read
    deleted: list[int] = attrs.field(factory=list)
    secrets: list[bytes] = attrs.field(factory=list)  # secret-bearing arguments received
    sessions: int = 0
    #: The last lines each way, for a failure's description.
    dialogue: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=40))
    error: BaseException | None = None  # raised in the server (hypothesis's own, or a bug of this harness)


class HostileServer:
    """Answers from :class:`Script`; one transcript per case."""

    def __init__(self):
        self.script: Script | None = None
        self.transcript = Transcript()
        self.tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.settle()
        self._server.close()
        await self._server.wait_closed()

    async def settle(self) -> None:
        """End every session still open (their clients are gone)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        t = self.transcript
        t.sessions += 1
        try:
            await _Session(self.script, t, reader, writer).run()
        except (OSError, asyncio.CancelledError):
            pass
        except KeyboardInterrupt:  # the memory watchdog's, or the user's: for the case to handle
            raise
        except BaseException as exc:  # hypothesis's StopTest, or a bug here: raised again after the poll
            t.error = t.error or exc
        finally:
            writer.close()
            self.tasks.discard(task)


class _Session:
    def __init__(self, script: Script, transcript: Transcript, reader, writer):
        self.script, self.t, self.reader, self.writer = script, transcript, reader, writer
        self.buffer = b""

    async def run(self) -> None:
        s, t = self.script, self.t
        if t.sessions == 1:
            t.mailbox = s.mailbox()
        mailbox = t.mailbox
        if not await self.answer(s.greeting(), b"", b""):
            return
        in_sasl = False
        while True:
            text = await self.read_line()
            if text is None:
                return
            t.dialogue.append(f"C: {text[:70]!r}")
            verb, _, arg = text.partition(b" ")
            verb = verb.upper()
            if in_sasl:
                verb, arg = b"", b""
                t.secrets.append(text)
                answer = s.sasl_step()
            elif verb == b"CAPA":
                answer = s.capa()
            elif verb == b"USER":
                answer = s.status(b"+OK send PASS")
            elif verb in (b"PASS", b"APOP"):
                t.secrets.append(arg.split(b" ")[-1])
                answer = s.login()
            elif verb == b"AUTH":
                mechanism, _, initial_response = arg.partition(b" ")
                if initial_response:
                    t.secrets.append(initial_response)
                answer = s.auth(mechanism, bool(initial_response))
            elif verb == b"STLS":
                answer = s.stls()
            elif verb == b"STAT":
                t.asked_listing = True
                answer = s.stat(mailbox)
                t.honest_listing &= answer.honest
            elif verb in (b"UIDL", b"LIST") and not arg:
                answer = s.listing(mailbox, verb)
                t.honest_listing &= answer.honest
            elif verb in (b"UIDL", b"LIST"):
                answer = s.one_entry(mailbox, verb, arg)
            elif verb == b"RETR":
                answer = s.retr(mailbox, arg)
            elif verb == b"DELE":
                t.deleted.append(int(arg) if arg.isdigit() else -1)
                answer = s.dele()
            elif verb == b"QUIT":
                answer = s.quit()
            else:
                answer = Answer(line(b"-ERR unknown command"))
            in_sasl = answer.challenge
            if not await self.answer(answer, verb, arg) or verb == b"QUIT":
                return

    async def answer(self, answer: Answer, verb: bytes, arg: bytes) -> bool:
        """Send the answer to ``verb arg`` the way drawn for it and note
        what went out; False when the session ends with it."""
        t = self.t
        kind = self.script.tape.last
        action = self.script.action()
        if action != "send":
            t.honest_listing = False
        t.dialogue.append(f"S: {next(answer.wire.chunks(), b'')[:70]!r} ({len(answer.wire)} bytes; {kind}; {action})")
        listing = verb == b"UIDL" and not arg
        sent = await self.send(answer.wire, action, keep=verb == b"RETR" or listing)
        if sent.startswith(b"+OK") and b"\n" in sent:
            rest = sent[sent.index(b"\n") + 1:]
            if verb == b"RETR" and (decoded := decode(rest)) is not None:
                t.complete.setdefault(int(arg) if arg.isdigit() else -1, []).append(decoded[0])
            elif listing:
                t.uidls.append(listed(rest))
        if action in ("send", "stray"):
            return True
        await self.end(action)
        return False

    async def send(self, wire: Wire, action: str, keep: bool) -> bytes:
        """Send ``wire`` whole, or its first bytes for the actions that cut
        it short; what was sent when ``keep``, else b""."""
        if action in ("close", "stall"):
            return b""
        limit = None
        if action in ("cut", "hold"):
            limit = self.script.cut_at(len(wire))
        elif action == "drip":  # soon: rpop's deadline for the answer grows with what came of it
            limit = self.script.cut_at(min(len(wire), DRIP_AFTER))
        kept = []
        for chunk in wire.chunks(limit):
            self.writer.write(chunk)
            if keep:
                kept.append(chunk)
            await self.writer.drain()
        if action == "stray":
            stray = self.script.pick(STRAYS)
            kept.append(stray)  # it may complete the answer: ".\r\n" after a body without its end
            self.writer.write(stray)
            await self.writer.drain()
        return b"".join(kept) if keep else b""

    async def end(self, action: str) -> None:
        """After an answer cut short: close at once, wait for the client to
        give up, or drip bytes until it does."""
        if action in ("stall", "hold"):
            await self.until_eof()
        elif action == "drip":
            await self.drip()

    async def read_line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            data = await self.reader.read(65536)
            if not data or len(self.buffer) > 1 << 20:
                return None
            self.buffer += data
        text, _, self.buffer = self.buffer.partition(b"\n")
        return text.rstrip(b"\r")

    async def until_eof(self) -> None:
        while await self.reader.read(65536):
            pass

    async def drip(self) -> None:
        """An answer that never ends, a byte every :data:`DRIP` seconds."""
        eof = asyncio.ensure_future(self.until_eof())
        try:
            while not eof.done():
                self.writer.write(b"x")
                await asyncio.sleep(DRIP)
        finally:
            eof.cancel()


# --- the checks -------------------------------------------------------------------


def check(t: Transcript, error: str | None, detail: str, delivered: list[bytes], remembered: set[str],
          leave: bool) -> list[str]:
    """What went wrong in one case (empty: nothing)."""
    problems = []
    if error == RpopError.code or error not in (None, HUNG, *ERROR_CODES):
        problems.append(f"ended in no known error code: {error!r}: {detail[:300]}")
    by_content: dict[bytes, set[int]] = collections.defaultdict(set)
    for number, contents in t.complete.items():
        for content in contents:
            by_content[content].add(number)
    delivered_numbers: set[int] = set()
    for content, copies in collections.Counter(delivered).items():
        numbers = by_content.get(content, set())
        if not numbers:
            problems.append(f"delivered a message the server never sent whole: {content[:120]!r}")
        elif copies > len(numbers):
            problems.append(f"delivered more copies than RETR answers: {copies} of what RETR {sorted(numbers)} sent")
        delivered_numbers |= numbers
    for uid in remembered:
        if not any(uid.encode("utf-8", "surrogateescape") in uids.get(n, ())
                   for uids in t.uidls for n in delivered_numbers):
            problems.append(f"remembered a UID no delivered message was listed with: {uid!r}")
    for number in t.deleted:
        if number not in delivered_numbers:
            problems.append(f"deleted a message not delivered: DELE {number}")
    if error is None and t.asked_listing and t.honest_listing:
        missing = [n for n in range(1, len(t.mailbox) + 1) if n not in delivered_numbers]
        if missing:
            problems.append(f"succeeded without bringing every message of an honest listing: {missing} missing")
    leaked = leaks(detail, windows(secret_forms([PASSWORD], [s.decode("latin-1") for s in t.secrets])))
    if leaked:
        problems.append(f"a secret in the error detail: {leaked[0]!r} in {detail[:200]}")
    return problems


# --- the engine -------------------------------------------------------------------


@attrs.define
class FuzzResult:
    """What a run found (the JSON of the bench command)."""

    cases: int = 0
    seconds: float = 0.0
    rate: float = 0.0  # cases a second
    outcomes: dict[str, int] = attrs.field(factory=dict)  # error code (or "ok") -> cases
    failures: list[str] = attrs.field(factory=list)  # each hypothesis run that failed: the case, to replay
    failed_runs: int = 0
    failure_kinds: dict[str, int] = attrs.field(factory=dict)  # what the failing case of each run did -> runs
    slowest_poll: float = 0.0
    peak_traced: int = 0  # bytes, the largest peak of one traced case
    traced: int = 0  # cases traced
    rss_growth: int = 0  # bytes, the most a process grew above its size at the start
    runs: int = 0  # hypothesis runs
    jobs: int = 1


def merged(results: list[FuzzResult], seconds: float, jobs: int) -> FuzzResult:
    """The results of processes that ran ``jobs`` at a time for ``seconds``."""
    total = FuzzResult(jobs=jobs, seconds=round(seconds, 1))
    for r in results:
        total.cases += r.cases
        for code, n in r.outcomes.items():
            total.outcomes[code] = total.outcomes.get(code, 0) + n
        total.failures += r.failures[:LISTED - len(total.failures)]
        total.failed_runs += r.failed_runs
        for kind, n in r.failure_kinds.items():
            total.failure_kinds[kind] = total.failure_kinds.get(kind, 0) + n
        total.slowest_poll = max(total.slowest_poll, r.slowest_poll)
        total.peak_traced = max(total.peak_traced, r.peak_traced)
        total.traced += r.traced
        total.rss_growth = max(total.rss_growth, r.rss_growth)
        total.runs += r.runs
    total.rate = round(total.cases / max(seconds, 1e-9), 1)
    return total


def kind_of(failure: BaseException) -> str:
    """What a failing case did, in a few words: the first thing
    :func:`check` found, without its details."""
    inner = getattr(failure, "exceptions", None)
    if inner:
        return f"{type(failure).__name__}: {kind_of(inner[0])}"
    if not isinstance(failure, CaseFailed):
        return f"{type(failure).__name__}: {str(failure)[:80]}"
    return str(failure).split(": ", 1)[0]


def problems(result: FuzzResult, wanted: int | None = None) -> list[str]:
    """What the run found wrong (empty: nothing)."""
    found = []
    if result.failed_runs:
        found.append(f"{result.failed_runs} hypothesis runs found a failing case")
    if wanted is not None and result.cases < wanted:
        found.append(f"only {result.cases:,} of {wanted:,} cases ran")
    return found


def limits() -> dict:
    """The bounds the cases are held to, for the report."""
    return {"timeout_s": TIMEOUT, "hang_limit_s": HANG_LIMIT, "rss_bound_mib": RSS_BOUND >> 20,
            "memory_bound_mib": MEMORY_BOUND >> 20, "traced_every": TRACED_EVERY, "drip_s": DRIP,
            "drip_after_bytes": DRIP_AFTER}


class Watchdog(threading.Thread):
    """Samples the resident memory; past ``limit`` it interrupts the main
    thread (the case then fails) rather than let the machine run out."""

    def __init__(self, limit: int):
        super().__init__(name="fuzz-memory-watchdog", daemon=True)
        self.limit, self.peak, self.tripped = limit, rss(), False
        self.stopped = threading.Event()
        # interrupt_main() does nothing while SIGINT is ignored, and a shell
        # ignores it for the commands it starts in the background (nohup,
        # "&"): without this, a long run started that way had no bound.
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            now = rss()
            self.peak = max(self.peak, now)
            if now > self.limit and not self.tripped:
                self.tripped = True
                _thread.interrupt_main()


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Problems(logging.Handler):
    """Records what rpop logs with a traceback."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage() + (" (with a traceback)" if record.exc_info else ""))


class CaseFailed(AssertionError):
    pass


class Engine:
    """A site with one record per login mechanism and leave mode, polling
    the hostile server, in one event loop."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_exception)
        self.loop_problems: list[str] = []
        self.server = HostileServer()
        self.result = FuzzResult()
        self.logged = _Problems()

    def __enter__(self) -> "Engine":
        self.loop.run_until_complete(self._open())
        logger = logging.getLogger("rpop")
        self._saved = logger.propagate
        logger.propagate = False
        logger.addHandler(self.logged)
        return self

    def __exit__(self, *exc) -> None:
        logger = logging.getLogger("rpop")
        logger.removeHandler(self.logged)
        logger.propagate = self._saved
        self.loop.run_until_complete(self._close())
        self.loop.close()

    async def _open(self) -> None:
        await self.server.start()
        declaration = "".join(
            remote("127.0.0.1", self.server.port, account=f"fz-{auth}-{'keep' if leave else 'take'}",
                   password=PASSWORD, auth=auth, leave=leave)
            for auth in AUTHS for leave in (True, False))
        self.site = await open_site(self.folder, declaration, "allow_self_poll = true\nuse_apop = true\n")
        self.agent = self.site.delivery_agent()
        self.ctx = await self.site.poll_context(self.agent)
        self.records = [attrs.evolve(r, timeout=TIMEOUT) for r in await self.site.store.list_records()]
        self.maildir = self.folder / "mail" / "example.test" / "alice"

    async def _close(self) -> None:
        await self.server.stop()
        await self.agent.close()
        await self.site.close()

    def _loop_exception(self, loop, context: dict) -> None:
        self.loop_problems.append(str(context.get("exception") or context.get("message")))

    def case(self, data) -> None:
        """One poll against answers drawn from ``data``; raises CaseFailed."""
        record = data.draw(st.sampled_from(self.records))
        tape = data.draw(st.binary(min_size=TAPE, max_size=TAPE))
        self.server.script = Script(Tape(tape))
        self.server.transcript = t = Transcript()
        self.loop_problems.clear()
        self.logged.records.clear()
        traced = self.result.cases % TRACED_EVERY == 0
        self.watchdog.limit = rss() + RSS_BOUND
        if traced:
            tracemalloc.start()
        started = time.monotonic()
        poll = self.loop.create_task(self._poll(record))
        try:
            error, detail, remembered = self.loop.run_until_complete(poll)
        except KeyboardInterrupt:
            if not self.watchdog.tripped:
                raise
            poll.cancel()
            while not poll.done():  # the interrupt comes out of each task it went through
                with contextlib.suppress(KeyboardInterrupt):
                    self.loop.run_until_complete(asyncio.gather(poll, return_exceptions=True))
            self.loop.run_until_complete(self.server.settle())
            self._delivered()
            self.watchdog.tripped = False
            raise CaseFailed(f"grew past the resident memory bound: more than {RSS_BOUND >> 20} MiB above its "
                             f"size when the case began\n[record {record.auth}, leave={record.leave}]\n"
                             + "\n".join(t.dialogue)) from None
        finally:
            if traced:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
        took = time.monotonic() - started
        if t.error is not None:
            raise t.error
        delivered = self._delivered()
        problems = check(t, error, detail, delivered, remembered, record.leave)
        if took > HANG_LIMIT or error == HUNG:
            problems.insert(0, f"ran past the hang limit: {took:.1f}s")
        if traced and peak > MEMORY_BOUND:
            problems.append(f"allocated past the memory bound: {peak >> 20} MiB at its peak")
        problems += [f"left an exception to the event loop: {p}" for p in self.loop_problems]
        problems += [f"logged an error: {p}" for p in self.logged.records]
        r = self.result
        r.cases += 1
        r.outcomes[error or "ok"] = r.outcomes.get(error or "ok", 0) + 1
        r.slowest_poll = max(r.slowest_poll, took)
        if traced:
            r.peak_traced = max(r.peak_traced, peak)
            r.traced += 1
        if problems:
            raise CaseFailed("; ".join(problems) + f"\n[record {record.auth}, leave={record.leave}, "
                             f"error {error}: {detail[:200]}]\nreplay: {record.id}:{tape.rstrip(bytes(1)).hex()}\n"
                             + "\n".join(t.dialogue))

    async def _poll(self, record) -> tuple[str | None, str, set[str]]:
        store = self.ctx.store
        await store.forget_uids_except(record.mailbox, set())
        try:
            result = await asyncio.wait_for(retrieval.poll_record(self.ctx, record), HANG_LIMIT)
        except TimeoutError:
            result = None
        finally:
            await self.server.settle()
        remembered = await store.seen_uids(record.mailbox)
        if result is None:
            return HUNG, f"no end within {HANG_LIMIT:g}s", remembered
        return result.error, result.detail, remembered

    def _delivered(self) -> list[bytes]:
        """The messages delivered by the case, as the server sent them (the
        two lines rpop puts on top taken off); the Maildir emptied."""
        found = []
        for sub in ("new", "cur", "tmp"):
            folder = self.maildir / sub
            for entry in os.scandir(folder) if folder.is_dir() else ():
                with open(entry.path, "rb") as f:
                    data = f.read()
                os.unlink(entry.path)
                if sub == "tmp":
                    raise CaseFailed(f"left a file in the Maildir's tmp/: {data[:80]!r}")
                found.append(_without_added_fields(data))
        return found

    def replay(self, case: str) -> str:
        """Run again the case ``RECORD:TAPE`` (hex) a failure names; what it
        found ("" for nothing)."""
        record_id, _, tape = case.partition(":")
        record = next(r for r in self.records if r.id == int(record_id))
        values = [record, bytes.fromhex(tape).ljust(TAPE, bytes(1))]
        self.watchdog = Watchdog(rss() + RSS_BOUND)
        try:
            self.case(_Replayed(values))
        except CaseFailed as exc:
            return str(exc)
        return ""

    def _failed(self, failure: Exception, run_seed: int) -> None:
        """Count a hypothesis run's failing case; describe the first ones."""
        r = self.result
        r.failed_runs += 1
        kind = kind_of(failure)
        r.failure_kinds[kind] = r.failure_kinds.get(kind, 0) + 1
        if len(r.failures) < LISTED:
            inner = "".join(f"\n  {type(e).__name__}: {e}" for e in getattr(failure, "exceptions", ()))
            r.failures.append(f"seed {run_seed}: {type(failure).__name__}: {failure}{inner}"[:6000])

    def run(self, cases: int, first_seed: int, *, batch: int = BATCH, shrink: bool = True,
            log: Callable[[str], None] = lambda text: None) -> FuzzResult:
        """``cases`` cases in hypothesis runs of ``batch``, seeded
        ``first_seed``, ``first_seed + 1``, ...; a failed run is described
        in the result and the next one begins."""
        r = self.result
        clock = time.monotonic()
        start = rss()
        self.watchdog = Watchdog(start + RSS_BOUND)
        self.watchdog.start()
        phases = [Phase.generate] + ([Phase.shrink] if shrink else [])
        try:
            run = 0
            while r.cases < cases:
                n = min(batch, cases - r.cases)
                before = r.cases

                @settings(max_examples=n, database=None, deadline=None, derandomize=False, phases=phases,
                          suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
                @seed(first_seed + run)
                @given(st.data())
                def one(data):
                    self.case(data)

                try:
                    one()
                except KeyboardInterrupt:
                    if not self.watchdog.tripped:
                        raise
                    # Between polls: the process stays this large, so its run ends here.
                    self._failed(CaseFailed(f"grew past the resident memory bound: more than {RSS_BOUND >> 20} MiB "
                                            "above its size when the last case began, between cases"),
                                            first_seed + run)
                    break
                except Exception as exc:  # CaseFailed, hypothesis's own (a flaky failure), a bug
                    self._failed(exc, first_seed + run)
                run += 1
                r.runs = run
                if r.cases == before:
                    break  # hypothesis ran nothing more: the strategies are broken
                log(f"  {r.cases:,} cases, {r.cases / (time.monotonic() - clock):.0f}/s, "
                    f"{r.failed_runs} failed runs")
        finally:
            self.watchdog.stopped.set()
        r.seconds = round(time.monotonic() - clock, 1)
        r.rate = round(r.cases / max(r.seconds, 1e-9), 1)
        r.rss_growth = self.watchdog.peak - start
        r.slowest_poll = round(r.slowest_poll, 3)
        return r


class _Replayed:
    """Hypothesis's ``data`` for a case run again: the values it drew."""

    def __init__(self, values: list):
        self.values = values

    def draw(self, strategy):
        return self.values.pop(0)


_ADDED = re.compile(rb"\AReturn-Path: [^\n]*\nDelivered-To: [^\n]*\n")


def _without_added_fields(data: bytes) -> bytes:
    return _ADDED.sub(b"", data, count=1)


def fuzz(folder: Path, cases: int, first_seed: int = 1, **options) -> FuzzResult:
    """Run ``cases`` cases in this process with a site in ``folder`` (made
    here, removed at the end)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with Engine(folder) as engine:
            return engine.run(cases, first_seed, **options)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: Cases one process takes at the most; a long run's jobs start a fresh
#: process for each share this size, so that what the allocator keeps
#: after large answers, and hypothesis's memory of one run (see
#: :data:`BATCH`), is given back.  rpop's own memory does not grow from
#: poll to poll: polls driven by random tapes without hypothesis keep the
#: process flat, and no object rpop allocated in one poll outlives it.
PROCESS_CASES = 50_000
#: Seeds of one process's hypothesis runs start this far from the next's.
SEEDS_PER_PROCESS = 1_000_000
# A job's interpreter imports rpop's code from the folder given first (a
# snapshot, or the work tree), the harness from the second.
_JOB = "import sys; sys.path[:0] = sys.argv[1:3]; del sys.argv[1:3]; from bench.faults.fuzz import job; job()"
ROOT = Path(__file__).resolve().parents[2]


def run_jobs(folder: Path, cases: int, first_seed: int, jobs: int, *, code: Path = ROOT, **options) -> FuzzResult:
    """Share ``cases`` among processes of at most :data:`PROCESS_CASES`,
    ``jobs`` of them side by side, each importing rpop from ``code``; their
    results merged."""
    clock = time.monotonic()
    shares = [min(PROCESS_CASES, cases - start) for start in range(0, cases, PROCESS_CASES)]

    def share(k: int) -> FuzzResult:
        out = folder / f"share-{k}.json"
        argv = [sys.executable, "-c", _JOB, str(code), str(ROOT), "--cases", str(shares[k]),
                "--seed", str(first_seed + k * SEEDS_PER_PROCESS), "--batch", str(options.get("batch", BATCH)),
                "--folder", str(folder / f"share-{k}"), "--out", str(out), "--name", f"share {k + 1}/{len(shares)}"]
        if not options.get("shrink", True):
            argv.append("--no-shrink")
        done = subprocess.run(argv, cwd=folder)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"a fuzz process ended with status {done.returncode} and no results")
        return FuzzResult(**json.loads(out.read_text()))

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(share, range(len(shares))))
    return merged(results, time.monotonic() - clock, jobs)


def job() -> None:
    """One process of :func:`run_jobs` (its arguments on the command line)."""
    p = argparse.ArgumentParser()
    for name in ("--cases", "--seed", "--batch"):
        p.add_argument(name, type=int, required=True)
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="job")
    p.add_argument("--no-shrink", action="store_true")
    args = p.parse_args()
    result = fuzz(args.folder, args.cases, args.seed, batch=args.batch, shrink=not args.no_shrink,
                  log=lambda text: print(f"  {args.name}:{text}", flush=True))
    args.out.write_text(json.dumps(attrs.asdict(result)))
