"""Where rpop's time goes in one scenario: ``python3 -m bench.profile``.

Sets up the scenario exactly as the benchmark does (same Dovecot
configuration, corpus, proxy, rpop site and declarative file), then runs the
measured command -- ``rpop -c SITE poll --once --json`` -- under py-spy
(``pip install py-spy``), sampling every thread, and prints

* the share of samples per *area* (start-up imports, the POP3 client, the
  decoder, the spool, Maildir writes, SQLite, TLS, the event loop, ...),
* the functions with the most samples of their own (self time),
* the functions with the most samples in total (inclusive time).

The raw collapsed stacks are kept (``--out``) for a flame graph
(``flamegraph.pl``, speedscope).  py-spy samples only when a thread is on
the CPU (no ``--idle``), so the shares are of rpop's CPU time.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.proxy import LatencyProxy  # noqa: E402
from bench.scenarios import BY_ID, PASSWORD, Job, corpora  # noqa: E402
from bench.server import BenchServer, work_parent  # noqa: E402
from bench.tools.rpop import Rpop  # noqa: E402

#: (area, substring of a frame) -- the first match from the leaf up names a
#: sample's area.
AREAS = (
    ("Maildir write + fsync", "rpop_delivery_maildir"),
    ("SQLite state", "rpop_storage_sqlite"),
    ("SQLite state", "sqlite3"),
    ("recipients/envelope", "rpop_recipients"),
    ("message spool (rpopcore/message.py)", "rpopcore/message.py"),
    ("multi-line decoder (rpopcore/pop3/multiline.py)", "rpopcore/pop3/multiline.py"),
    ("POP3 client (rpopcore/pop3/client.py)", "rpopcore/pop3/client.py"),
    ("retrieval loop (rpopcore/retrieval.py)", "rpopcore/retrieval.py"),
    ("TLS (ssl)", "ssl.py"),
    ("TLS (ssl)", "sslproto.py"),
    ("asyncio event loop and streams", "asyncio/"),
    ("start-up: imports", "<frozen importlib"),
    ("plugins (pluggy)", "pluggy/"),
    ("configuration / site", "rpopcore/config"),
    ("service", "rpopcore/service.py"),
    ("threads (to_thread plumbing)", "threading.py"),
    ("threads (to_thread plumbing)", "concurrent/futures"),
)


def _maildir_worker_wait() -> str:
    """The frame of a Maildir worker blocked in ``SimpleQueue.get()``: the call
    is C, so py-spy shows only the calling line, found here by its text."""
    import rpop_delivery_maildir

    source = Path(rpop_delivery_maildir.__file__).read_text().splitlines()
    line = next(n for n, text in enumerate(source, 1) if "jobs = self._jobs.get()" in text)
    return f"MaildirAgent._work (rpop_delivery_maildir/__init__.py:{line})"


#: Leaf frames where a thread waits: py-spy does not always see these as
#: idle, so they are counted apart and left out of the shares.
WAITS = ("_worker (concurrent/futures/thread.py:81)", "EpollSelector.select", "Condition.wait", "Event.wait",
         "Thread.join", "_wait_for_tstate_lock", _maildir_worker_wait())


def area_of(frames: list[str]) -> str:
    if any(w in frames[-1] for w in WAITS):
        return "waiting"
    if any("<frozen importlib" in f for f in frames):
        return "start-up: imports"
    for frame in reversed(frames):
        for area, needle in AREAS:
            if needle in frame:
                return area
    return "other: " + (frames[-1] if frames else "?")


def summarise(collapsed: Path, top: int) -> str:
    total = waiting = 0
    by_area: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        area = area_of(frames)
        if area == "waiting":
            waiting += n
            continue
        total += n
        by_area[area] += n
        self_time[_short(frames[-1])] += n
        for name in {_short(f) for f in frames}:
            inclusive[name] += n
    if not total:
        return "no samples"
    out = [f"{total} samples on the CPU ({waiting} more waiting in epoll or a worker queue, left out)", "",
           "by area (shares of the samples on the CPU):"]
    out += [f"  {n / total:6.1%}  {area}" for area, n in by_area.most_common() if n / total >= 0.002]
    out += ["", f"self time, top {top}:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    out += ["", f"inclusive time, top {top}:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def _short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)`` with a package hint."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", required=True, choices=list(BY_ID))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--processors", type=int, default=50)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    p.add_argument("--gil", action="store_true",
                   help="sample only the thread holding the GIL (Python CPU time; system calls that release "
                        "the GIL, and waits for the GIL, are then left out)")
    p.add_argument("--out", help="keep py-spy's collapsed stacks here")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("bench.profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    scenario = BY_ID[args.scenario]
    corpus = corpora(args.quick)[scenario.corpus]
    parent = work_parent(None)
    work = Path(tempfile.mkdtemp(prefix="rpop-profile-", dir=parent))
    os.chmod(work, 0o755)
    server = BenchServer([corpus], work / "server")
    proxy = None
    try:
        server.start()
        port = server.dovecot.pop3s_port if scenario.tls else server.dovecot.pop3_port
        if scenario.rtt_ms:
            proxy = LatencyProxy(server.host, port, scenario.rtt_ms).start()
            port = proxy.port
        job = Job(host=server.host, port=port, tls=scenario.tls, ca_file=server.ca_file,
                  mailboxes=corpus.mailboxes, password=PASSWORD, multidrop=corpus.multidrop,
                  processors=args.processors if scenario.concurrent else 10)
        run_dir = work / "rpop"
        run_dir.mkdir()
        rpop = Rpop()
        rpop.pin(work)  # as the benchmark does: the code as it is now
        prepared = rpop.prepare(job, run_dir)
        collapsed = Path(args.out) if args.out else work / "stacks.txt"
        start = time.perf_counter()
        result = subprocess.run(
            [py_spy, "record", "--format", "raw", "--rate", str(args.rate), "--nonblocking",
             *(["--gil"] if args.gil else []), "--output", str(collapsed), "--", *prepared.argv],
            cwd=run_dir, env=prepared.env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stdout[-2000:] + result.stderr[-2000:], file=sys.stderr)
            return 1
        print(f"({scenario.id}) {scenario.title}: rpop {rpop.version()} under py-spy "
              f"({'--gil' if args.gil else 'all threads'}) took {wall:.2f} s "
              f"({server.counts[corpus.name]:,} messages)\n")
        print(summarise(collapsed, args.top))
        if args.out:
            print(f"\ncollapsed stacks: {collapsed}")
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
