"""The scenarios: what is on the server, how it is reached, what must arrive.

A :class:`Corpus` is a set of server mailboxes with their messages; several
scenarios may share one (``e`` polls ``a``'s mailbox over TLS, ``w2`` polls
``d``'s mailboxes through the latency proxy), and it is seeded once.  A
:class:`Scenario` says which corpus, whether through TLS or the proxy, and
which retrievers take part.  ``quick`` sizes keep the smoke test short.
"""

from __future__ import annotations

import zlib
from typing import Callable, Iterator

import attrs

from bench import corpus as gen
from bench.corpus import Fingerprint

PASSWORD = "bench-pw"
LOCAL_DOMAIN = "bench.test"
#: The domain-wide scenario's local domain, users and special field.
MULTIDROP_DOMAIN = "example.test"
MULTIDROP_USERS = ("alice", "bob", "carol", "dave", "erin")
MULTIDROP_HEADER = "X-Real-To"


@attrs.frozen
class Mailbox:
    """One server mailbox and, for a per-user mailbox, the local user whose
    Maildir receives it (a domain mailbox's mail goes where its header says)."""

    account: str
    local: str


@attrs.frozen
class Multidrop:
    header: str
    domain: str
    users: tuple[str, ...]


@attrs.frozen
class Corpus:
    """Server mailboxes, and how to make their messages: ``messages(box)``
    yields ``(local user, bytes)``."""

    name: str
    mailboxes: tuple[Mailbox, ...]
    messages: Callable[[Mailbox], Iterator[tuple[str, bytes]]]
    multidrop: Multidrop | None = None


@attrs.frozen
class Scenario:
    id: str
    title: str
    corpus: str
    rtt_ms: float = 0.0  # 0: straight to Dovecot on loopback
    tls: bool = False  # implicit TLS (pop3s)
    concurrent: bool = False  # many mailboxes: rpop runs with processors = N
    tools: tuple[str, ...] = ("rpop", "mpop", "fetchmail", "getmail6")


@attrs.frozen
class Job:
    """What a retriever is asked to do in one run."""

    host: str
    port: int
    tls: bool
    ca_file: str | None
    mailboxes: tuple[Mailbox, ...]
    password: str
    multidrop: Multidrop | None
    processors: int
    domain: str = LOCAL_DOMAIN
    timeout: int = 120  # seconds without progress before a tool gives up (its own network timeout)

    @property
    def locals(self) -> tuple[str, ...]:
        """Every local user a correct run may deliver to."""
        if self.multidrop:
            return (*self.multidrop.users, "postmaster")
        return tuple(dict.fromkeys(m.local for m in self.mailboxes))


def _single(make) -> Callable[[Mailbox], Iterator[tuple[str, bytes]]]:
    def messages(box: Mailbox):
        for data in make(f"{box.account}@isp.example"):
            yield box.local, data
    return messages


def _boxes(prefix: str, n: int) -> tuple[Mailbox, ...]:
    width = len(str(n - 1))
    return tuple(Mailbox(f"{prefix}{i:0{width}d}", f"{prefix}{i:0{width}d}") for i in range(n))


def _many(tag: str, per_box: int) -> Callable[[Mailbox], Iterator[tuple[str, bytes]]]:
    def messages(box: Mailbox):
        seed = zlib.crc32(f"{tag}/{box.account}".encode())
        for data in gen.realistic(seed, f"{tag}-{box.account}", per_box, f"{box.account}@isp.example",
                                  attachment_share=0):
            yield box.local, data
    return messages


def corpora(quick: bool) -> dict[str, Corpus]:
    """Every corpus, at full or quick size."""
    n_a, n_b, size_c = (30, 200, 3_000_000) if quick else (2_000, 20_000, 100_000_000)
    d_boxes, d_msgs, k_boxes = (4, 3, 10) if quick else (100, 20, 1000)
    n_f, n_w = (25, 12) if quick else (500, 500)
    attach = 0.1 if quick else 0.04
    attach_range = (50_000, 300_000) if quick else (200_000, 2_000_000)

    def domain_messages(box: Mailbox):
        return gen.domain_wide(6, "f", n_f, f"{box.account}@isp.example", MULTIDROP_USERS,
                               MULTIDROP_DOMAIN, MULTIDROP_HEADER)

    return {
        c.name: c for c in (
            Corpus("realistic", (Mailbox("real", "real"),), _single(lambda to: gen.realistic(
                1, "a", n_a, to, attachment_share=attach, attachment_range=attach_range))),
            Corpus("small", (Mailbox("small", "small"),), _single(lambda to: gen.uniform_small(2, "b", n_b, to))),
            Corpus("huge", (Mailbox("huge", "huge"),), _single(lambda to: gen.one_huge(3, "c", size_c, to))),
            Corpus("boxes", _boxes("d", d_boxes), _many("d", d_msgs)),
            Corpus("boxes1k", _boxes("k", k_boxes), _many("k", 2)),
            Corpus("domain", (Mailbox("domainbox", ""),), domain_messages,
                   Multidrop(MULTIDROP_HEADER, MULTIDROP_DOMAIN, MULTIDROP_USERS)),
            Corpus("wan", (Mailbox("wan", "wan"),), _single(lambda to: gen.realistic(
                5, "w", n_w, to, attachment_share=attach, attachment_range=attach_range))),
        )
    }


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("a", "2,000 realistic messages (~92 MB), loopback", "realistic"),
    Scenario("b", "20,000 messages of ~4 KB: per-message overhead", "small"),
    Scenario("c", "one ~99 MB message: peak memory", "huge"),
    Scenario("d", "100 mailboxes x 20 messages in one cycle", "boxes", concurrent=True),
    Scenario("d1k", "1,000 mailboxes x 2 messages in one cycle", "boxes1k", concurrent=True),
    Scenario("e", "scenario (a) over implicit TLS", "realistic", tls=True),
    Scenario("f", "domain mailbox, 500 messages, X-Real-To for 5 users", "domain",
             tools=("rpop", "fetchmail", "getmail6")),
    Scenario("w", "500 realistic messages at 50 ms RTT", "wan", rtt_ms=50.0),
    Scenario("w2", "100 mailboxes x 20 at 50 ms RTT", "boxes", rtt_ms=50.0, concurrent=True),
)

BY_ID = {s.id: s for s in SCENARIOS}
QUICK_TITLES = {
    "a": "30 realistic messages, loopback", "b": "200 messages of ~4 KB", "c": "one 3 MB message",
    "d": "4 mailboxes x 3", "d1k": "10 mailboxes x 2", "e": "(a) over implicit TLS",
    "f": "domain mailbox, 25 messages, 5 users", "w": "12 realistic messages at 50 ms RTT",
    "w2": "4 mailboxes x 3 at 50 ms RTT",
}


def select(spec: str | None) -> list[Scenario]:
    """``"a,b,w2"`` -> those scenarios, in the canonical order; None: all."""
    if not spec:
        return list(SCENARIOS)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in BY_ID]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(BY_ID)}")
    return [s for s in SCENARIOS if s.id in wanted]


Expected = dict[str, dict[bytes, Fingerprint]]
