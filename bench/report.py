"""From runs to figures: medians, ratios rpop/peer, targets, tables.

A tool's figure in a scenario is the median over its runs (wall, CPU) and
the largest peak RSS of any run.  If any run delivered wrongly -- or failed
-- the figure is ``FAIL``, never a number.  Ratios are rpop's figure over
the peer's: below 1 means rpop is faster (or smaller).
"""

from __future__ import annotations

import statistics
from typing import Callable, Iterable

import attrs

from bench.check import Verdict
from bench.measure import Measurement
from bench.scenarios import Scenario


@attrs.frozen
class Run:
    measurement: Measurement
    verdict: Verdict
    note: str = ""  # why it failed, when it did
    crashed: tuple[str, ...] = ()  # earlier attempts that exited with an error and were retried (--retry-crashes)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.measurement.exit_code == 0 and not self.measurement.timed_out


@attrs.frozen
class Figure:
    """One tool in one scenario."""

    scenario: Scenario
    tool: str
    runs: tuple[Run, ...]
    messages: int
    bytes: int
    rtt_ms: float  # the scenario's RTT as measured (loopback: a POP3 round trip straight to Dovecot)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def failure(self) -> str:
        for r in self.runs:
            if not r.ok:
                return r.note or r.verdict.summary()
        return "no run"

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for r in self.runs for n in r.verdict.notes))

    @property
    def wall(self) -> float:
        return statistics.median(r.measurement.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.measurement.cpu for r in self.runs)

    @property
    def rss_mib(self) -> float:
        return max(r.measurement.maxrss_kib for r in self.runs) / 1024

    @property
    def rss_at_floor(self) -> bool:
        worst = max(self.runs, key=lambda r: r.measurement.maxrss_kib)
        return worst.measurement.rss_at_floor

    @property
    def rss_text(self) -> str:
        return f"<={self.rss_mib:.0f}" if self.rss_at_floor else f"{self.rss_mib:.0f}"

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.wall

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.wall

    @property
    def cpu_per_msg_ms(self) -> float:
        return self.cpu / self.messages * 1000


Results = dict[str, dict[str, Figure]]  # scenario id -> tool -> figure

COLUMNS = ("scenario", "RTT ms", "tool", "runs", "wall s", "CPU s", "peak RSS MiB", "msg/s", "MB/s",
           "rpop/tool wall", "CPU", "RSS")


def rows(results: Results) -> list[tuple[str, ...]]:
    out = []
    for sid, by_tool in results.items():
        rpop = by_tool.get("rpop")
        for tool, f in by_tool.items():
            mark = ("*" if f.ok and f.notes else "") + ("!" if any(r.crashed for r in f.runs) else "")
            row = [sid, _rtt(f.rtt_ms), tool + mark, str(len(f.runs))]
            if not f.ok:
                row[2] = tool + "!" if "!" not in row[2] else row[2]
                row += ["FAIL", "FAIL", "FAIL", "FAIL", "FAIL", "", "", ""]
                out.append(tuple(row))
                continue
            row += [f"{f.wall:.2f}", f"{f.cpu:.2f}", f.rss_text, f"{f.msgs_per_s:,.0f}",
                    f"{f.mb_per_s:.1f}"]
            if tool == "rpop" or rpop is None:
                row += ["", "", ""]
            elif not rpop.ok:
                row += ["FAIL", "FAIL", "FAIL"]
            else:
                rss = f"{rpop.rss_mib / f.rss_mib:.2f}"
                row += [f"{rpop.wall / f.wall:.2f}", f"{rpop.cpu / f.cpu:.2f}", f">={rss}" if f.rss_at_floor else rss]
            out.append(tuple(row))
    return out


def footnotes(results: Results) -> list[str]:
    """``* tool (scenario): note`` for every tolerated difference, and
    ``! tool (scenario): ...`` for every FAIL: what went wrong, and what the
    runs that did succeed measured (for information; the figure stays FAIL)."""
    out = [f"* {tool} ({sid}): {note}" for sid, by_tool in results.items() for tool, f in by_tool.items()
           if f.ok for note in f.notes]
    for sid, by_tool in results.items():
        for tool, f in by_tool.items():
            crashed = [c for r in f.runs for c in r.crashed]
            if crashed:
                out.append(f"! {tool} ({sid}): {len(crashed)} attempt(s) crashed and were run again "
                           f"(--retry-crashes): {crashed[0][:160]}")
            if f.ok:
                continue
            bad = [(i, r) for i, r in enumerate(f.runs, 1) if not r.ok]
            good = [r for r in f.runs if r.ok]
            text = "; ".join(f"run {i} failed after {r.measurement.wall:.1f} s: {(r.note or r.verdict.summary())[:160]}"
                             for i, r in bad)
            if good:
                text += "; the other runs: " + ", ".join(f"{r.measurement.wall:.2f} s wall / {r.measurement.cpu:.2f} s CPU"
                                                      for r in good)
            out.append(f"! {tool} ({sid}): {text}")
    return out


