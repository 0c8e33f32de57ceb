"""kill -9 at any instant: the engine of ``python3 -m bench.faults kill`` and
of ``tests/faults/test_kill.py``.

A *mode* is a delivery target (``maildir``: the default Maildir plugin;
``lmtp``: Dovecot's LMTP) and a ``leave`` setting.  In each mode one rpop
site polls one real Dovecot POP3 mailbox, trial after trial:

1. the mailbox is filled with messages whose bodies each carry a marker
   (``kill-marker-TRIAL-N``) found nowhere else, so copies can be counted;
2. ``rpop poll --once`` runs as a subprocess and gets SIGKILL after a random
   delay, again and again, until the mailbox is drained (``leave = false``)
   or every message has arrived (``leave = true``);
3. one last poll runs unkilled; then every marker is counted where mail is
   delivered and on the server: *lost* (never delivered), *duplicated*
   (delivered more than once), *stuck* (still on the server although
   ``leave = false``);
4. both mailboxes are emptied for the next trial; the site and its state go
   on, as a real site's would.

The first trial of a mode is not killed: it measures how long a poll takes
from the start of its process to its first log line (start-up: imports,
opening the state, taking the lease) and to its end.  A fifth of the kills
come at a uniform instant of the start-up; the rest at a uniform instant of
the work, counted from the poll's own first log line so that a slow start
does not shift them (later polls of a trial have less to do, so some of
them finish first).

Where a kill landed is read from rpop's own log (``log_level = "all"``, one
file, emptied before each poll): the phase of the last line that names a
step (:data:`PHASE_OF_LINE`), and whether the kill left a file in the
Maildir's ``tmp/``.  A poll answering ``record-busy`` is counted: polls here
never overlap, so a busy record can only be a lease that outlived the poll
killed before.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

import attrs

from bench.tools.rpop import rpop_command
from rpopcore.testing.dovecot import Dovecot

#: Dovecot's users: the remote mailbox rpop polls, and the local account
#: (the LMTP target delivers into Dovecot's mailbox of that name).
REMOTE_USER, REMOTE_PASSWORD = "box", "box-secret"
LOCAL_USER, DOMAIN = "alice", "example.test"
USERS = {REMOTE_USER: REMOTE_PASSWORD, LOCAL_USER: "alice-secret"}

TARGETS = ("maildir", "lmtp")
MARKER = re.compile(rb"kill-marker-(\d+)-(\d+)")
Marker = tuple[int, int]  # (trial, message number)

#: Share of kills drawn from the start-up of the process (before its first
#: log line): cheap, but where a lease taken and never used would show.
EARLY_SHARE = 0.2
#: An unkilled poll taking longer than this is killed and counted as failed.
POLL_TIMEOUT = 120.0
#: Kills in one trial at the most; then the final poll cleans up.
MAX_KILLS_PER_TRIAL = 20

#: Phases a kill can land in, in the order of a poll, with what they mean.
PHASES = {
    "start-up": "nothing logged yet: imports, state, lease",
    "login": "connecting, CAPA, authentication",
    "list": "UIDL, settling what a killed poll left, choosing what to fetch",
    "retr": "RETR sent or its answer arriving",
    "delivered": "a copy delivered, its UID and DELE maybe not yet",
    "dele": "DELE sent or answered",
    "quit": "QUIT sent, no answer yet",
    "after-quit": "QUIT answered, the process ending",
}

#: The phase a log line shows, first match wins.  Lines naming no step
#: (``received N bytes``, a bare ``S: +OK``) leave the phase as it was.
PHASE_OF_LINE = [
    ("after-quit", re.compile(r"S: \+OK Logging out|poll done|poll failed")),
    ("quit", re.compile(r"C: QUIT")),
    ("dele", re.compile(r"C: DELE|Marked to be deleted|DELE \d+ refused")),
    ("delivered", re.compile(r" delivered to |failed permanently|failed for now")),
    ("retr", re.compile(r"C: RETR|S: \+OK \d+ octets|RETR \d+ refused")),
    ("list", re.compile(r"C: UIDL|C: STAT|\d+ messages, \d+ new|forgot \d+ UIDs|poll was cut short|journaled copies")),
    ("login", re.compile(r"connecting to|C: CAPA|C: STLS|C: AUTH|C: USER|C: APOP|[Ll]ogged in|S: \+OK.*ready")),
]
BUSY = re.compile(r"record-busy|another process or worker is polling")


def phase_of(log_lines: Iterable[str]) -> str:
    """Where a poll was when it died: the phase of its last telling line."""
    phase = "start-up"
    for line in log_lines:
        for name, pattern in PHASE_OF_LINE:
            if pattern.search(line):
                phase = name
                break
    return phase


def message(trial: int, number: int, rng: random.Random) -> bytes:
    """A message whose body starts with its marker.  Most are a few KB, one
    in twenty about 100 KB, so kills also land inside a RETR; some lines
    start with a dot, so dot-stuffing is on the way."""
    lines = 1 + int(rng.expovariate(1 / 50))
    if rng.random() < 0.05:
        lines *= 30
    body = "\n".join(("." if k % 13 == 0 else "") + f"{k:05d} the quick brown fox jumps over the lazy dog {number}"
                     for k in range(lines))
    return (f"Return-Path: <sender@far.test>\nFrom: <sender@far.test>\nTo: <{LOCAL_USER}@{DOMAIN}>\n"
            f"Subject: kill test {trial}/{number}\nMessage-ID: <kill-{trial}-{number}@far.test>\n\n"
            f"kill-marker-{trial}-{number}\n{body}\n").encode()


def marker_counts(maildir: Path) -> collections.Counter[Marker]:
    """How many copies of each marker a Maildir's new/ and cur/ hold."""
    counts: collections.Counter[Marker] = collections.Counter()
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(maildir / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            with open(entry.path, "rb") as f:
                head = f.read(8192)  # the marker opens the body, after a few header fields
            found = MARKER.search(head)
            if found:
                counts[int(found[1]), int(found[2])] += 1
    return counts


@attrs.define
class Poll:
    """One ``rpop poll --once`` as it went."""

    killed: bool  # by the harness, as planned
    hung: bool  # ran past POLL_TIMEOUT and was killed
    returncode: int
    error: str | None  # the record's error code (None: succeeded, or killed before saying)
    phase: str  # where it was when it ended (see PHASES)
    busy: bool  # answered record-busy
    tmp_left: int  # new files left in the Maildir's tmp/
    seconds: float
    start_up: float | None  # unkilled: seconds from the start of the process to its first log line
    stdout: str = attrs.field(default="", repr=False)  # what the poll printed (--json)
    stderr: str = attrs.field(default="", repr=False)


class KillSite:
    """An rpop site made as an administrator makes one (``rpop init``, a
    declarative file, ``rpop apply``): one [[remote]] record for the Dovecot
    mailbox, delivering to ``target``, logging everything to one file.

    ``env``: the environment of every rpop command (None: this process's).
    ``remote``: the Dovecot user and password the record polls;
    ``address``: the ``host:port`` it connects to (None: Dovecot's POP3
    port; another harness puts a proxy there); ``record``: the record's
    table, instead of that one (another harness's server, no Dovecot)."""

    def __init__(self, folder: Path, dovecot: Dovecot | None, target: str, leave: bool, env: dict | None = None, *,
                 remote: tuple[str, str] = (REMOTE_USER, REMOTE_PASSWORD), address: str | None = None,
                 record: str | None = None):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
        self.folder, self.dovecot, self.target, self.leave, self.env = folder, dovecot, target, leave, env
        self.remote_user, password = remote
        self.config = folder / "rpop.toml"
        self.log = folder / "rpop.log"
        self.rpop("init", folder)
        site = self.config.read_text() + '\n[log]\nfile = "rpop.log"\n'
        if target == "lmtp":
            maildir = '[delivery]\nplugin = "maildir"\nroot = "mail"\n'
            if maildir not in site:
                raise RuntimeError(f"rpop init no longer writes {maildir!r}; update {__file__}")
            site = site.replace(maildir, f'[delivery]\nplugin = "lmtp"\nhost = "{dovecot.host}"\n'
                                         f'port = {dovecot.lmtp_port}\n')
        self.config.write_text(site)
        record = record or f"""\
[[remote]]
owner = "{LOCAL_USER}@{DOMAIN}"
account = "{self.remote_user}"
password = "{password}"
host = "{address or f'{dovecot.host}:{dovecot.pop3_port}'}"
starttls = "never"
auth = "userpass"
leave = {"true" if leave else "false"}
"""
        (folder / "decl.toml").write_text(f"""\
[rpop]
allow_self_poll = true   # the mailbox is on this machine
log_level = "all"

[[domain]]
name = "{DOMAIN}"
accounts = ["{LOCAL_USER}", "postmaster"]

{record}""")
        self.rpop("-c", self.config, "apply", folder / "decl.toml")

    def rpop(self, *args) -> str:
        """Run an rpop command that must succeed; its output."""
        done = subprocess.run([*rpop_command(), *map(str, args)], env=self.env, capture_output=True, text=True,
                              timeout=POLL_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"rpop {' '.join(map(str, args))} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    @property
    def maildir(self) -> Path:
        """Where the local account's mail arrives."""
        if self.target == "lmtp":
            return self.dovecot.maildir(LOCAL_USER)
        return self.folder / "mail" / DOMAIN / LOCAL_USER

    # -- the mailboxes -----------------------------------------------------

    def fill(self, trial: int, count: int, rng: random.Random) -> set[Marker]:
        """Put ``count`` new messages on the server; their markers."""
        self.dovecot.put_many(self.remote_user, (message(trial, n, rng) for n in range(count)))
        return {(trial, n) for n in range(count)}

    def delivered(self) -> collections.Counter[Marker]:
        return marker_counts(self.maildir)

    def on_server(self) -> collections.Counter[Marker]:
        return marker_counts(self.dovecot.maildir(self.remote_user))

    def finished(self, expected: set[Marker]) -> bool:
        """Nothing left to do: the server drained (leave = false), or every
        message delivered (leave = true)."""
        if self.leave:
            return expected <= self.delivered().keys()
        return self.dovecot.count(self.remote_user) == 0

    def empty_mailboxes(self) -> None:
        """Remove every message, delivered and on the server, for a new trial
        (no poll runs now; Dovecot notices at the next session)."""
        for maildir in (self.maildir, self.dovecot.maildir(self.remote_user)):
            for sub in ("new", "cur", "tmp"):
                for entry in os.scandir(maildir / sub) if (maildir / sub).is_dir() else ():
                    os.unlink(entry.path)

    def _tmp_files(self) -> set[str]:
        tmp = self.maildir / "tmp"
        return set(os.listdir(tmp)) if self.target == "maildir" and tmp.is_dir() else set()

    # -- polling -----------------------------------------------------------

    def poll(self, kill: KillAt | None = None, kill_when: Callable[[str], bool] | None = None, *,
             json: bool = True) -> Poll:
        """Run ``rpop poll --once`` (``--json`` unless told); SIGKILL it at
        ``kill``, or as soon as ``kill_when(log text)`` is true; with
        neither it may run up to POLL_TIMEOUT."""
        self.log.write_bytes(b"")
        tmp_before = self._tmp_files()
        started, clock = time.time(), time.monotonic()
        # A session of its own: the SIGKILL reaches whatever the poll started.
        process = subprocess.Popen([*rpop_command(), "-c", str(self.config), "poll", "--once",
                                    *(["--json"] if json else [])],
                                   env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        planned = kill is not None or kill_when is not None
        if kill_when is not None:
            ended = _wait(process, POLL_TIMEOUT, until=lambda: kill_when(self.log_text()))
        elif kill is not None and kill.after_first_line:
            # Ended before logging anything, or else waited kill.seconds more.
            ended = (_wait(process, POLL_TIMEOUT, until=lambda: self.log.stat().st_size > 0)
                     or _wait(process, kill.seconds))
        else:
            ended = _wait(process, kill.seconds if kill else POLL_TIMEOUT)
        if not ended:
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        seconds = time.monotonic() - clock
        killed = process.returncode == -signal.SIGKILL  # it may have ended just before the kill
        lines = self.log_text().splitlines()
        return Poll(
            killed=killed and planned,
            hung=killed and not planned,
            returncode=process.returncode,
            error=_record_error(stdout, stderr, killed),
            phase=phase_of(lines),
            busy=bool(BUSY.search(stdout)) or any(BUSY.search(line) for line in lines),
            tmp_left=len(self._tmp_files() - tmp_before),
            seconds=seconds,
            start_up=_logged_at(lines[0]) - started if lines and not killed else None,
            stdout=stdout,
            stderr=stderr,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def break_stale_lease(self) -> None:
        """Let the next poll run after one answered record-busy.

        The busy answer has been counted (it is a failure); this only lets
        the trial go on measuring loss and duplication on an engine whose
        lease outlives a killed poll: the sqlite store of such an engine
        keeps leases in a ``leases`` table.  A store without one has nothing
        to break here, and its trial ends at the poll limit."""
        db = sqlite3.connect(self.folder / "rpop.sqlite", timeout=30)
        try:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'").fetchone():
                with db:
                    db.execute("DELETE FROM leases")
        finally:
            db.close()


def _wait(process: subprocess.Popen, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """True when ``process`` ended within ``seconds``; False when they
    passed, or ``until()`` came true first (asked every millisecond)."""
    if until is None:
        try:
            process.wait(timeout=seconds)  # wakes within a millisecond of the limit
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + seconds
    while process.poll() is None:
        if until() or time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def _record_error(stdout: str, stderr: str, killed: bool) -> str | None:
    """The record's error code from ``--json``; a crash's last line of
    stderr; None when killed before saying anything."""
    try:
        (record,) = json.loads(stdout)
        return record["error"]
    except (ValueError, TypeError, KeyError):
        return None if killed else (stderr.strip().splitlines() or ["no output"])[-1]


def _logged_at(line: str) -> float:
    """The time of a log line (``%(asctime)s``: local time, milliseconds)."""
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


# -- trials -------------------------------------------------------------------


@attrs.frozen
class KillAt:
    """When a poll gets SIGKILL: ``seconds`` after its process started, or
    after its first log line (the work, whatever its start-up took)."""

    seconds: float
    after_first_line: bool = False


@attrs.frozen
class KillWindow:
    """Seconds from the start of an unkilled poll of a full mailbox to its
    first log line, and to its end."""

    start_up: float
    whole: float

    def draw(self, rng: random.Random) -> KillAt:
        if rng.random() < EARLY_SHARE:
            return KillAt(rng.uniform(0, self.start_up))
        return KillAt(rng.uniform(0, self.whole - self.start_up), after_first_line=True)


@attrs.define
class ModeResult:
    """What the kills of one mode did (the JSON of the bench command)."""

    target: str
    leave: bool
    trials: int = 0
    polls: int = 0
    kills: int = 0
    phases: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(PHASES, 0))
    tmp_file_left: int = 0  # kills that left a file in the Maildir's tmp/
    lost: int = 0  # markers never delivered
    duplicated: int = 0  # markers delivered more than once
    extra_copies: int = 0  # copies beyond the first, all markers together
    beyond_one_per_kill: int = 0  # extra copies above the number of kills, per trial, summed
    stuck: int = 0  # markers still on the server after the final poll (leave = false)
    busy_after_kill: int = 0  # polls that answered record-busy
    failed_final_polls: list[str] = attrs.field(factory=list)  # error of each final poll that failed
    unkilled_poll: dict[str, float] = attrs.field(factory=dict)  # start-up and whole, seconds
    seconds: float = 0.0

    def note(self, poll: Poll) -> None:
        self.polls += 1
        self.busy_after_kill += poll.busy
        if poll.killed:
            self.kills += 1
            self.phases[poll.phase] += 1
            self.tmp_file_left += poll.tmp_left > 0


def problems(result: ModeResult) -> list[str]:
    """The promises of docs/reliability.md this mode broke (empty: none)."""
    found = []
    if result.kills == 0:
        found.append("no kill landed: nothing was tested")
    if result.lost:
        found.append(f"{result.lost} messages lost")
    if result.target == "maildir" and result.duplicated:
        found.append(f"{result.duplicated} messages duplicated ({result.extra_copies} extra copies); "
                     "a Maildir gets exactly one copy")
    if result.target != "maildir" and result.beyond_one_per_kill:
        found.append(f"{result.beyond_one_per_kill} extra copies beyond one per kill "
                     f"({result.extra_copies} extra copies after {result.kills} kills)")
    if result.stuck:
        found.append(f"{result.stuck} messages stuck on the server with leave = false")
    if result.busy_after_kill:
        found.append(f"{result.busy_after_kill} polls answered record-busy after a kill")
    if result.failed_final_polls:
        found.append(f"{len(result.failed_final_polls)} final polls failed: "
                     + ", ".join(sorted(set(map(str, result.failed_final_polls)))))
    return found


def run_mode(dovecot: Dovecot, folder: Path, target: str, leave: bool, *, points: int, messages: int = 300,
             seed: int = 1, env: dict | None = None, log: Callable[[str], None] = lambda line: None) -> ModeResult:
    """Kill polls of one mode until ``points`` kills have landed; ``folder``
    (fresh) holds the site.  Dovecot must have :data:`USERS`, and LMTP for
    the lmtp target."""
    clock = time.monotonic()
    rng = random.Random(f"{seed}/{target}/{leave}")
    folder.mkdir(parents=True, exist_ok=True)
    site = KillSite(folder, dovecot, target, leave, env)
    site.empty_mailboxes()
    result = ModeResult(target, leave)
    calibration = run_trial(site, 0, messages, rng, result)
    if calibration.start_up is None:
        raise RuntimeError(f"the unkilled poll logged nothing (exit {calibration.returncode}, {calibration.error}); "
                           f"see {site.config}")
    window = KillWindow(calibration.start_up, calibration.seconds)
    result.unkilled_poll = {"start_up_s": round(window.start_up, 3), "whole_s": round(window.whole, 3)}
    trial = 1
    # Every trial begins with a full mailbox, so its first kill nearly always
    # lands; the trial limit only stops a harness that kills nothing.
    while result.kills < points and trial <= 2 * points + 10:
        run_trial(site, trial, messages, rng, result, window, min(MAX_KILLS_PER_TRIAL, points - result.kills))
        if trial % 20 == 0:
            log(f"    {target} leave={str(leave).lower()}: {trial} trials, {result.kills} kills")
        trial += 1
    result.seconds = round(time.monotonic() - clock, 1)
    return result


def run_trial(site: KillSite, number: int, messages: int, rng: random.Random, result: ModeResult,
              window: KillWindow | None = None, kills: int = 0) -> Poll:
    """Fill the mailbox, kill up to ``kills`` polls (none without a window),
    poll once unkilled, count, empty the mailboxes; the unkilled poll."""
    expected = site.fill(number, messages, rng)
    killed = polls = 0
    # Busy answers and polls that end by themselves also take turns; bounded.
    while window and killed < kills and polls < 2 * kills + 5 and not site.finished(expected):
        poll = site.poll(window.draw(rng))
        polls += 1
        killed += poll.killed
        result.note(poll)
        if poll.busy:
            site.break_stale_lease()
    final = site.poll()
    result.note(final)
    if final.busy:  # counted; one more try, so the mail is counted after a real poll
        site.break_stale_lease()
        final = site.poll()
        result.note(final)
    if final.error or final.returncode != 0:
        result.failed_final_polls.append("hung" if final.hung else final.error or f"exit {final.returncode}")
    delivered, on_server = site.delivered(), site.on_server()
    extra = sum(count - 1 for marker, count in delivered.items() if marker in expected)
    result.trials += 1
    result.lost += len(expected - delivered.keys())
    result.duplicated += sum(1 for marker, count in delivered.items() if marker in expected and count > 1)
    result.extra_copies += extra
    result.beyond_one_per_kill += max(0, extra - killed)
    result.stuck += 0 if site.leave else len(expected & on_server.keys())
    site.empty_mailboxes()
    return final
