"""``python3 -m bench.faults``: fault harnesses for rpop.

``kill``: SIGKILL ``rpop poll --once`` at random instants against a real
Dovecot, in both leave modes of each target, and count lost, duplicated and
stuck mail (see :mod:`bench.faults.kill`).  Run as root from the repository
root (Dovecot needs root).  Exit status 0 when every mode kept its promise,
1 when one did not, 2 for bad arguments.

``report FILE.json``: the Markdown tables of docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # the test support code lives in tests/
    sys.path.insert(0, str(_ROOT))

from bench.faults import kill, report  # noqa: E402
from bench.harness import machine_info  # noqa: E402
from bench.server import work_parent  # noqa: E402
from bench.tools import base_env  # noqa: E402
from bench.tools.rpop import Rpop, tree_state  # noqa: E402
from rpopcore.testing.dovecot import Dovecot, find_dovecot  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench.faults", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("kill", help="kill -9 polls at random instants; count lost, duplicated and stuck mail")
    k.add_argument("--points", type=_at_least_one, default=1000, metavar="N",
                   help="kills in all, shared by the modes (each target in both leave modes; default 1000)")
    k.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the kill delays and message sizes (default 1)")
    k.add_argument("--targets", type=_targets, default=list(kill.TARGETS), metavar="LIST",
                   help=f"comma-separated, from {','.join(kill.TARGETS)} (default: all)")
    k.add_argument("--messages", type=_at_least_one, default=300, metavar="M", help="messages in the mailbox at each trial (default 300)")
    k.add_argument("--out", metavar="FILE.json", help="write the results as JSON (for the report command)")
    k.add_argument("--out-dir", metavar="DIR", help="parent of the work folder (default: /dev/shm when roomy, else the temp folder)")
    k.add_argument("--live", action="store_true",
                   help="run rpop from the work tree (or PYTHONPATH) as it is at each poll, "
                        "not from a copy taken at the start")
    k.add_argument("--keep", action="store_true", help="keep the work folder (sites, logs, Maildirs)")
    r = sub.add_parser("report", help="print the Markdown tables of a kill run")
    r.add_argument("json", metavar="FILE.json")
    r.add_argument("--into", metavar="PAGE.md", help=f"put them between {report.BEGIN} and {report.END} of PAGE.md")
    return p.parse_args(argv)


def _targets(text: str) -> list[str]:
    targets = [t.strip() for t in text.split(",") if t.strip()]
    if not targets or not set(targets) <= set(kill.TARGETS):
        raise argparse.ArgumentTypeError(f"choose from {','.join(kill.TARGETS)}")
    return targets


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("a whole number, at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        text = report.markdown(json.loads(Path(args.json).read_text()))
        if args.into:
            report.fill_in(Path(args.into), text)
        print(text, end="")
        return 0
    if os.geteuid() != 0:
        print("bench.faults: run as root (Dovecot's master switches users)", file=sys.stderr)
        return 2
    # SIGTERM ends the run like Ctrl-C: Dovecot stopped, the work folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python3 -m bench.faults " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    run = run_kills(args, command)
    if args.out:
        Path(args.out).write_text(json.dumps(run, indent=2) + "\n")
    print("\n" + report.markdown(run), end="")
    return 1 if any(mode["problems"] for mode in run["modes"]) else 0


def run_kills(args: argparse.Namespace, command: str) -> dict:
    """Every mode against one Dovecot; the run as JSON-ready data."""
    work = Path(tempfile.mkdtemp(prefix="rpop-faults-", dir=work_parent(args.out_dir)))
    started = time.monotonic()
    dovecot = Dovecot(users=kill.USERS, lmtp=True)
    try:
        env, code = None, tree_state() + _pythonpath_note()
        if not args.live:  # the engine is edited while this runs: measure one snapshot of it
            rpop = Rpop()
            rpop.pin(work)
            env, code = {**base_env(work), "PYTHONPATH": str(rpop.snapshot)}, rpop.state
        dovecot.start()
        modes = [(target, leave) for target in args.targets for leave in (False, True)]
        per_mode = math.ceil(args.points / len(modes))
        print(f"{len(modes)} modes x {per_mode} kills, {args.messages} messages a trial; rpop {code}; work in {work}",
              flush=True)
        results = []
        for target, leave in modes:
            result = kill.run_mode(dovecot, work / f"{target}-leave-{str(leave).lower()}", target, leave,
                                   points=per_mode, messages=args.messages, seed=args.seed, env=env,
                                   log=lambda line: print(line, flush=True))
            problems = kill.problems(result)
            print(f"  {target} leave={str(leave).lower()}: {result.kills} kills in {result.trials} trials, "
                  f"{result.seconds:.0f} s: {'; '.join(problems) or 'promise kept'}", flush=True)
            results.append({**attrs.asdict(result), "problems": problems})
        machine = machine_info(work)
        machine["dovecot_filesystem"] = machine_info(dovecot.root)["filesystem"]
        return {
            "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "seconds": round(time.monotonic() - started, 1),
            "git_head": _git("rev-parse", "HEAD"),
            "code": code,
            "dovecot": "Dovecot " + _dovecot_version(),
            "machine": machine,
            "options": {"points": args.points, "seed": args.seed, "messages": args.messages, "targets": args.targets},
            "modes": results,
        }
    finally:
        dovecot.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _pythonpath_note() -> str:
    path = os.environ.get("PYTHONPATH")
    return f", imported from PYTHONPATH={path}" if path else ""


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True)
    return done.stdout.strip() or "not a git work tree"


def _dovecot_version() -> str:
    return subprocess.run([find_dovecot(), "--version"], capture_output=True, text=True).stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
