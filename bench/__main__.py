"""``python3 -m bench``: run the benchmark and print the table.

Run it as root from the repository root (Dovecot needs root).  Exit status:
0 when every run delivered correctly, 1 when any printed FAIL, 2 for bad
arguments, 3 when ``--require-peers`` is given and a peer is not installed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench import harness, report  # noqa: E402
from bench.scenarios import SCENARIOS, select  # noqa: E402
from bench.tools import PEERS, all_tools  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
INSTALL = "apt-get install -y fetchmail safecat getmail6 mpop"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", metavar="IDS",
                   help=f"comma-separated, from {','.join(s.id for s in SCENARIOS)} (default: all)")
    p.add_argument("--tools", metavar="NAMES", default="rpop," + ",".join(PEERS),
                   help="comma-separated tools (default: rpop and every peer)")
    p.add_argument("--runs", type=int, default=3, help="runs per tool and scenario; the median counts (default 3)")
    p.add_argument("--peer-runs", metavar="ID=N,...", default="",
                   help="fewer runs for the peers in slow scenarios, e.g. b=1,w2=1 (rpop still gets --runs)")
    p.add_argument("--long-run", type=float, default=0, metavar="S",
                   help="a peer whose first run takes longer than S seconds is not run again "
                        "(its figure is that one run); rpop always gets --runs (default 0: off)")
    p.add_argument("--retry-crashes", type=int, default=0, metavar="N",
                   help="run a tool again, up to N times, when it exits with an error (a crash, not a wrong "
                        "delivery); the table marks the figure with ! and says why (default 0: the figure is FAIL)")
    p.add_argument("--quick", action="store_true", help="tiny corpora: checks the harness, not the speed")
    p.add_argument("--processors", type=int, default=50,
                   help="rpop's [rpop] processors in the many-mailbox scenarios d, d1k, w2 (default 50)")
    p.add_argument("--out-dir", help="parent of the run folders (default: /dev/shm when roomy, else the temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (configurations, logs, Maildirs)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before one run is killed (default 1800)")
    p.add_argument("--markdown", metavar="FILE",
                   help=f"write the results as Markdown; into FILE between {BEGIN} and {END} if it has them")
    p.add_argument("--json", metavar="FILE", help="write every run's raw figures as JSON")
    p.add_argument("--require-peers", action="store_true",
                   help="exit 3 unless fetchmail (with safecat), getmail6 and mpop are all installed")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the tool in hand is killed, Dovecot
    # stopped and the work folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        scenarios = select(args.scenario)
        peer_runs = {k: int(v) for k, v in (item.split("=") for item in args.peer_runs.split(",") if item)}
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    known = {t.name: t for t in all_tools()}
    unknown = [n for n in names if n not in known]
    if unknown or args.runs < 1:
        print(f"bench: unknown tool(s) {', '.join(unknown)}; choose from {', '.join(known)}" if unknown
              else "bench: --runs must be at least 1", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench: run as root (Dovecot's master switches users)", file=sys.stderr)
        return 2
    tools = [known[n] for n in names]
    missing = [t for t in tools if not t.available()]
    if missing:
        print(f"bench: not installed: {', '.join(t.name for t in missing)} (install: {INSTALL})", file=sys.stderr)
        if args.require_peers:
            return 3
        tools = [t for t in tools if t.available()]
    options = harness.Options(
        scenarios=tuple(scenarios), tools=tuple(tools), runs=args.runs, peer_runs=peer_runs, quick=args.quick,
        processors=args.processors, out_dir=args.out_dir, keep=args.keep, timeout=args.timeout,
        long_run=args.long_run, retry_crashes=args.retry_crashes,
    )
    outcome = harness.run(options, log=lambda line: print(line, flush=True))
    results = outcome.results
    ts = report.targets(results, args.processors)
    print("\n" + report.text_table(results))
    if ts and not args.quick:
        print("\nTargets:\n" + report.targets_text(ts))
    print(f"\n{len(results)} scenario(s) in {outcome.seconds:.0f} s; " +
          ", ".join(f"{k} {v}" for k, v in outcome.versions.items()))
    command = "python3 -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.markdown:
        write_markdown(Path(args.markdown), outcome, ts, command.strip(), args.quick)
    if args.json:
        Path(args.json).write_text(harness.to_json(outcome))
    failed = [(sid, tool) for sid, by in results.items() for tool, f in by.items() if not f.ok]
    for sid, tool in failed:
        print(f"FAIL ({sid}) {tool}: {results[sid][tool].failure}", file=sys.stderr)
    return 1 if failed else 0


def markdown(outcome: harness.Outcome, ts: list[report.Target], command: str, quick: bool) -> str:
    m = outcome.machine
    versions = ", ".join(f"{k} {v}" for k, v in outcome.versions.items())
    parts = [
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}` ({outcome.seconds / 60:.0f} min).",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, Python {m['python']}; "
        f"run folders on {m['filesystem']}.",
        f"Versions: {versions}.",
        "",
        report.markdown_table(outcome.results),
    ]
    if ts and not quick:
        parts += ["", report.targets_markdown(ts)]
    return "\n".join(parts) + "\n"


def write_markdown(path: Path, outcome, ts, command: str, quick: bool) -> None:
    text = markdown(outcome, ts, command, quick)
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        path.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    else:
        path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
