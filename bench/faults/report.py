"""The results of ``python3 -m bench.faults kill --out FILE.json`` as the
Markdown of docs/reliability.md: ``python3 -m bench.faults report FILE.json``
prints it, ``--into docs/reliability.md`` puts it between the page's
markers."""

from __future__ import annotations

from pathlib import Path

from bench.faults.kill import PHASES

BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
NOT_RUN = "not yet run"
#: Both leave modes of both targets: the rows a complete run fills.
MODES = [("maildir", False), ("maildir", True), ("lmtp", False), ("lmtp", True)]
PROMISE = {"maildir": "exactly once", "lmtp": "≤ 1 duplicate per kill"}


def markdown(run: dict | None) -> str:
    """The tables of one run (None: every cell ``not yet run``)."""
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
        kept = "yes" if not mode["problems"] else "**no**: " + "; ".join(mode["problems"])
        results.append(f"{head} {PROMISE.get(target, '')} | {mode['trials']:,} | {mode['kills']:,} | {mode['lost']:,} "
                       f"| {mode['duplicated']:,} ({mode['extra_copies']:,}) | {mode['stuck']:,} "
                       f"| {mode['busy_after_kill']:,} | {kept} |")
        phases.append(head + "".join(f" {mode['phases'].get(p, 0):,} |" for p in PHASES)
                      + f" {mode['tmp_file_left']:,} |")
    return "\n".join([_measured(run), "", *results, "", "Where the kills landed (the phase of rpop's last log line "
                      "naming a step; see the method above):", "", *phases]) + "\n"


def _measured(run: dict | None) -> str:
    if run is None:
        return "Not yet run: fill in with `python3 -m bench.faults report FILE.json --into docs/reliability.md`."
    m = run["machine"]
    return (f"Measured {run['date']} with `{run['command']}` ({run['seconds'] / 60:.0f} min) on {run['code']}. "
            f"Machine: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}; "
            f"rpop's Maildirs on {m['filesystem']}, Dovecot's on {m['dovecot_filesystem']}; {run['dovecot']}.")


def fill_in(path: Path, text: str) -> None:
    """Replace what stands between the page's markers with ``text``."""
    page = path.read_text()
    if BEGIN not in page or END not in page:
        raise ValueError(f"{path} has no {BEGIN} ... {END} block to fill")
    head, rest = page.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{text}{END}{rest.split(END, 1)[1]}")
