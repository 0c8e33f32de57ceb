"""A hostile POP3 server, every answer of it drawn by hypothesis, cannot
crash a poll, hold it past its deadline, make it grow without bound, or get
anything delivered that it did not send as a complete message.

This runs the engine of ``python3 -m bench.faults fuzz`` (bench/faults/fuzz.py)
in this process: 10,000 cases, each one poll by rpop's engine of a raw
POP3 server in the same event loop (about 90 cases a second here: about
2 min).  The long run (1,000,000 cases and more, a process per core), what
each case checks and the figures are in docs/reliability.md.  A failing
case is described by its dialogue and replays with ``python3 -m
bench.faults fuzz --replay RECORD:TAPE``; the last test is one the fuzzer
found, as a scenario (about a second).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.faults import fuzz
from bench.server import work_parent
from rpopcore.testing.scriptable_server import Message
from rpopcore.testing.sites import delivered, open_site, remote
from rpopcore.testing.sites import poll_one as poll

CASES = 10_000
SEED = 1
#: Cases per hypothesis run: a run ends at its first failing case, and the
#: next goes on, so that one failure does not hide the others.
BATCH = 1_000


def test_a_hostile_server_cannot_crash_hang_bloat_or_corrupt_a_poll():
    # Given a site with a record for each login mechanism and leave mode,
    # and a server whose every answer hypothesis draws,
    folder = Path(tempfile.mkdtemp(prefix="rpop-fuzz-", dir=work_parent(None)))
    # when rpop polls it 10,000 times,
    result = fuzz.fuzz(folder, CASES, SEED, batch=BATCH, shrink=False)
    # then every poll ended in time, in a known error code or success, within
    # its memory, with only whole messages delivered and no secret shown.
    summary = (f"{result.cases:,} cases at {result.rate:.0f}/s; slowest poll {result.slowest_poll:.2f}s; "
               f"largest traced peak {result.peak_traced / 2**20:.1f} MiB; grew {result.rss_growth / 2**20:.0f} MiB; "
               f"failing runs by what they found: {result.failure_kinds}")
    assert not fuzz.problems(result, CASES), summary + "\n\n" + "\n\n".join(result.failures)
    assert result.outcomes.get("ok", 0) > CASES // 10, f"too few polls got through: {result.outcomes}"


# --- what the fuzzer found, as a scenario ----------------------------------------


def message(uid: str, wire: bytes | None = None) -> Message:
    return Message(uid, f"Subject: {uid}\r\n\r\nbody of {uid}\r\n".encode(), wire=wire)


async def test_the_rest_of_a_message_ended_early_is_not_delivered_as_the_next_one(pop3_server, tmp_path):
    # Given a pipelining server whose message a holds a line "." it did not
    # stuff, followed by lines that look like an answer -- RETR 1 ends early
    # and the rest of it is there to be taken for the answer to RETR 2 (a
    # failing case of the fuzzer's, its "early_end" answer to RETR),
    early = b"Subject: a\r\n\r\nbody of a\r\n.\r\n+OK 20 octets\r\nnot message b at all\r\n"
    server = await pop3_server([message("a", wire=early), message("b"), message("c")])
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    # when we poll, and poll again,
    first = await poll(site)
    second = await poll(site)
    # then the first poll fails before delivering anything after the early
    # end, nothing the server did not send as a message arrived, and every
    # message that left the server arrived first.
    arrived = delivered(tmp_path)
    assert first.error == "protocol-error", first
    assert not any(b"not message b" in m for m in arrived), arrived
    gone = {"a", "b", "c"} - set(server.uids())
    assert {uid for uid in "abc" if any(f"body of {uid}".encode() in m for m in arrived)} >= gone - {"a"}, (
        f"deleted from the server but never delivered: {arrived}; {second}")
    await site.close()


# --- the harness's own memory bound ---------------------------------------------


def test_the_memory_watchdog_stops_a_case_even_when_sigint_is_ignored():
    # Given a fuzz process started the way long runs are (in the background,
    # where the shell has SIGINT ignored) whose memory crosses the bound,
    import subprocess
    import sys

    script = ("import time\n"
              "from bench.faults import fuzz\n"
              "dog = fuzz.Watchdog(fuzz.rss() - 1)\n"
              "dog.start()\n"
              "try:\n"
              "    time.sleep(5)\n"
              "    print('not stopped')\n"
              "except KeyboardInterrupt:\n"
              "    print('stopped' if dog.tripped else 'interrupted by someone else')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[2],
                          preexec_fn=lambda: __import__("signal").signal(2, __import__("signal").SIG_IGN))
    # then the watchdog stops it all the same.
    assert done.stdout.strip() == "stopped", done.stdout + done.stderr
