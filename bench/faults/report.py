"""The results of ``python3 -m bench.faults kill|cut|fuzz|secrets --out
FILE.json`` as the Markdown of docs/reliability.md: ``python3 -m
bench.faults report FILE.json...`` prints it, ``--into docs/reliability.md``
puts each run's tables between its markers on the page."""

from __future__ import annotations

from pathlib import Path

from bench.faults.kill import PHASES

BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
NOT_RUN = "not yet run"
#: Both leave modes of both targets: the rows a complete run fills.
MODES = [("maildir", False), ("maildir", True), ("lmtp", False), ("lmtp", True)]
PROMISE = {"maildir": "exactly once", "lmtp": "≤ 1 duplicate per kill"}
DIRECTION = {"to-server": "rpop → Dovecot", "to-client": "Dovecot → rpop"}


def harness(run: dict) -> str:
    return run.get("harness", "kill")  # kill runs from before other harnesses said nothing


def markers(run: dict) -> tuple[str, str]:
    """Where a run's tables go on the page."""
    name = harness(run)
    if name == "kill":
        return BEGIN, END
    return f"<!-- faults:{name}:begin -->", f"<!-- faults:{name}:end -->"


def render(run: dict) -> str:
    """The tables of any harness's run."""
    renderers = {"kill": markdown, "cut": cut_markdown, "fuzz": fuzz_markdown, "secrets": secrets_markdown}
    return renderers[harness(run)](run)


def problems(run: dict) -> list[str]:
    """Every promise a run found broken."""
    if "problems" in run:
        return run["problems"]
    return [p for mode in run["modes"] for p in mode["problems"]]


def markdown(run: dict | None) -> str:
    """The tables of one kill run (None: every cell ``not yet run``)."""
    rows = {(m["target"], m["leave"]): m for m in run["modes"]} if run else {}
    results = ["| target | leave | promise | trials | kills | lost | duplicated (extra copies) | stuck "
               "| record-busy after a kill | promise kept |",
               "|---|---|---|--:|--:|--:|--:|--:|--:|---|"]
    phases = ["| target | leave | " + " | ".join(PHASES) + " | left a file in tmp/ |",
              "|---|---|" + "--:|" * (len(PHASES) + 1)]
    for target, leave in MODES + [key for key in rows if key not in MODES]:
        mode = rows.get((target, leave))
        head = f"| {target} | {str(leave).lower()} |"
        if mode is None:
            results.append(f"{head} {PROMISE.get(target, '')} |" + f" {NOT_RUN} |" * 7)
            phases.append(head + f" {NOT_RUN} |" * (len(PHASES) + 1))
            continue
        results.append(f"{head} {PROMISE.get(target, '')} | {mode['trials']:,} | {mode['kills']:,} | {mode['lost']:,} "
                       f"| {mode['duplicated']:,} ({mode['extra_copies']:,}) | {mode['stuck']:,} "
                       f"| {mode['busy_after_kill']:,} | {_kept(mode['problems'])} |")
        phases.append(head + "".join(f" {mode['phases'].get(p, 0):,} |" for p in PHASES)
                      + f" {mode['tmp_file_left']:,} |")
    return "\n".join([_measured(run), "", *results, "", "Where the kills landed (the phase of rpop's last log line "
                      "naming a step; see the method above):", "", *phases]) + "\n"


def cut_markdown(run: dict) -> str:
    """The tables of one cut run."""
    results = ["| leave | cut after N bytes of | a session's bytes that way | cuts | lost | duplicated "
               "| stuck | how the broken polls ended | unclear endings | unbroken poll after failed | promise kept |",
               "|---|---|--:|--:|--:|--:|--:|---|--:|--:|---|"]
    phases = ["| leave | cut after N bytes of | " + " | ".join(PHASES) + " |", "|---|---|" + "--:|" * len(PHASES)]
    for mode in run["modes"]:
        head = f"| {str(mode['leave']).lower()} | {DIRECTION[mode['direction']]} |"
        every = "after every byte" if mode["stride"] == 1 else f"after 1 byte in {mode['stride']}"
        stuck = "–" if mode["leave"] else f"{mode['stuck']:,}"  # with leave = true mail stays by design
        results.append(f"{head} {mode['session_bytes']:,} | {mode['trials']:,} ({every}) | {mode['lost']:,} "
                       f"| {mode['duplicated']:,} | {stuck} | {_counts(mode['errors'])} "
                       f"| {mode['unclear'] + mode['not_cut']:,} | {mode['failed_final_polls']:,} "
                       f"| {_kept(mode['problems'])} |")
        phases.append(head + "".join(f" {mode['phases'].get(p, 0):,} |" for p in PHASES))
    return "\n".join([_measured(run), "", *results, "", "Where the cuts landed (the phase of rpop's last log line "
                      "naming a step before the poll failed):", "", *phases, *_examples(run["modes"])]) + "\n"


