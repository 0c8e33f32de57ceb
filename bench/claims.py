"""``python3 -m bench.claims``: what one worker's scheduler costs on a
shared PostgreSQL state store as the number of records grows.

For each size (default 10,000 and 100,000 records) it fills a new database
on a PostgreSQL it starts (as the tests do) with records polled hourly,
half of them polled before and one in a hundred of those on a host that
failed, every record planned somewhere in the coming hour (as a running
daemon leaves them), then measures, as a worker does them:

* one *planning look*, as the daemon makes it every few seconds
  (rpopcore.scheduler): the records due within the next tick through the
  planning index (``records_to_plan``), their statuses, the statuses that
  say a host failed and their records, and the lease holders;
* for comparison, the look before the planning index: every record, every
  status and the lease holders;
* one *claim*: take a record's lease, read its status (the check that
  nobody polled it since the plan), give the lease back -- with the
  database round trips each takes.

Prints a Markdown table and the machine it ran on.  Run as root from the
repository root (PostgreSQL is started as an unprivileged user).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import tempfile
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.harness import print_table  # noqa: E402
from rpopcore import schedule  # noqa: E402
from rpopcore.scheduler import PLAN_BATCH, TICK  # noqa: E402
from rpopcore.model import Directory, ModuleSettings, PollStatus, RecordKind, RemoteRecord, SecretRef  # noqa: E402
from rpop_storage_postgresql.testing import PostgreSQL  # noqa: E402

#: Round trips of one claim: pg_try_advisory_lock, the status read, pg_advisory_unlock.
CLAIM_ROUND_TRIPS = 3
#: Round trips of one planning look: records to plan, their statuses, the
#: failed hosts' statuses and records, lease holders.
LOOK_ROUND_TRIPS = 5
#: Round trips of the look that reads everything: records, statuses, lease holders.
FULL_LOOK_ROUND_TRIPS = 3


def records(count: int) -> list[RemoteRecord]:
    return [RemoteRecord(kind=RecordKind.REMOTE, owner="alice@example.test", account=f"box{n}",
                         host=f"pop{n % 50}.isp.test", secret=SecretRef("stored", "token"), poll_every=3600)
            for n in range(count)]


async def measure(server: PostgreSQL, count: int, repeats: int) -> dict:
    from rpop_storage_postgresql import make_store

    store = make_store({"dsn": server.create_database(), "pool_size": 2}, Path("."))
    await store.open()
    try:
        saved = await store.replace_configuration(ModuleSettings(), Directory(), records(count))
        now = dt.datetime.now(dt.timezone.utc)
        for n, record in enumerate(saved[: count // 2]):  # half the records polled before, 1 % on a failed host
            await store.save_status(PollStatus(record.id, last_attempt=now - dt.timedelta(seconds=60),
                                               error="connect-failed" if n % 100 == 0 else None))
        spread = random.Random(1)
        entries = await store.records_to_plan(now + dt.timedelta(days=1), count)
        now = dt.datetime.now(dt.timezone.utc)  # filling took a while: plan from the time the looks begin
        await store.plan_records({e.record.id: (now + dt.timedelta(seconds=spread.uniform(0, 3600)), e.stamp)
                                  for e in entries})
        looks, due = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            entries = await store.records_to_plan(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=TICK),
                                                  PLAN_BATCH)
            await store.load_statuses([e.record.id for e in entries])
            failed = await store.statuses_with_error(schedule.HOST_FAILURES)
            await store.list_records(ids=failed)
            await store.lease_holders()
            looks.append(time.perf_counter() - started)
            due = max(due, len(entries))
        full_looks = []
        for _ in range(repeats):
            started = time.perf_counter()
            await store.list_records()
            await store.load_statuses()
            await store.lease_holders()
            full_looks.append(time.perf_counter() - started)
        claims = []
        for record in saved[:: max(1, count // (repeats * 20))][: repeats * 20]:
            started = time.perf_counter()
            assert await store.acquire_lease(record.id, "bench:1", 600)
            await store.load_status(record.id)
            await store.release_lease(record.id, "bench:1")
            claims.append(time.perf_counter() - started)
    finally:
        await store.close()
    return {"records": count, "look_ms": statistics.median(looks) * 1000, "due": due,
            "full_look_ms": statistics.median(full_looks) * 1000, "claim_ms": statistics.median(claims) * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="10000,100000", help="comma-separated sizes (default 10000,100000)")
    parser.add_argument("--repeats", type=int, default=5, help="planning looks per size; the median counts")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.records.split(",")]
    with PostgreSQL() as server:
        rows = [asyncio.run(measure(server, size, args.repeats)) for size in sizes]
    print_table(Path(tempfile.gettempdir()), [
        "records", f"records read per look (due within {TICK:g} s)",
        f"planning look (ms, {LOOK_ROUND_TRIPS} round trips)",
        f"reading every record instead (ms, {FULL_LOOK_ROUND_TRIPS} round trips)",
        f"claim (ms, {CLAIM_ROUND_TRIPS} round trips)"],
        [[f"{row['records']:,}", f"{row['due']:,}", f"{row['look_ms']:.1f}", f"{row['full_look_ms']:,.0f}",
          f"{row['claim_ms']:.2f}"] for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
