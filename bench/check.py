"""Did a run deliver correctly?

Every retriever adds its own trace fields on top (Return-Path,
Delivered-To, Received, ...) and rpop drops a domain mailbox's special
field, so a delivered copy is compared by what must not change: its
Message-ID and Subject, and its body byte for byte (line endings taken as
LF).  Every expected message must be in its own Maildir exactly once;
anything else -- missing, twice, in another user's Maildir, a changed
body, a message nobody sent -- fails the run.

One change is tolerated and reported: a body that differs only in how the
header lines of its MIME parts are folded.  getmail6 re-serialises every
message with Python's ``email`` package, which re-wraps a MIME part's
``Content-Type`` longer than 78 characters; the part means the same, the
bytes differ.  Such runs pass with a note, and the table marks them.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Mapping

import attrs

from bench.corpus import Fingerprint, body_digest, header_value, unfolded_digest


@attrs.frozen
class Verdict:
    ok: bool
    delivered: int
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # tolerated differences

    def summary(self) -> str:
        return "ok" if self.ok else "; ".join(self.problems)




def maildir_files(folder: Path) -> list[Path]:
    """Messages in ``new/`` and ``cur/`` of a Maildir (none if it is missing)."""
    found = []
    for sub in ("new", "cur"):
        try:
            names = os.listdir(folder / sub)
        except FileNotFoundError:
            continue
        found += [folder / sub / n for n in names if not n.startswith(".")]
    return found


def check(maildirs: Mapping[str, Path], expected: Mapping[str, Mapping[bytes, Fingerprint]]) -> Verdict:
    """``maildirs``: local user -> the Maildir a tool delivered that user's
    mail to (users that should get nothing may be listed too);
    ``expected``: local user -> Message-ID -> fingerprint."""
    owner_of = {mid: user for user, msgs in expected.items() for mid in msgs}
    counts: collections.Counter[str] = collections.Counter()
    seen: dict[str, collections.Counter[bytes]] = {user: collections.Counter() for user in maildirs}
    examples: dict[str, str] = {}
    refolded = 0
    delivered = 0

    def problem(kind: str, detail: str) -> None:
        counts[kind] += 1
        examples.setdefault(kind, detail)

    for user, folder in maildirs.items():
        want = expected.get(user, {})
        for path in maildir_files(folder):
            data = path.read_bytes().replace(b"\r\n", b"\n")
            delivered += 1
            end = data.find(b"\n\n")
            if end < 0:
                problem("no header/body split", str(path))
                continue
            header, body = data[: end + 1], data[end + 2:]
            mid = header_value(header, b"message-id")
            fp = want.get(mid)
            if fp is None:
                if mid in owner_of:
                    problem("in the wrong Maildir", f"{mid.decode(errors='replace')} for {owner_of[mid]} in {user}'s")
                else:
                    problem("unexpected", f"{path} (Message-ID {mid!r})")
                continue
            seen[user][mid] += 1
            if seen[user][mid] == 2:
                problem("delivered twice", mid.decode(errors="replace"))
            if header_value(header, b"subject") != fp.subject:
                problem("Subject changed", mid.decode(errors="replace"))
            if body_digest(body) != fp.body_digest:
                if fp.unfolded_digest and unfolded_digest(body) == fp.unfolded_digest:
                    refolded += 1
                else:
                    problem("body differs", f"{mid.decode(errors='replace')} ({path})")
    for user, msgs in expected.items():
        got = seen.get(user, collections.Counter())
        for mid in msgs:
            if got[mid] == 0:
                problem("missing", f"{mid.decode(errors='replace')} for {user}")
    problems = tuple(f"{n} {kind} (e.g. {examples[kind]})" for kind, n in counts.items())
    notes = (f"{refolded} bodies with MIME part headers re-folded (same after unfolding)",) if refolded else ()
    return Verdict(ok=not problems, delivered=delivered, problems=problems, notes=notes)
