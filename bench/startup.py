"""``python3 -m bench.startup``: how long rpop takes to start and finish a
command that has nothing to do -- ``poll --once`` on a site whose only
record is disabled, and ``status`` -- the cost every cron job, script and
monitoring check pays.

It makes a site (SQLite, one disabled record) in a temporary folder and
runs each command ``--repeats`` times as a new process, as a shell would
(``python3 -m rpopcore``, with the code of ``--code`` first on the path:
this checkout by default, or another one -- a ``git worktree`` of an
earlier commit -- to compare).  The figure is the median wall time of a
run, start to exit; ``python3 -c pass`` is measured too, as the floor no
Python program starts below.

Prints a Markdown table and the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.harness import print_table  # noqa: E402

DECLARATION = """
[rpop]
allow_self_poll = true

[[domain]]
name = "example.test"
main = true
accounts = ["alice"]

[[remote]]
owner = "alice@example.test"
account = "alice"
host = "127.0.0.1:1"
password = "a stored secret"
poll_every = "disabled"
"""


def code_path(code: Path) -> str:
    """PYTHONPATH for a checkout: its core and every plugin's folder, so
    that its code, not the installed one, runs."""
    plugins = sorted(str(p.parent.parent) for p in code.glob("plugins/*/*/*/__init__.py"))
    return os.pathsep.join([str(code), *dict.fromkeys(plugins)])


def environment(code: Path) -> dict:
    """Runs of ``code``, with bytecode written and read as an installed
    rpop's is (a test environment may set PYTHONDONTWRITEBYTECODE)."""
    env = {**os.environ, "PYTHONPATH": code_path(code)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(argv: list[str], env: dict, repeats: int) -> float:
    subprocess.run(argv, env=env, capture_output=True)  # a first run writes the bytecode, as an install does
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, action="append",
                        help="a checkout whose code to run (repeat to compare; default: this one)")
    parser.add_argument("--repeats", type=int, default=21, help="runs per figure; the median counts")
    args = parser.parse_args(argv)
    checkouts = [c.resolve() for c in args.code] if args.code else [_ROOT]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rpop-bench-startup-") as folder:
        site = Path(folder) / "site"
        env = environment(checkouts[0])
        subprocess.run([sys.executable, "-m", "rpopcore", "init", str(site)], env=env, check=True,
                       capture_output=True)
        (site / "decl.toml").write_text(DECLARATION)
        subprocess.run([sys.executable, "-m", "rpopcore", "-c", str(site / "rpop.toml"), "apply",
                        str(site / "decl.toml")], env=env, check=True, capture_output=True)
        floor = timed([sys.executable, "-c", "pass"], env, args.repeats)
        for code in checkouts:
            env = environment(code)
            command = [sys.executable, "-m", "rpopcore", "-c", str(site / "rpop.toml")]
            head = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip() or "?"
            dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True).stdout.strip()
            rows.append([f"{code.name} ({head}{' + changes' if dirty else ''})",
                         f"{timed(command + ['poll', '--once'], env, args.repeats):.0f}",
                         f"{timed(command + ['status'], env, args.repeats):.0f}", f"{floor:.0f}"])
    print_table(Path(tempfile.gettempdir()), ["code", "poll --once, nothing to poll (ms)", "status (ms)",
                                              "python3 -c pass (ms)"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
