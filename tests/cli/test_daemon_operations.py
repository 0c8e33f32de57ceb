"""The daemon as monitoring and systemd see it: Prometheus figures that
match what the polls did, sd_notify READY/STATUS/WATCHDOG/STOPPING on the
socket systemd would listen on, and log lines without time stamps when
stderr is the journal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from rpopcore.testing.scriptable_server import Message
from tests.cli.conftest import rpop_command

DECL = """
[rpop]
allow_self_poll = true

[[domain]]
name = "example.test"
accounts = ["alice", "bob", "carol"]

[[remote]]
owner = "alice@example.test"
account = "alice.smith"
host = "127.0.0.1:{port}"
password = "pw"

[[remote]]
owner = "carol@example.test"
account = "carol"
host = "127.0.0.1:{port}"
password = "pw"
poll_every = "disabled"

[[remote]]
owner = "bob@example.test"
account = "bob"
host = "127.0.0.1:{port}"
password = "wrong"
"""
# The daemon spreads first polls over 20 s by record id: ids 1 and 3 come
# within 5 s, id 2 (disabled here) would come last.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_for(predicate, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_metrics_and_sd_notify_follow_the_polls(site, rpop, threaded_pop3, tmp_path):
    messages = [Message(uid, f"Subject: {uid}\r\n\r\n{'x' * 500}\r\n".encode()) for uid in ("a", "b", "c")]
    server = threaded_pop3(messages, user="alice.smith", password="pw")
    port = free_port()
    with open(site / "rpop.toml", "a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    (site / "decl.toml").write_text(DECL.format(port=server.port))
    assert rpop("-c", site / "rpop.toml", "apply", site / "decl.toml").returncode == 0

    notify_path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(0.2)
    heard: list[str] = []

    def hear() -> list[str]:
        try:
            while True:
                heard.extend(listener.recv(4096).decode().split("\n"))
        except (TimeoutError, BlockingIOError):
            pass
        return heard

    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000000"}
    daemon = subprocess.Popen([rpop_command(), "-c", site / "rpop.toml", "run"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: "READY=1" in hear())

        def settled():
            try:
                figures = scrape(port)
            except OSError:
                return None
            done = figures.get(("rpop_polls_total", (("result", "ok"),))) == 1 and figures.get(
                ("rpop_polls_total", (("result", "auth-failed"),))) == 1
            return figures if done else None

        figures = wait_for(settled)
        size = sum(len(m.data.replace(b"\r\n", b"\n")) for m in messages)  # as stored: LF line ends
        assert figures[("rpop_messages_retrieved_total", ())] == 3
        assert figures[("rpop_bytes_retrieved_total", ())] == size
        assert figures[("rpop_messages_delivered_total", ())] == 3
        assert figures[("rpop_bytes_delivered_total", ())] == size
        assert figures[("rpop_poll_duration_seconds_count", ())] == 2
        assert figures[("rpop_processors", ())] == 10
        assert figures[("rpop_up", ())] == 1
        wait_for(lambda: scrape(port)[("rpop_records", (("state", "failed"),))] == 1)
        figures = scrape(port)
        assert figures[("rpop_records", (("state", "ok"),))] == 1
        assert figures[("rpop_records", (("state", "disabled"),))] == 1
        assert figures[("rpop_processors_in_use", ())] == 0

        time.sleep(1.2)  # more than one watchdog interval
        lines = hear()
        assert "WATCHDOG=1" in lines
        assert any(line.startswith("STATUS=0 polling") for line in lines), lines
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert "STOPPING=1" in hear()
    listener.close()


def test_log_lines_carry_no_time_stamp_when_stderr_is_the_journal(site, rpop, tmp_path):
    (site / "decl.toml").write_text(DECL.format(port=free_port()))
    assert rpop("-c", site / "rpop.toml", "apply", site / "decl.toml").returncode == 0
    with open(tmp_path / "journal", "w") as journal:
        st = os.fstat(journal.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run([rpop_command(), "-c", site / "rpop.toml", "poll", "--once", "--record", "1"], env=env,
                       stdout=subprocess.DEVNULL, stderr=journal, timeout=60)
    lines = (tmp_path / "journal").read_text().splitlines()
    assert lines and all(line.startswith("RPOP ") for line in lines), lines
    plain = rpop("-c", site / "rpop.toml", "poll", "--once", "--record", "1")
    assert plain.stderr[:4].isdigit()  # elsewhere the time comes first
