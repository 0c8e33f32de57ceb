"""The run: one Dovecot, scenario by scenario, run by run, tool by tool.

Within a scenario, run *i* of every tool happens before run *i+1* of any,
and the order of the tools rotates from run to run, so a slow drift of the
machine (page cache, a neighbour's load) does not favour one tool.  Each
run gets a fresh folder (configuration, state, Maildirs); it is checked and
removed before the next starts.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import attrs

from bench.check import Verdict, check
from bench.measure import Measurement, run_measured
from bench.proxy import LatencyProxy, measure_rtt
from bench.report import Figure, Results, Run
from bench.scenarios import PASSWORD, QUICK_TITLES, Job, Scenario, corpora
from bench.server import BenchServer, work_parent
from bench.tools import Tool
from rpopcore.testing.dovecot import ensure_mail_user

#: Every tool runs as this unprivileged user (created when missing), as
#: users run them: getmail6 refuses to deliver as root, fetchmail warns.
BENCH_USER = "rpopbench"


@attrs.frozen
class Options:
    scenarios: tuple[Scenario, ...]
    tools: tuple[Tool, ...]
    runs: int = 3
    peer_runs: dict[str, int] = attrs.field(factory=dict)  # scenario id -> runs for peers, when fewer
    quick: bool = False
    processors: int = 50
    out_dir: str | None = None
    keep: bool = False
    timeout: float = 1800.0
    long_run: float = 0.0  # a peer whose first run took longer is not run again (0: always --runs)
    retry_crashes: int = 0  # a run that exits with an error is run again up to this many times


@attrs.frozen
class Outcome:
    results: Results
    machine: dict[str, str]
    versions: dict[str, str]
    seconds: float


def run(options: Options, log: Callable[[str], None] = print) -> Outcome:
    began = time.perf_counter()
    all_corpora = corpora(options.quick)
    needed = [all_corpora[name] for name in dict.fromkeys(s.corpus for s in options.scenarios)]
    parent = work_parent(options.out_dir)
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rpop-bench-", dir=parent))
    os.chmod(work, 0o755)
    server = None
    results: Results = {}
    try:
        ids = ensure_mail_user(BENCH_USER)
        for tool in options.tools:
            if hasattr(tool, "pin"):
                tool.pin(work)  # rpop: measure the code as it is now, whatever is edited meanwhile
        versions = {t.name: t.version() for t in options.tools}
        versions["dovecot"] = _dovecot_version()
        machine = machine_info(work)
        log(f"work folder {work}")
        server = BenchServer(needed, work / "server")
        server.start(log)
        loopback_rtt = measure_rtt(server.host, server.dovecot.pop3_port)
        for scenario in options.scenarios:
            results[scenario.id] = _scenario(scenario, options, server, work, loopback_rtt, ids, log)
    finally:
        if server is not None:
            server.stop()
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    return Outcome(results, machine, versions, time.perf_counter() - began)


def _scenario(scenario: Scenario, options: Options, server: BenchServer, work: Path, loopback_rtt: float,
              ids: tuple[int, int], log: Callable[[str], None]) -> dict[str, Figure]:
    corpus = corpora(options.quick)[scenario.corpus]
    expected = server.expected[corpus.name]
    tools = [t for t in options.tools if t.name in scenario.tools and (t.multidrop or corpus.multidrop is None)]
    proxy = None
    port = server.dovecot.pop3s_port if scenario.tls else server.dovecot.pop3_port
    rtt = loopback_rtt
    if scenario.rtt_ms:
        proxy = LatencyProxy(server.host, port, scenario.rtt_ms).start()
        port = proxy.port
        rtt = measure_rtt(server.host, port)
    title = QUICK_TITLES[scenario.id] if options.quick else scenario.title
    log(f"\n({scenario.id}) {title}: {server.counts[corpus.name]:,} messages, "
        f"{server.bytes[corpus.name] / 1e6:,.1f} MB, RTT {rtt:.2f} ms")
    job = Job(
        host=server.host, port=port, tls=scenario.tls, ca_file=server.ca_file, mailboxes=corpus.mailboxes,
        password=PASSWORD, multidrop=corpus.multidrop, processors=options.processors if scenario.concurrent else 10,
        timeout=20 if options.quick else 120,
    )
    runs: dict[str, list[Run]] = {t.name: [] for t in tools}
    try:
        for i in range(options.runs):
            order = tools[i % len(tools):] + tools[: i % len(tools)]
            for tool in order:
                if tool.name != "rpop" and i >= options.peer_runs.get(scenario.id, options.runs):
                    continue
                done = runs[tool.name]
                if tool.name != "rpop" and options.long_run and done and done[0].measurement.wall > options.long_run:
                    continue
                crashed: list[str] = []
                while True:
                    attempt = f"-retry{len(crashed)}" if crashed else ""
                    result = _one_run(tool, job, expected, work / scenario.id / f"{tool.name}-{i + 1}{attempt}",
                                      options, ids)
                    crashes = result.measurement.exit_code != 0 and not result.measurement.timed_out
                    if result.ok or not crashes or len(crashed) >= options.retry_crashes:
                        break
                    crashed.append(result.note)
                    log(f"  run {i + 1} {tool.name:<9} crashed, run again: {result.note[:120]}")
                if crashed:
                    result = attrs.evolve(result, crashed=tuple(crashed))
                runs[tool.name].append(result)
                m = result.measurement
                status = "ok" if result.ok else f"FAIL: {result.note or result.verdict.summary()}"
                log(f"  run {i + 1} {tool.name:<9} {m.wall:8.2f} s wall {m.cpu:8.2f} s CPU "
                    f"{m.maxrss_kib / 1024:7.1f} MiB  {status}")
    finally:
        if proxy is not None:
            proxy.stop()
    return {
        t.name: Figure(scenario, t.name, tuple(runs[t.name]), server.counts[corpus.name],
                       server.bytes[corpus.name], rtt)
        for t in tools
    }


def _one_run(tool: Tool, job: Job, expected, run_dir: Path, options: Options, ids: tuple[int, int]) -> Run:
    run_dir.mkdir(parents=True)
    try:
        try:
            prepared = tool.prepare(job, run_dir)
        except Exception as exc:  # a set-up that fails is this tool's FAIL, not the harness's end
            failed = Measurement(0.0, 0.0, 0.0, 0, -1, False)
            return Run(failed, Verdict(False, 0, (f"set-up failed: {exc}",)), f"set-up failed: {exc}")
        if tool.unprivileged:
            _chown_tree(run_dir, *ids)
        m = run_measured(prepared.argv, cwd=run_dir, env=prepared.env, log_dir=run_dir / "log",
                         timeout=options.timeout, user=ids if tool.unprivileged else None)
        verdict = check(prepared.maildirs, expected)
        note = ""
        if m.timed_out:
            note = f"killed after {options.timeout:g} s"
        elif m.exit_code != 0:
            note = f"exit status {m.exit_code}: {_tail(run_dir / 'log' / 'stderr') or _tail(run_dir / 'log' / 'stdout')}"
        elif not verdict.ok:
            note = verdict.summary()
        return Run(m, verdict, note)
    finally:
        if not options.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid)
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _tail(path: Path, limit: int = 300) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-3:])[-limit:]


def _dovecot_version() -> str:
    from rpopcore.testing.dovecot import find_dovecot

    try:
        return subprocess.run([find_dovecot(), "--version"], capture_output=True, text=True).stdout.strip()
    except (OSError, TypeError):
        return "?"


def machine_info(work: Path) -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    fs = "?"
    try:
        fs = subprocess.run(["df", "--output=fstype", str(work)], capture_output=True, text=True).stdout.split()[-1]
    except (OSError, IndexError):
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem": f"{fs} ({work.parent})",
    }


def print_table(work: Path, headers: list[str], rows: list[list[str]]) -> None:
    """The machine (with the file system of ``work``) and a Markdown table
    of figures, right-aligned, as the small benchmarks print them."""
    print("Machine: " + ", ".join(f"{key} {value}" for key, value in machine_info(work).items()) + "\n")
    print("| " + " | ".join(headers) + " |")
    print("|" + "---:|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def to_json(outcome: Outcome) -> str:
    data = {
        "machine": outcome.machine,
        "versions": outcome.versions,
        "seconds": round(outcome.seconds, 1),
        "results": {
            sid: {
                tool: {
                    "ok": f.ok,
                    "failure": None if f.ok else f.failure,
                    "messages": f.messages,
                    "bytes": f.bytes,
                    "rtt_ms": round(f.rtt_ms, 3),
                    "wall_s": f.wall if f.runs else None,
                    "cpu_s": f.cpu if f.runs else None,
                    "peak_rss_mib": f.rss_mib if f.runs else None,
                    "runs": [
                        {"wall_s": r.measurement.wall, "user_s": r.measurement.user, "sys_s": r.measurement.sys,
                         "maxrss_kib": r.measurement.maxrss_kib, "floor_kib": r.measurement.floor_kib,
                         "exit": r.measurement.exit_code,
                         "ok": r.ok, "delivered": r.verdict.delivered, "problems": list(r.verdict.problems),
                         "notes": list(r.verdict.notes), "timed_out": r.measurement.timed_out,
                         "crashed_attempts": list(r.crashed),
                         "note": r.note}
                        for r in f.runs
                    ],
                }
                for tool, f in by_tool.items()
            }
            for sid, by_tool in outcome.results.items()
        },
    }
    return json.dumps(data, indent=1)
