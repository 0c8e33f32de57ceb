"""``python3 -m bench.workers``: records polled per minute by 1, 2 and 4
``rpop run`` workers sharing one PostgreSQL state store.

It starts a Dovecot holding N small mailboxes (default 2,000, one message
of a few KB each) and a PostgreSQL (both as the tests start them, on
loopback), then for each worker count: a new database, a site whose
declaration has one record per mailbox (``leave = true``, polled once an
hour, so each record is polled exactly once during the run), Maildir
delivery under the work folder, and that many ``rpop run`` processes
started together.  It waits until every record has a successful status
and reports:

* records polled per minute, over the span between the first and the last
  poll that ended (the first polls of a daemon spread over its first 20 s,
  so small sites are bounded by that spread, not by the workers);
* the CPU time the workers used, per record polled (user + system, from
  /proc): what a worker costs per record, whatever the number of workers.

Prints a Markdown table and the machine it ran on.  Run as root from the
repository root.  Everything runs on this machine: the workers, Dovecot
and PostgreSQL share its cores, so on a small machine the CPU is the
ceiling and more workers add availability, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.harness import print_table  # noqa: E402
from bench.scenarios import PASSWORD  # noqa: E402
from bench.server import work_parent  # noqa: E402
from rpopcore.testing.dovecot import Dovecot  # noqa: E402
from rpopcore.testing.sites import make_site, remote  # noqa: E402
from rpop_storage_postgresql.testing import PostgreSQL  # noqa: E402

PROCESSORS = 10
#: A message of a few KB, as a small personal mailbox holds.
BODY = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 60 + "\r\n").encode()


def mailbox_message(n: int) -> bytes:
    return (f"From: sender{n}@isp.example\r\nTo: box{n}@isp.example\r\nSubject: message of box {n}\r\n"
            f"Message-ID: <box{n}@bench.workers>\r\n\r\n").encode() + BODY


def site_for(folder: Path, dsn: str, port: int, accounts: list[str]) -> Path:
    declaration = "".join(remote("127.0.0.1", port, account=account, password=PASSWORD, leave=True,
                                 poll_every="1h") for account in accounts)
    site_file = make_site(folder, declaration,
                          settings=f"allow_self_poll = true\nprocessors = {PROCESSORS}\nlog_level = \"problems\"\n")
    site_file.write_text(site_file.read_text().replace(
        '[state]\nplugin = "sqlite"\n', f'[state]\nplugin = "postgresql"\ndsn = "{dsn}"\n'))
    return site_file


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def statuses(dsn: str) -> list[tuple]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute("SELECT last_success, last_attempt FROM status WHERE last_success IS NOT NULL")
        return await cursor.fetchall()


def run_workers(site_file: Path, dsn: str, workers: int, records: int, deadline: float) -> dict:
    rpop = shutil.which("rpop") or "rpop"
    logs = [open(site_file.parent / f"worker-{n}.log", "wb") for n in range(workers)]
    processes = [subprocess.Popen([rpop, "-c", str(site_file), "run"], stdout=subprocess.DEVNULL,
                                  stderr=log) for log in logs]
    started = time.monotonic()
    try:
        while True:
            done = asyncio.run(statuses(dsn))
            if len(done) >= records:
                break
            if time.monotonic() - started > deadline:
                raise SystemExit(f"only {len(done)} of {records} records polled after {deadline:.0f} s; "
                                 f"the workers said: {Path(logs[0].name).read_text()[-2000:]}")
            if any(p.poll() is not None for p in processes):
                raise SystemExit("a worker exited: " + "".join(
                    Path(log.name).read_text()[-2000:] for p, log in zip(processes, logs) if p.poll() is not None))
            time.sleep(0.5)
        cpu = sum(cpu_seconds(p.pid) for p in processes)
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(timeout=120)
        for log in logs:
            log.close()
    ends = sorted(success for success, _ in done)
    span = (ends[-1] - ends[0]).total_seconds()
    return {"workers": workers, "records": records, "span_s": span,
            "per_minute": (records - 1) / span * 60 if span else float("inf"),
            "cpu_ms_per_record": cpu * 1000 / records}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=2000, help="mailboxes, one record each (default 2000)")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts (default 1,2,4)")
    parser.add_argument("--work-dir", help="where the servers and the sites live (default: tmpfs when it fits)")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds a run may take before it fails")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rpop-bench-workers-", dir=work_parent(args.work_dir)))
    accounts = [f"wk{n:05d}" for n in range(args.mailboxes)]
    rows = []
    try:
        with Dovecot(users={a: PASSWORD for a in accounts}, tls=False, auth_mechanisms="plain login",
                     start_timeout=60) as dovecot, PostgreSQL() as server:
            for n, account in enumerate(accounts):
                dovecot.put_many(account, [mailbox_message(n)])
            print(f"{args.mailboxes:,} mailboxes on Dovecot at 127.0.0.1:{dovecot.pop3_port}; work in {work}",
                  file=sys.stderr)
            for workers in counts:
                dsn = server.create_database()
                site_file = site_for(work / f"site-{workers}", dsn, dovecot.pop3_port, accounts)
                applied = subprocess.run([shutil.which("rpop") or "rpop", "-c", str(site_file), "apply",
                                          str(site_file.parent / "decl.toml")], capture_output=True, text=True)
                if applied.returncode != 0:
                    raise SystemExit(applied.stdout + applied.stderr)
                row = run_workers(site_file, dsn, workers, args.mailboxes, args.deadline)
                print(f"  {workers} worker(s): {row['per_minute']:,.0f} records/min, "
                      f"{row['cpu_ms_per_record']:.1f} ms CPU per record", file=sys.stderr)
                rows.append(row)
                shutil.rmtree(site_file.parent / "mail", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(work.parent, [f"workers ({PROCESSORS} processors each)", "records", "first to last poll (s)",
                              "records polled per minute", "worker CPU per record (ms)"],
                [[str(row["workers"]), f"{row['records']:,}", f"{row['span_s']:.1f}", f"{row['per_minute']:,.0f}",
                  f"{row['cpu_ms_per_record']:.1f}"] for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
