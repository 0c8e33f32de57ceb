"""``python3 -m bench.listing``: how long rpop takes to read and check a
huge listing -- STAT and UIDL of 100,000 messages (default), pipelined --
from the project's scriptable server in the same process, on loopback.

The figure counts the server's work too (it runs in the same event loop),
so it is an upper bound on rpop's own.  Prints the median of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from rpopcore.pop3.client import ConnectOptions, Pop3Client  # noqa: E402
from rpopcore.testing.scriptable_server import Faults, ScriptableServer  # noqa: E402


def listing(count: int) -> list[str]:
    """UIDL lines as a large server gives them: number and a 41-character UID."""
    return [f"{n} {n:08x}-0123456789abcdef0123456789abcdef" for n in range(1, count + 1)]


async def read_listing(count: int) -> float:
    """Seconds from sending STAT and UIDL to holding the checked listing."""
    lines = listing(count)
    server = ScriptableServer([], faults=Faults(uidl_override=lines, stat_override=f"{count} {count * 4000}"))
    await server.start()
    try:
        client = Pop3Client(ConnectOptions(server.host, server.port))
        await client.connect()
        await client.capa()
        await client.user_pass("user", "pass")
        started = time.perf_counter()
        got, uids = await client.stat_and_uidl()
        took = time.perf_counter() - started
        await client.close()
    finally:
        await server.stop()
    if got != count or uids is None or len(uids) != count:
        raise SystemExit(f"bench.listing: the listing came back wrong ({got} counted, {len(uids or ())} listed)")
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.listing", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=100_000, help="messages in the listing (default 100,000)")
    p.add_argument("--runs", type=int, default=5, help="runs; the median counts (default 5)")
    args = p.parse_args(argv)
    times = [asyncio.run(read_listing(args.messages)) for _ in range(args.runs)]
    print(f"STAT + UIDL of {args.messages:,} messages: median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
