"""Deterministic mail for the benchmark.

Every message comes from a ``random.Random(seed)``, so a corpus is the same
bytes on every machine and every run.  Messages look like what an ISP's
mailbox holds: a Return-Path and two Received fields, From/To/Subject/Date/
Message-ID, UTF-8 text with lines of ordinary length (some starting with a
dot, so dot-stuffing is exercised), and for the big ones a MIME multipart
with a base64 attachment of random bytes.  Lines end in LF, as in a Maildir;
Dovecot serves them with CRLF.

What the harness keeps of a corpus is its :class:`Fingerprint` per message
(Message-ID, Subject, a digest of the body), not the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
from typing import Iterator

import attrs

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will more can who about out "
    "meeting invoice report budget schedule review draft project quarter release customer server update team "
    "please thanks attached regards tomorrow monday friday deadline agenda minutes proposal contract delivery "
    "shipment order account payment balance statement summary figures forecast estimate meeting-room notes "
    "café naïve résumé über straße déjà-vu smörgåsbord façade jalapeño crème brûlée "
    "https://example.org/a/b?c=d user@example.net +49-30-1234567 2024-03-17 v1.2.3 #4711 (see below) "
    "—— «quoted» “curly” 10:30 €1,234.50 50% a/b/c foo_bar baz-qux"
).split()

_FIRST = "Anna Ben Carla David Eva Frank Greta Hugo Ines Jonas Karin Lukas Mia Nils Olga Paul".split()
_LAST = "Müller Schmidt Novak Rossi García Dubois Jensen Kowalski Silva Berg Olsen Costa".split()
_TOPICS = ("Quarterly figures", "Re: Agenda for Monday", "Invoice", "Fwd: Contract draft",
           "Holiday schedule", "Server maintenance window", "Re: Re: Budget review",
           "Photos from the trip", "Minutes of the meeting", "Order confirmation")
_KINDS = (("application/pdf", "pdf"), ("image/jpeg", "jpg"), ("application/zip", "zip"),
          ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"))


@attrs.frozen
class Fingerprint:
    """What a delivered copy must match: same Message-ID, same Subject,
    same body bytes (line endings normalised to LF)."""

    message_id: bytes
    subject: bytes
    body_digest: bytes
    size: int
    unfolded_digest: bytes = b""  # of the body with folded lines joined; only for multipart bodies


def body_digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


_FOLD = re.compile(rb"[ \t]*\n[ \t]+")


def unfolded_digest(body: bytes) -> bytes:
    """The digest of a body with every folded line joined to the one before
    (MIME part headers compared regardless of how they are wrapped)."""
    return body_digest(_FOLD.sub(b" ", body))


def fingerprint(data: bytes) -> Fingerprint:
    """The fingerprint of one message as generated here (LF lines, a
    header block ended by a blank line)."""
    end = data.index(b"\n\n")
    header, body = data[: end + 1], data[end + 2:]
    multipart = b"multipart/" in header_value(header, b"content-type").lower()
    return Fingerprint(
        message_id=header_value(header, b"message-id"),
        subject=header_value(header, b"subject"),
        body_digest=body_digest(body),
        size=len(data),
        unfolded_digest=unfolded_digest(body) if multipart else b"",
    )


def header_value(header: bytes, name: bytes) -> bytes:
    """The first value of an unfolded, single-line field (as generated here)."""
    lower = name.lower() + b":"
    for line in header.split(b"\n"):
        if line[: len(lower)].lower() == lower:
            return line[len(lower):].strip()
    return b""


class Writer:
    """Makes the messages of one corpus; ``seed`` and ``tag`` fix them all."""

    def __init__(self, seed: int, tag: str, domain: str = "bench.test"):
        self.rng = random.Random(seed)
        self.tag = tag
        self.domain = domain
        self.count = 0
        self._lines = [self._line() for _ in range(4096)]

    def _line(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.04:
            return b"\n"  # paragraph break
        width = rng.randint(30, 76)
        words: list[str] = []
        length = 0
        while length < width:
            w = rng.choice(_WORDS)
            words.append(w)
            length += len(w) + 1
        text = " ".join(words)
        if roll < 0.07:
            text = "." + text  # must survive dot-stuffing
        elif roll < 0.09:
            text = "> " + text
        return text.encode("utf-8") + b"\n"

    def text(self, size: int) -> bytes:
        """Body text of about ``size`` bytes, ending in a newline."""
        out: list[bytes] = []
        total = 0
        while total < size:
            batch = self.rng.choices(self._lines, k=max(8, (size - total) // 50))
            for line in batch:
                out.append(line)
                total += len(line)
                if total >= size:
                    break
        return b"".join(out)

    def _header(self, to: str, subject: str, extra: dict[str, str], content: list[str]) -> tuple[bytes, str]:
        rng = self.rng
        self.count += 1
        n = self.count
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        sender = f"{first.lower()}.{n % 97}@far{n % 7}.example"
        day = 1 + n % 28
        hh, mm, ss = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        date = f"{['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][n % 7]}, {day} Mar 2024 {hh:02d}:{mm:02d}:{ss:02d} +0100"
        message_id = f"<{self.tag}.{n}.{rng.getrandbits(48):012x}@far{n % 7}.example>"
        ip = f"192.0.2.{1 + n % 250}"
        lines = [
            f"Return-Path: <{sender}>",
            f"Received: from mx{n % 3}.isp.example (mx{n % 3}.isp.example [198.51.100.{1 + n % 9}])",
            f"\tby pop.isp.example (Postfix) with ESMTPS id {rng.getrandbits(40):010X}",
            f"\tfor <{to}>; {date}",
            f"Received: from smtp.far{n % 7}.example (smtp.far{n % 7}.example [{ip}])",
            f"\tby mx{n % 3}.isp.example (Postfix) with ESMTPS id {rng.getrandbits(40):010X};",
            f"\t{date}",
            f'From: "{first} {last}" <{sender}>',
            f"To: <{to}>",
            f"Subject: {subject} [{self.tag} {n}]",
            f"Date: {date}",
            f"Message-ID: {message_id}",
        ]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        lines += ["MIME-Version: 1.0", *content]
        return ("\n".join(lines) + "\n\n").encode("utf-8"), message_id

    def text_message(self, size: int, to: str, extra: dict[str, str] | None = None) -> bytes:
        """A text/plain message of about ``size`` bytes in all."""
        head, _ = self._header(to, self.rng.choice(_TOPICS), extra or {},
                               ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"])
        return head + self.text(max(64, size - len(head)))

    def attachment_message(self, size: int, to: str, extra: dict[str, str] | None = None) -> bytes:
        """A multipart/mixed message of about ``size`` bytes: a short text
        part and one base64 attachment."""
        rng = self.rng
        boundary = f"=_{self.tag}_{rng.getrandbits(64):016x}"
        head, _ = self._header(to, rng.choice(_TOPICS), extra or {},
                               [f'Content-Type: multipart/mixed; boundary="{boundary}"'])
        note = self.text(rng.randint(300, 1500))
        kind, ext = rng.choice(_KINDS)
        raw = max(1, (size - len(head) - len(note) - 400) * 57 // 78)
        payload = base64.encodebytes(rng.randbytes(raw))
        parts = [
            head,
            b"This is a multi-part message in MIME format.\n\n",
            f"--{boundary}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n".encode(),
            note,
            f"\n--{boundary}\nContent-Type: {kind}; name=\"file{self.count}.{ext}\"\n"
            f"Content-Transfer-Encoding: base64\n"
            f"Content-Disposition: attachment; filename=\"file{self.count}.{ext}\"\n\n".encode(),
            payload,
            f"\n--{boundary}--\n".encode(),
        ]
        return b"".join(parts)

    def log_uniform(self, low: int, high: int) -> int:
        return int(math.exp(self.rng.uniform(math.log(low), math.log(high))))


# --- the corpora ------------------------------------------------------------


def realistic(seed: int, tag: str, count: int, to: str, *, attachment_share: float = 0.04,
              text_range=(2_000, 50_000), attachment_range=(200_000, 2_000_000)) -> Iterator[bytes]:
    """Mostly 2-50 KB text, ``attachment_share`` of 0.2-2 MB attachments,
    sizes log-uniform (many small, few large, as in real mailboxes)."""
    w = Writer(seed, tag)
    every = round(1 / attachment_share) if attachment_share else 0
    for i in range(count):
        if every and i % every == every // 2:
            yield w.attachment_message(w.log_uniform(*attachment_range), to)
        else:
            yield w.text_message(w.log_uniform(*text_range), to)


def uniform_small(seed: int, tag: str, count: int, to: str, size=(3_500, 4_500)) -> Iterator[bytes]:
    """``count`` text messages of about 4 KB."""
    w = Writer(seed, tag)
    for _ in range(count):
        yield w.text_message(w.rng.randint(*size), to)


def one_huge(seed: int, tag: str, size: int, to: str) -> Iterator[bytes]:
    """One multipart message of ``size`` bytes, nearly all base64."""
    yield Writer(seed, tag).attachment_message(size, to)


def domain_wide(seed: int, tag: str, count: int, box: str, users: tuple[str, ...], domain: str,
                header: str) -> Iterator[tuple[str, bytes]]:
    """``(local user, message)`` for a domain's catch-all mailbox: each
    message names its one local recipient in ``header``."""
    w = Writer(seed, tag)
    for i in range(count):
        user = users[w.rng.randrange(len(users))]
        extra = {header: f"{user}@{domain}"}
        size = w.log_uniform(2_000, 50_000)
        if i % 50 == 25:
            yield user, w.attachment_message(w.log_uniform(100_000, 500_000), box, extra)
        else:
            yield user, w.text_message(size, box, extra)
