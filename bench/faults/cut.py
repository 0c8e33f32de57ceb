"""The connection cut at every byte offset of a session: the engine of
``python3 -m bench.faults cut`` and of ``tests/faults/test_cut.py``.

Between rpop and a real Dovecot stands a proxy that lets ``N`` bytes pass
one way -- client to server (``to-server``) or server to client
(``to-client``) -- and then closes both connections, as a network that
fails at that instant would.  For each ``N`` from 0 to the length of a
whole small session (two short messages: greeting, CAPA, USER/PASS,
STAT/UIDL, RETRs, DELEs, QUIT), one trial:

1. the remote mailbox is filled with two messages, each carrying a marker
   (``kill-marker-TRIAL-N``, as in :mod:`bench.faults.kill`);
2. ``rpop poll --once --json`` runs through the proxy cutting at ``N``: it
   must fail with a known error code (:data:`rpopcore.errors.ERROR_CODES`,
   not ``internal-error``) and print no traceback;
3. an unbroken ``rpop poll --once`` runs through the same proxy: it must
   succeed;
4. every marker is counted: none lost, none delivered twice, and with
   ``leave = false`` none left on the server.

The site is made and polled as in the kill test (:class:`kill.KillSite`:
``rpop init``, a declarative file, ``rpop apply``, ``log_level = "all"``),
so where each cut landed is the phase of rpop's last log line
(:func:`kill.phase_of`).  Trials run in ``lanes`` at once, each lane with
its own Dovecot user, site and proxy; every lane's session has the same
bytes, so an offset means the same instant in any lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Callable

import attrs

from bench.faults import kill
from bench.faults.findings import Findings, broken, unclear
from bench.proxy import CHUNK, LatencyProxy
from rpopcore.testing.dovecot import Dovecot

DIRECTIONS = ("to-server", "to-client")
#: Messages in the mailbox at each trial: a whole session stays small.
MESSAGES = 2
#: Lanes at most; Dovecot's users for them.
MAX_LANES = 8
USERS = {f"cut{lane}": f"cut{lane}-secret" for lane in range(MAX_LANES)}


def message(trial: int, number: int) -> bytes:
    """A short message with its marker; the same size in every trial (the
    trial number has a fixed width), so a session's bytes are too.  A line
    starting with a dot puts dot-stuffing on the way."""
    return (f"From: <sender@far.test>\nTo: <{kill.LOCAL_USER}@{kill.DOMAIN}>\nSubject: cut test {number}\n\n"
            f"kill-marker-{trial:07d}-{number}\n.a line that starts with a dot\nthe end\n").encode()


@attrs.frozen
class Cut:
    """Let ``offset`` bytes pass in ``direction``, then close both sides."""

    direction: str
    offset: int


class CuttingProxy(LatencyProxy):
    """A proxy without latency that cuts the connections it accepts while
    :attr:`cut` is set.  :attr:`carried` holds the bytes each way of the
    last connection, and whether it was cut."""

    def __init__(self, upstream_host: str, upstream_port: int):
        super().__init__(upstream_host, upstream_port, rtt_ms=0)
        self.cut: Cut | None = None
        self.carried: dict = {}

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        carried = self.carried = {"to-server": 0, "to-client": 0, "cut": False}
        ends = [client_w]
        with contextlib.suppress(OSError, asyncio.CancelledError):
            try:
                up_r, up_w = await asyncio.open_connection(*self.upstream)
                ends.append(up_w)
                pumps = {asyncio.create_task(_pump(client_r, up_w, "to-server", self.cut, carried)),
                         asyncio.create_task(_pump(up_r, client_w, "to-client", self.cut, carried))}
                # Until both ways have ended, or the cut came: then both sides close.
                while pumps and not carried["cut"]:
                    _, pumps = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for pump in pumps:
                    pump.cancel()
            finally:
                for end in ends:
                    end.close()
                self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str, cut: Cut | None,
                carried: dict) -> None:
    """Copy one way until end of stream (passed on as a half-close) or the
    cut (``carried["cut"]`` set once the bytes before it are written)."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            cutting = cut is not None and cut.direction == direction and carried[direction] + len(data) > cut.offset
            if cutting:
                data = data[: cut.offset - carried[direction]]
            carried[direction] += len(data)
            writer.write(data)
            await writer.drain()
            if cutting:
                carried["cut"] = True
                return
    except OSError:
        return


@attrs.define
class CutResult(Findings):
    """What the cuts in one direction, in one leave mode, did (the JSON of
    the bench command)."""

    direction: str
    leave: bool
    session_bytes: int = 0  # of a whole session, this way
    stride: int = 1
    trials: int = 0
    errors: dict[str, int] = attrs.field(factory=dict)  # error code of each broken poll -> trials
    phases: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(kill.PHASES, 0))
    lost: int = 0
    duplicated: int = 0
    extra_copies: int = 0
    stuck: int = 0
    not_cut: int = 0  # the session ended before the offset: nothing was tested
    unclear: int = 0  # broken polls that succeeded, or ended in no known code, or with a traceback
    failed_final_polls: int = 0
    poll_seconds: float = 0.0  # the mean of the broken polls
    seconds: float = 0.0


def problems(result: CutResult) -> list[str]:
    """The promises this direction broke (empty: none)."""
    return ["no trial ran"] * (result.trials == 0) + broken(result, (
        ("lost", "messages lost"), ("duplicated", "messages duplicated"),
        ("stuck", "messages stuck on the server with leave = false"),
        ("unclear", "broken polls without one clear error code"),
        ("not_cut", "sessions that ended before their cut"),
        ("failed_final_polls", "unbroken polls after a cut failed")))


