"""``python3 -m bench.claims``: what one worker's scheduler costs on a
shared PostgreSQL state store as the number of records grows.

For each size (default 10,000 and 100,000 records) it fills a new database
on a PostgreSQL it starts (as the tests do), then measures, as a worker
does them:

* one *planning look*: every record, every status and the lease holders
  (``list_records`` + ``load_statuses`` + ``lease_holders``), which the
  daemon does every few seconds;
* one *claim*: take a record's lease, read its status (the check that
  nobody polled it since the plan), give the lease back -- with the
  database round trips each takes.

Prints a Markdown table and the machine it ran on.  Run as root from the
repository root (PostgreSQL is started as an unprivileged user).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.harness import machine_info  # noqa: E402
from rpopcore.model import Directory, ModuleSettings, PollStatus, RecordKind, RemoteRecord, SecretRef  # noqa: E402
from rpop_storage_postgresql.testing import PostgreSQL  # noqa: E402

#: Round trips of one claim: pg_try_advisory_lock, the status read, pg_advisory_unlock.
CLAIM_ROUND_TRIPS = 3
#: Round trips of one planning look: records, statuses, lease holders.
LOOK_ROUND_TRIPS = 3


def records(count: int) -> list[RemoteRecord]:
    return [RemoteRecord(kind=RecordKind.REMOTE, owner="alice@example.test", account=f"box{n}",
                         host=f"pop{n % 50}.isp.test", secret=SecretRef("stored", "token"), poll_every=600)
            for n in range(count)]


async def measure(server: PostgreSQL, count: int, repeats: int) -> dict:
    from rpop_storage_postgresql import make_store

    store = make_store({"dsn": server.create_database(), "pool_size": 2}, Path("."))
    await store.open()
    try:
        saved = await store.replace_configuration(ModuleSettings(), Directory(), records(count))
        for record in saved[: count // 2]:  # half the records polled before
            await store.save_status(PollStatus(record.id, error=None))
        looks = []
        for _ in range(repeats):
            started = time.perf_counter()
            await store.list_records()
            await store.load_statuses()
            await store.lease_holders()
            looks.append(time.perf_counter() - started)
        claims = []
        for record in saved[:: max(1, count // (repeats * 20))][: repeats * 20]:
            started = time.perf_counter()
            assert await store.acquire_lease(record.id, "bench:1", 600)
            await store.load_status(record.id)
            await store.release_lease(record.id, "bench:1")
            claims.append(time.perf_counter() - started)
    finally:
        await store.close()
    return {"records": count, "look_ms": statistics.median(looks) * 1000,
            "claim_ms": statistics.median(claims) * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="10000,100000", help="comma-separated sizes (default 10000,100000)")
    parser.add_argument("--repeats", type=int, default=5, help="planning looks per size; the median counts")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.records.split(",")]
    with PostgreSQL() as server:
        rows = [asyncio.run(measure(server, size, args.repeats)) for size in sizes]
    machine = machine_info(Path(tempfile.gettempdir()))
    print("Machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()) + "\n")
    print(f"| records | planning look (ms, {LOOK_ROUND_TRIPS} round trips) | per record (µs) "
          f"| claim (ms, {CLAIM_ROUND_TRIPS} round trips) |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['records']:,} | {row['look_ms']:.0f} | {row['look_ms'] * 1000 / row['records']:.1f} "
              f"| {row['claim_ms']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
