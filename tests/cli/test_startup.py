"""A command that polls nothing starts without what only polling, another
state store or a sign-in needs: every cron job, script and monitoring
check pays for what ``rpop`` loads at start (``python3 -m bench.startup``
measures it; docs/performance.md has the figures)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.test_cli import write_decl

#: Loaded only when used: the PostgreSQL driver (a site on SQLite), the
#: encryption library (no secret is read), the retrieval engine and the
#: POP3 client (nothing is polled).
HEAVY = ("psycopg", "cryptography", "rpopcore.retrieval", "rpopcore.pop3.client", "rpopcore.smtp.client")

PROBE = """
import json, runpy, sys
sys.argv = ["rpop", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("rpopcore", run_name="__main__")
except SystemExit as exit:
    code = exit.code
import rpop_web_password
print(json.dumps({"exit": code, "loaded": sorted(m for m in %r if m in sys.modules),
                  "hashed": rpop_web_password._unused_hash.cache_info().currsize}), file=sys.stderr)
""" % (HEAVY,)


def loaded_by(*args) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_status_and_a_poll_with_nothing_to_poll_load_nothing_they_do_not_use(site, rpop):
    # Given a site on SQLite whose one record, with a stored password, is disabled,
    decl = write_decl(site, 1110)
    decl.write_text(decl.read_text().replace('poll_every = "10m"', 'poll_every = "disabled"'))
    assert rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0
    # when 'status' and 'poll --once' run, then they end well without
    # loading the driver, the cipher, the POP3 engine or making a password hash.
    for command in (["status"], ["poll", "--once"]):
        probe = loaded_by("-c", site / "rpop.toml", *command)
        assert probe == {"exit": 0, "loaded": [], "hashed": 0}, (command, probe)
