"""``python3 -m bench.web``: how long the web interface takes to answer as
the site grows (default 1,000 and 10,000 local accounts, each with one
remote record, a status for every other record).

For each size it makes a site on SQLite in a temporary folder, applies the
declaration (``rpop apply`` does the same), sets the administrator's web
password, signs in through the sign-in page as a browser does, and times
(median of ``--repeats``) the requests an administrator and a user make
most: the accounts list (first page, a search, the last page), one
account's records page, and the JSON API's records of one owner and one
record.  The requests go to the application in this process (no socket),
so the figures are the server's own time.

Prints a Markdown table and the machine it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import httpx  # noqa: E402

from bench.harness import print_table  # noqa: E402
from rpopcore.cli import _init  # noqa: E402
from rpopcore.model import PollStatus  # noqa: E402
from rpopcore.service import Site  # noqa: E402
from rpopcore.web.app import build_app  # noqa: E402
from rpopcore.web.auth import set_password  # noqa: E402

ADMIN = "postmaster@example.test"
PASSWORD = "bench-admin-pass"


def declaration(accounts: int) -> str:
    names = [f"u{n:06d}" for n in range(accounts)]
    lines = ["[rpop]", "allow_self_poll = true", "", "[[domain]]", 'name = "example.test"',
             "accounts = [" + ", ".join(f'"{name}"' for name in names + ["postmaster"]) + "]",
             "users_may_poll = true", ""]
    for n, name in enumerate(names):
        lines += ["[[remote]]", f'owner = "{name}@example.test"', f'account = "{name}"',
                  f'host = "pop{n % 100}.isp.test"', 'password = "remote-pass"', ""]
    return "\n".join(lines)


async def timed(client: httpx.AsyncClient, url: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = await client.get(url)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code} {response.text[:300]}")
    return statistics.median(times) * 1000


async def measure(folder: Path, accounts: int, repeats: int) -> dict:
    _init(folder)
    with open(folder / "rpop.toml", "a") as f:
        f.write(f'\n[web]\nlisten = "127.0.0.1:0"\nadmins = ["{ADMIN}"]\n')
    (folder / "decl.toml").write_text(declaration(accounts))
    site = await Site.open(folder / "rpop.toml")
    try:
        await site.apply(folder / "decl.toml")
        records = await site.store.list_records()
        moment = dt.datetime.now(dt.timezone.utc)
        for record in records[::2]:
            await site.store.save_status(PollStatus(record.id, last_success=moment, last_attempt=moment))
        authenticators = [a for contributed in site.pm.hook.rpop_web_authenticators() for a in contributed]
        await set_password(authenticators, ADMIN, PASSWORD, site.store)
        app = build_app(site, site.config.web)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)),
                                     base_url="http://127.0.0.1:8080") as client:
            form = await client.get("/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            await client.post("/signin", data={"csrf": csrf, "address": ADMIN, "password": PASSWORD})
            middle = f"u{accounts // 2:06d}@example.test"
            record_id = records[accounts // 2].id
            last_page = accounts // 50 + 1
            urls = {
                "accounts, first page": "/accounts",
                "accounts, a search": f"/accounts?search=u{accounts // 2:06d}",
                "accounts, last page": f"/accounts?page={last_page}",
                "one account's records page": f"/accounts/{middle}/records",
                "API: one owner's records": f"/api/v1/records?owner={middle}",
                "API: one record": f"/api/v1/records/{record_id}",
            }
            return {"accounts": accounts, **{name: await timed(client, url, repeats) for name, url in urls.items()}}
    finally:
        await site.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", default="1000,10000", help="comma-separated sizes (default 1000,10000)")
    parser.add_argument("--repeats", type=int, default=20, help="requests per figure; the median counts")
    args = parser.parse_args(argv)
    rows = []
    for size in (int(n) for n in args.accounts.split(",")):
        with tempfile.TemporaryDirectory(prefix="rpop-bench-web-") as folder:
            rows.append(asyncio.run(measure(Path(folder), size, args.repeats)))
    names = [key for key in rows[0] if key != "accounts"]
    print_table(Path(tempfile.gettempdir()), ["accounts and records", *(f"{name} (ms)" for name in names)],
                [[f"{row['accounts']:,}", *(f"{row[name]:.1f}" for name in names)] for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