def fuzz_markdown(run: dict) -> str:
    """The tables of one fuzz run."""
    r, limits = run["result"], run["limits"]
    hours = r["seconds"] / 3600
    took = f"{hours:.1f} h" if hours >= 1 else f"{r['seconds'] / 60:.0f} min"
    table = ["| cases | rate | failing cases found | slowest poll | largest peak of a traced case "
             "| most a process grew | promise kept |",
             "|--:|--:|--:|--:|--:|--:|---|",
             f"| {r['cases']:,} | {r['rate']:,.0f} a second, {r['jobs']} processes at a time ({took}) | {r['failed_runs']:,} "
             f"| {r['slowest_poll']:.2f} s (limit {limits['hang_limit_s']:g} s) "
             f"| {r['peak_traced'] / 2**20:.1f} MiB of {r['traced']:,} traced (bound {limits['memory_bound_mib']} MiB) "
             f"| {r['rss_growth'] / 2**20:.0f} MiB (bound {limits['rss_bound_mib']} MiB) | {_kept(run['problems'])} |"]
    total = max(1, r["cases"])
    ends = ["| how the poll ended | cases | share |", "|---|--:|--:|"]
    for code, n in sorted(r["outcomes"].items(), key=lambda item: -item[1]):
        ends.append(f"| {'success' if code == 'ok' else code} | {n:,} | {100 * n / total:.1f} % |")
    found = []
    if r.get("failure_kinds"):
        found = ["", "| what the failing case of a hypothesis run did | runs |", "|---|--:|"]
        found += [f"| {kind} | {n:,} |" for kind, n in sorted(r["failure_kinds"].items(), key=lambda item: -item[1])]
    if r["failures"]:
        found += ["", "The first failing cases (the JSON holds each one's "
                     "dialogue and the `RECORD:TAPE` that `python3 -m bench.faults fuzz --replay` runs again):", ""]
        found += [f"{n}. {_failure(text)}" for n, text in enumerate(r["failures"], 1)]
    return "\n".join([_measured(run), "", *table, "", *ends, *found]) + "\n"


def secrets_markdown(run: dict) -> str:
    """The table of one secrets run."""
    rows = ["| how the secret is sent | lines rpop sends | cuts (drop and stall at each) | how the polls ended "
            "| places searched | characters searched | places holding a secret | promise kept |",
            "|---|--:|--:|---|--:|--:|--:|---|"]
    for mode in run["modes"]:
        rows.append(f"| {mode['way']} | {mode['lines']} | {mode['cuts']} | {_counts(mode['errors'])} "
                    f"| {mode['places']:,} | {mode['searched']:,} | {mode['leaks']:,} | {_kept(mode['problems'])} |")
    return "\n".join([_measured(run), "", *rows, *_examples(run["modes"])]) + "\n"


def _kept(found: list[str]) -> str:
    return "yes" if not found else "**no**: " + "; ".join(found)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in sorted(counts.items(), key=lambda item: -item[1]))


def _examples(modes: list[dict]) -> list[str]:
    found = [f"* {text}" for mode in modes for text in mode.get("examples", [])[:5]]
    return ["", "What went wrong, the first of each:", "", *found] if found else []


def _failure(text: str) -> str:
    """What a failing case did, in a line: the first thing found wrong
    (without the bytes it names) and how the poll ended."""
    lines = text.splitlines()
    what = lines[0].split(": ", 1)[-1].removeprefix("CaseFailed: ").split(": ", 1)[0]
    ended = next((line for line in lines if line.startswith("[record")), "")
    odd = [line.rsplit("(", 1)[-1].rstrip(")").split("; ")[1:] for line in lines if line.startswith("S: ")]
    odd = [f"{kind} ({action})" if action != "send" else kind for kind, action in odd
           if kind not in ("honest", "listing") or action != "send"]
    return f"{what} {ended}" + (f"; the server's odd answers: {', '.join(odd)}" if odd else "")


def _measured(run: dict | None) -> str:
    if run is None:
        return "Not yet run: fill in with `python3 -m bench.faults report FILE.json --into docs/reliability.md`."
    m = run["machine"]
    minutes = run["seconds"] / 60
    took = f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"
    where = f"rpop's files on {m['filesystem']}"
    if "dovecot" in run:
        where = f"rpop's Maildirs on {m['filesystem']}, Dovecot's on {m['dovecot_filesystem']}; {run['dovecot']}"
    return (f"Measured {run['date']} with `{run['command']}` ({took}) on {run['code']}. "
            f"Machine: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}; {where}.")


def fill_in(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what stands between the page's markers with ``text``."""
    page = path.read_text()
    if begin not in page or end not in page:
        raise ValueError(f"{path} has no {begin} ... {end} block to fill")
    head, rest = page.split(begin, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{rest.split(end, 1)[1]}")
