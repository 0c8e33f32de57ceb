"""``python3 -m bench.faults``: fault harnesses for rpop.

``kill``: SIGKILL ``rpop poll --once`` at random instants against a real
Dovecot, in both leave modes of each target, and count lost, duplicated and
stuck mail (see :mod:`bench.faults.kill`).

``cut``: cut the connection between rpop and a real Dovecot after every
byte offset of a whole session, each way, and count lost and duplicated
mail and the error each broken poll reported (:mod:`bench.faults.cut`).

``fuzz``: poll a hostile POP3 server whose every answer hypothesis draws,
case after case, and check for crashes, hangs, memory growth and mail that
was never sent whole (:mod:`bench.faults.fuzz`).

``secrets``: cut a session at every line rpop sends, for every way a secret
is sent, and look for the secret in every output and file
(:mod:`bench.faults.secrets`).

Run ``kill`` and ``cut`` as root from the repository root (Dovecot needs
root).  Exit status 0 when every promise was kept, 1 when one was not, 2
for bad arguments.

``report FILE.json...``: the Markdown tables of docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from typing import Iterator

import attrs

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # the test support code lives in tests/
    sys.path.insert(0, str(_ROOT))

from bench.faults import cut, fuzz, kill, report, secrets  # noqa: E402
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
    c = sub.add_parser("cut", help="cut a session after every byte, each way; count lost and duplicated mail")
    c.add_argument("--stride-to-server", type=_at_least_one, default=1, metavar="N",
                   help="cut after every N-th byte rpop sends (default 1: every one)")
    c.add_argument("--stride-to-client", type=_at_least_one, default=1, metavar="N",
                   help="cut after every N-th byte Dovecot sends (default 1: every one)")
    c.add_argument("--leave", type=_leave_modes, default=[False, True], metavar="LIST",
                   help="the records' leave settings, comma-separated (default: false,true)")
    c.add_argument("--lanes", type=_at_least_one, default=2, metavar="N",
                   help=f"trials run at once, each with a site and a Dovecot user of its own "
                        f"(default 2, at most {cut.MAX_LANES})")
    f = sub.add_parser("fuzz", help="a hostile server drawn by hypothesis: crashes, hangs, memory, corrupt mail")
    f.add_argument("--cases", type=_at_least_one, default=1_000_000, metavar="N",
                   help="polls in all (default 1,000,000)")
    f.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the first hypothesis run (default 1)")
    f.add_argument("--jobs", type=_at_least_one, default=os.cpu_count() or 1, metavar="N",
                   help="processes at a time, each taking at most 50,000 cases (default: one per core)")
    f.add_argument("--batch", type=_at_least_one, default=fuzz.BATCH, metavar="N",
                   help=f"cases per hypothesis run (default {fuzz.BATCH:,}); a failed run ends early, the next begins")
    f.add_argument("--no-shrink", action="store_true", help="report a failing case as found, not shrunk (faster)")
    f.add_argument("--replay", metavar="RECORD:TAPE", help="run again one case a failure names, and say what it found")
    s = sub.add_parser("secrets", help="cut a session at every line, every login: any secret in any output or file?")
    s.add_argument("--ways", type=_ways, default=[w.name for w in secrets.WAYS], metavar="LIST",
                   help=f"comma-separated, from {','.join(w.name for w in secrets.WAYS)} (default: all)")
    for harness in (k, c, f, s):
        harness.add_argument("--out", metavar="FILE.json", help="write the results as JSON (for the report command)")
        harness.add_argument("--out-dir", metavar="DIR",
                             help="parent of the work folder (default: /dev/shm when roomy, else the temp folder)")
        harness.add_argument("--live", action="store_true",
                             help="run rpop from the work tree (or PYTHONPATH) as it is at each poll, "
                                  "not from a copy taken at the start")
        harness.add_argument("--keep", action="store_true", help="keep the work folder (sites, logs, Maildirs)")
    r = sub.add_parser("report", help="print the Markdown tables of runs")
    r.add_argument("json", metavar="FILE.json", nargs="+")
    r.add_argument("--into", metavar="PAGE.md", help="put each run's tables between its markers in PAGE.md")
    return p.parse_args(argv)


def _targets(text: str) -> list[str]:
    return _names(text, kill.TARGETS)


def _ways(text: str) -> list[str]:
    return _names(text, [w.name for w in secrets.WAYS])


def _names(text: str, allowed) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or not set(names) <= set(allowed):
        raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
    return names


def _leave_modes(text: str) -> list[bool]:
    return [name == "true" for name in _names(text, ("false", "true"))]


def _at_least_one(text: str) -> int:
    digits = text.replace(",", "").replace("_", "")  # 1,000,000 or 1_000_000 as well
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError("a whole number, at least 1")
    return int(digits)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        for name in args.json:
            run = json.loads(Path(name).read_text())
            text = report.render(run)
            if args.into:
                report.fill_in(Path(args.into), text, *report.markers(run))
            print(text, end="")
        return 0
    if args.command == "fuzz" and args.replay:
        return _replay(args.replay)
    if args.command in ("kill", "cut") and os.geteuid() != 0:
        print("bench.faults: run as root (Dovecot's master switches users)", file=sys.stderr)
        return 2
    # SIGTERM ends the run like Ctrl-C: Dovecot stopped, the work folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python3 -m bench.faults " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    harness = {"kill": run_kills, "cut": run_cuts, "fuzz": run_fuzz, "secrets": run_secrets}[args.command]
    run = harness(args, command)
    if args.out:
        Path(args.out).write_text(json.dumps(run, indent=2) + "\n")
    print("\n" + report.render(run), end="")
    return 1 if report.problems(run) else 0


@attrs.frozen
class Workspace:
    """A run's work folder, the environment of the rpop commands it runs
    (None: this process's) and where their code comes from."""

    folder: Path
    env: dict | None
    code: str
    snapshot: Path | None  # the copy of rpop's code the run imports (None: the work tree)
    started: float


@contextlib.contextmanager
def workspace(args: argparse.Namespace) -> Iterator[Workspace]:
    """Make the work folder and, unless ``--live``, a snapshot of rpop's code
    in it (the engine is edited while a long run goes on: measure one
    version of it); remove the folder at the end unless ``--keep``."""
    folder = Path(tempfile.mkdtemp(prefix=f"rpop-faults-{args.command}-", dir=work_parent(args.out_dir)))
    started = time.monotonic()
    try:
        env, code, snapshot = None, tree_state() + _pythonpath_note(), None
        if not args.live:
            rpop = Rpop()
            rpop.pin(folder)
            snapshot = rpop.snapshot
            env, code = {**base_env(folder), "PYTHONPATH": str(snapshot)}, rpop.state
        yield Workspace(folder, env, code, snapshot, started)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def facts(args: argparse.Namespace, command: str, space: Workspace, options: dict,
          dovecot: Dovecot | None = None) -> dict:
    """What every run's JSON says of itself: the command, when, on what code
    and what machine."""
    machine = machine_info(space.folder)
    found = {
        "harness": args.command,
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "seconds": round(time.monotonic() - space.started, 1),
        "git_head": _git("rev-parse", "HEAD"),
        "code": space.code,
        "machine": machine,
        "options": options,
    }
    if dovecot is not None:
        machine["dovecot_filesystem"] = machine_info(dovecot.root)["filesystem"]
        found["dovecot"] = "Dovecot " + _dovecot_version()
    return found


def say(line: str) -> None:
    print(line, flush=True)


def run_kills(args: argparse.Namespace, command: str) -> dict:
    """Every mode against one Dovecot; the run as JSON-ready data."""
    dovecot = Dovecot(users=kill.USERS, lmtp=True)
    with workspace(args) as space:
        try:
            dovecot.start()
            modes = [(target, leave) for target in args.targets for leave in (False, True)]
            per_mode = math.ceil(args.points / len(modes))
            say(f"{len(modes)} modes x {per_mode} kills, {args.messages} messages a trial; rpop {space.code}; "
                f"work in {space.folder}")
            results = []
            for target, leave in modes:
                result = kill.run_mode(dovecot, space.folder / f"{target}-leave-{str(leave).lower()}", target, leave,
                                       points=per_mode, messages=args.messages, seed=args.seed, env=space.env, log=say)
                problems = kill.problems(result)
                say(f"  {target} leave={str(leave).lower()}: {result.kills} kills in {result.trials} trials, "
                    f"{result.seconds:.0f} s: {'; '.join(problems) or 'promise kept'}")
                results.append({**attrs.asdict(result), "problems": problems})
            options = {"points": args.points, "seed": args.seed, "messages": args.messages, "targets": args.targets}
            return {**facts(args, command, space, options, dovecot), "modes": results}
        finally:
            dovecot.stop()


def run_cuts(args: argparse.Namespace, command: str) -> dict:
    """Both directions in each leave mode against one Dovecot."""
    dovecot = Dovecot(users=cut.USERS)
    strides = {"to-server": args.stride_to_server, "to-client": args.stride_to_client}
    with workspace(args) as space:
        try:
            dovecot.start()
            say(f"cuts with strides {strides}, {args.lanes} lanes; rpop {space.code}; work in {space.folder}")
            results = []
            for leave in args.leave:
                for result in cut.run_mode(dovecot, space.folder / f"leave-{str(leave).lower()}", leave, strides,
                                           lanes=args.lanes, env=space.env, log=say):
                    problems = cut.problems(result)
                    say(f"  leave={str(leave).lower()} {result.direction}: {result.trials} cuts, "
                        f"{result.seconds:.0f} s: {'; '.join(problems) or 'promise kept'}")
                    results.append({**attrs.asdict(result), "problems": problems})
            options = {"strides": strides, "leave": args.leave, "lanes": args.lanes, "messages": cut.MESSAGES}
            return {**facts(args, command, space, options, dovecot), "modes": results}
        finally:
            dovecot.stop()


def run_fuzz(args: argparse.Namespace, command: str) -> dict:
    """The cases shared by ``--jobs`` processes, each importing rpop from the
    snapshot (or the work tree)."""
    with workspace(args) as space:
        say(f"{args.cases:,} cases in {args.jobs} processes, hypothesis runs of {args.batch:,}; rpop {space.code}; "
            f"work in {space.folder}")
        # --live: the work tree, or the first folder of PYTHONPATH (an older version, say).
        live = Path(os.environ["PYTHONPATH"].split(os.pathsep)[0]) if os.environ.get("PYTHONPATH") else _ROOT
        result = fuzz.run_jobs(space.folder, args.cases, args.seed, args.jobs, batch=args.batch,
                               shrink=not args.no_shrink, code=space.snapshot or live)
        problems = fuzz.problems(result, args.cases)
        options = {"cases": args.cases, "seed": args.seed, "jobs": args.jobs, "batch": args.batch,
                   "shrink": not args.no_shrink}
        return {**facts(args, command, space, options), "result": attrs.asdict(result), "problems": problems,
                "limits": fuzz.limits()}


def run_secrets(args: argparse.Namespace, command: str) -> dict:
    with workspace(args) as space:
        say(f"ways {','.join(args.ways)}; rpop {space.code}; work in {space.folder}")
        results = asyncio.run(secrets.run(space.folder, secrets.ways_named(args.ways), env=space.env, log=say))
        modes = [{**attrs.asdict(r), "problems": secrets.problems(r)} for r in results]
        return {**facts(args, command, space, {"ways": args.ways}), "modes": modes}


def _replay(case: str) -> int:
    folder = Path(tempfile.mkdtemp(prefix="rpop-faults-replay-", dir=work_parent(None)))
    try:
        with fuzz.Engine(folder) as engine:
            found = engine.replay(case)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(found or "the case passes")
    return 1 if found else 0


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
