"""The benchmark harness, run small: every retriever -- rpop and each peer
-- polls the same Dovecot and must deliver every message exactly once,
byte for byte.  No timing is asserted; ``python3 -m bench`` is the real run
(see docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.tools import PEERS, all_tools
from rpopcore.testing.plugin import require_dovecot

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = "a,d,e,f,w"  # loopback, many mailboxes, TLS, multidrop, the latency proxy


def test_missing_peers_are_a_failure_not_a_skip():
    missing = [t for t in all_tools() if t.name in PEERS and not t.available()]
    if missing:
        pytest.fail(
            f"benchmark peers not installed: {', '.join(t.name for t in missing)}; "
            "install them with: apt-get install -y fetchmail safecat getmail6 mpop "
            "(bash scripts/setup --test does)",
            pytrace=False,
        )


def test_every_tool_delivers_every_message_once_in_quick_scenarios(tmp_path):
    require_dovecot(lmtp=False)
    out = tmp_path / "results.json"
    md = tmp_path / "table.md"
    result = subprocess.run(
        # getmail6 forks for every Maildir delivery and, now and then, loses
        # the child's SIGCHLD (a race in getmailcore.baseclasses.ForkingBase)
        # and gives up: such a crash is run again rather than failing CI.
        [sys.executable, "-m", "bench", "--quick", "--runs", "1", "--scenario", SCENARIOS,
         "--retry-crashes", "2", "--require-peers", "--json", str(out), "--markdown", str(md)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    results = json.loads(out.read_text())["results"]
    assert list(results) == SCENARIOS.split(",")
    for sid, by_tool in results.items():
        expected_tools = {"rpop", *PEERS} - ({"mpop"} if sid == "f" else set())
        assert set(by_tool) == expected_tools, sid
        for tool, figure in by_tool.items():
            assert figure["ok"], f"({sid}) {tool}: {figure['failure']}"
            (run,) = figure["runs"]
            assert run["delivered"] == figure["messages"], (sid, tool)
            assert run["wall_s"] > 0 and run["maxrss_kib"] > 0
    assert results["w"]["rpop"]["rtt_ms"] >= 45  # the proxy really delays
    table = md.read_text()
    assert "| **a** |" in table and "| **rpop** |" in table and "FAIL" not in table