def _rtt(ms: float) -> str:
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def text_table(results: Results) -> str:
    table = [COLUMNS, *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = []
    for n, r in enumerate(table):
        lines.append("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines + footnotes(results))


def markdown_table(results: Results) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if i < 3 else "--:" for i in range(len(COLUMNS))) + "|"]
    last = None
    for r in rows(results):
        shown = list(r)
        if r[0] == last:
            shown[0] = ""
        else:
            shown[0] = f"**{r[0]}**"
        last = r[0]
        if r[2] == "rpop":
            shown[2] = "**rpop**"
        lines.append("| " + " | ".join(shown).replace("*", "\\*").replace("\\*\\*", "**") + " |")
    notes = [n.replace("*", "\\*", 1).replace("|", "\\|") for n in footnotes(results)]
    return "\n".join(lines + ([""] + [f"{n}  " for n in notes] if notes else []))


# --- targets -----------------------------------------------------------------


@attrs.frozen
class Target:
    scenario: str
    text: str
    measured: str
    met: bool | None  # None: not measured (scenario or peer missing, or a FAIL)


def _get(results: Results, sid: str, tool: str) -> Figure | None:
    f = results.get(sid, {}).get(tool)
    return f if f is not None and f.ok else None


def targets(results: Results, processors: int) -> list[Target]:
    """The issue's targets, each judged on this run's figures."""
    out: list[Target] = []

    def ratio(sid: str, peer: str, text: str, limit: float, measure: Callable[[Figure], float] = lambda f: f.wall,
              unit: str = "wall") -> None:
        if "rpop" not in results.get(sid, {}) or peer not in results[sid]:
            return
        r, p = _get(results, sid, "rpop"), _get(results, sid, peer)
        if r is None or p is None:
            out.append(Target(sid, text, "not measured (FAIL or missing)", None))
            return
        value = measure(r) / measure(p)
        out.append(Target(sid, text, f"rpop/{peer} {unit} = {value:.2f} (rpop {measure(r):.3g}, {peer} {measure(p):.3g})",
                          value <= limit))

    for sid in ("a", "b", "e"):
        ratio(sid, "mpop", "wall <= mpop's", 1.0)
    ratio("b", "mpop", "CPU/message <= 2x mpop's", 2.0, lambda f: f.cpu_per_msg_ms, "CPU/msg")
    ratio("b", "getmail6", "CPU/message <= 1/3 of getmail6's", 1 / 3, lambda f: f.cpu_per_msg_ms, "CPU/msg")
    if "rpop" in results.get("c", {}):
        r = _get(results, "c", "rpop")
        out.append(Target("c", "peak RSS < 60 MB", f"{r.rss_mib * 1.048576:.1f} MB" if r else "FAIL",
                          (r.rss_mib * 1.048576 < 60) if r else None))
        ratio("c", "mpop", "wall <= 2x mpop's", 2.0)
    conc = f"(processors = {processors})"
    ratio("d", "mpop", f"wall <= 1/5 of mpop's {conc}", 0.2)
    if "rpop" in results.get("d1k", {}):
        r1k = _get(results, "d1k", "rpop")
        r100 = _get(results, "d", "rpop")
        if r1k and r100:
            grow = r1k.rss_mib / r100.rss_mib
            out.append(Target("d1k", "completes; flat memory (peak RSS <= 1.25x that of 100 mailboxes)",
                              f"completed; {r1k.rss_mib:.0f} MiB vs {r100.rss_mib:.0f} MiB (x{grow:.2f})", grow <= 1.25))
        else:
            out.append(Target("d1k", "completes; flat memory", "completed" if r1k else "FAIL",
                              None if r1k else False))
    ratio("f", "fetchmail", "wall <= 1/2 of fetchmail's; every message in the right Maildir", 0.5)
    ratio("w", "fetchmail", ">= 10x faster than fetchmail", 0.1)
    ratio("w", "getmail6", ">= 10x faster than getmail6", 0.1)
    ratio("w", "mpop", "not slower than mpop", 1.0)
    ratio("w2", "mpop", f">= 10x faster than mpop {conc}", 0.1)
    return out


def targets_text(ts: Iterable[Target]) -> str:
    mark = {True: "MET", False: "MISSED", None: "n/a"}
    return "\n".join(f"  ({t.scenario}) {t.text}: {mark[t.met]} -- {t.measured}" for t in ts)


def targets_markdown(ts: Iterable[Target]) -> str:
    mark = {True: "met", False: "**missed**", None: "n/a"}
    lines = ["| scenario | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {t.scenario} | {t.text} | {t.measured} | {mark[t.met]} |" for t in ts]
    return "\n".join(lines)