class Lane:
    """A Dovecot user, a site polling it through a cutting proxy, run one
    trial at a time."""

    def __init__(self, number: int, folder: Path, dovecot: Dovecot, leave: bool, env: dict | None):
        self.user = f"cut{number}"
        self.proxy = CuttingProxy(dovecot.host, dovecot.pop3_port).start()
        self.site = kill.KillSite(folder, dovecot, "maildir", leave, env, remote=(self.user, USERS[self.user]),
                                  address=f"{self.proxy.host}:{self.proxy.port}")
        self.site.empty_mailboxes()

    def fill(self, trial: int) -> set[kill.Marker]:
        self.site.dovecot.put_many(self.user, [message(trial, n) for n in range(MESSAGES)])
        return {(trial, n) for n in range(MESSAGES)}

    def session_bytes(self) -> dict[str, int]:
        """Poll a full mailbox unbroken; the bytes it carried each way."""
        self.fill(0)
        poll = self.site.poll()
        if poll.returncode != 0 or poll.error:
            raise RuntimeError(f"an unbroken poll failed ({poll.error}); see {self.site.folder}")
        self.site.empty_mailboxes()
        return {d: self.proxy.carried[d] for d in DIRECTIONS}

    def trial(self, number: int, cut: Cut, result: CutResult, lock: threading.Lock) -> None:
        """Fill, poll cut, poll unbroken, count; into ``result``."""
        site = self.site
        expected = self.fill(number)
        self.proxy.cut = cut
        cut_poll = site.poll()
        self.proxy.cut = None
        was_cut, log = self.proxy.carried["cut"], site.log_text()
        final = site.poll()
        delivered, on_server = site.delivered(), site.on_server()
        site.empty_mailboxes()
        at = f"{cut.direction} {cut.offset}"
        with lock:
            result.trials += 1
            result.poll_seconds += cut_poll.seconds
            result.errors[str(cut_poll.error)] = result.errors.get(str(cut_poll.error), 0) + 1
            result.phases[phase_of(log)] += 1
            lost = expected - delivered.keys()
            duplicated = [m for m in expected if delivered[m] > 1]
            stuck = [] if site.leave else sorted(expected & on_server.keys())
            result.lost += len(lost)
            result.duplicated += len(duplicated)
            result.extra_copies += sum(delivered[m] - 1 for m in duplicated)
            result.stuck += len(stuck)
            for name, found in (("lost", lost), ("duplicated", duplicated), ("stuck", stuck)):
                if found:
                    result.note(f"{at}: {name} {sorted(found)}")
            if not was_cut:
                result.not_cut += 1
                result.note(f"{at}: the session ended before the cut")
            elif why := "the poll hung" if cut_poll.hung else unclear(cut_poll.error, cut_poll.stderr, log):
                result.unclear += 1
                result.note(f"{at}: {why}")
            if final.returncode != 0 or final.error:
                result.failed_final_polls += 1
                result.note(f"{at}: the unbroken poll after it failed: {final.error}")

    def close(self) -> None:
        self.proxy.stop()


def phase_of(log: str) -> str:
    """Where the session was when it was cut: the phase of the last log
    line naming a step before rpop said the poll failed."""
    return kill.phase_of(line for line in log.splitlines() if "poll failed" not in line)


def offsets(session_bytes: int, stride: int) -> list[int]:
    """Every ``stride``-th offset from 0 to the end of the session (the last
    one always in: the cut just before the final byte)."""
    chosen = list(range(0, session_bytes, stride))
    if session_bytes and chosen[-1] != session_bytes - 1:
        chosen.append(session_bytes - 1)
    return chosen


def run_mode(dovecot: Dovecot, folder: Path, leave: bool, strides: dict[str, int], *, lanes: int = 2,
             env: dict | None = None, log: Callable[[str], None] = lambda line: None) -> list[CutResult]:
    """Cut one session in each direction of ``strides`` (direction ->
    stride), ``leave`` as given; ``folder`` (fresh) holds the lanes' sites.
    Dovecot must have :data:`USERS`."""
    if not 1 <= lanes <= MAX_LANES:
        raise ValueError(f"lanes: 1 to {MAX_LANES}")
    folder.mkdir(parents=True, exist_ok=True)
    made = [Lane(n, folder / f"lane{n}", dovecot, leave, env) for n in range(lanes)]
    try:
        lengths = {tuple(sorted(lane.session_bytes().items())) for lane in made}
        if len(lengths) != 1:
            raise RuntimeError(f"the lanes' sessions differ in length: {sorted(lengths)}")
        length = dict(lengths.pop())
        results = []
        trial = 1
        for direction, stride in strides.items():
            clock = time.monotonic()
            result = CutResult(direction, leave, session_bytes=length[direction], stride=stride)
            cuts = [Cut(direction, n) for n in offsets(length[direction], stride)]
            log(f"    leave={str(leave).lower()} {direction}: {len(cuts)} cuts of {length[direction]} bytes")
            _in_lanes(made, cuts, trial, result)
            trial += len(cuts)
            result.poll_seconds = round(result.poll_seconds / max(1, result.trials), 3)
            result.seconds = round(time.monotonic() - clock, 1)
            results.append(result)
        return results
    finally:
        for lane in made:
            lane.close()


def _in_lanes(lanes: list[Lane], cuts: list[Cut], first_trial: int, result: CutResult) -> None:
    """Run the cuts, each lane taking every len(lanes)-th one."""
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work(index: int, lane: Lane) -> None:
        try:
            for k in range(index, len(cuts), len(lanes)):
                lane.trial(first_trial + k, cuts[k], result, lock)
        except BaseException as exc:  # raised again below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i, lane), name=f"cut-lane-{i}") for i, lane in enumerate(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
