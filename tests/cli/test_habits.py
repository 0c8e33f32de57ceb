"""The command line as users of fetchmail and mpop expect it: a check that
retrieves nothing (``fetchmail -c``), verbosity for one run, records
picked by name, ``-c`` anywhere, tables that fit their contents."""

from __future__ import annotations

from rpopcore.testing.scriptable_server import Message
from tests.cli.conftest import json_out

DECL = """
[rpop]
allow_self_poll = true

[[domain]]
name = "example.test"
accounts = ["alice", "bob"]

[[remote]]
owner = "alice@example.test"
account = "alice.smith"
host = "127.0.0.1:{port}"
password = "{password}"

[[remote]]
owner = "bob@example.test"
account = "a-rather-long-account-name-for-bob"
host = "127.0.0.1:{port}"
password = "{password}"
poll_every = "disabled"
"""


def message(uid: str, size: int = 0) -> Message:
    return Message(uid=uid, data=f"Subject: {uid}\r\n\r\n{'x' * size}\r\n".encode())


def setup(site, rpop, port, password="pw"):
    decl = site / "decl.toml"
    decl.write_text(DECL.format(port=port, password=password))
    assert rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0
    return site / "rpop.toml"


def delivered(site) -> int:
    folder = site / "mail" / "example.test" / "alice" / "new"
    return len(list(folder.iterdir())) if folder.exists() else 0


def test_check_reports_new_mail_and_changes_nothing(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a", 100), message("b", 200), message("c")], user="alice.smith", password="pw")
    config = setup(site, rpop, server.port)

    checked = rpop("-c", config, "poll", "--check", "--record", "alice@example.test", "--json")
    assert checked.returncode == 0, checked.stderr  # new mail
    (row,) = json_out(checked)
    sizes = sum(len(m.data) for m in server.mailbox)
    assert (row["messages"], row["new"], row["new_bytes"], row["error"]) == (3, 3, sizes, None)
    assert delivered(site) == 0 and len(server.mailbox) == 3  # nothing retrieved, nothing deleted
    assert json_out(rpop("-c", config, "status", "--json"))[0]["last"] is None  # not a poll

    assert json_out(rpop("-c", config, "poll", "--once", "--json"))[0]["retrieved"] == 3
    again = rpop("-c", config, "poll", "--check", "--record", "alice@example.test")
    assert again.returncode == 1, again.stderr  # nothing new
    header, line = again.stdout.splitlines()
    assert header.split() == ["ID", "MAILBOX", "MESSAGES", "NEW", "NEW", "SIZE", "ERROR"]
    assert line.split() == ["1", "alice.smith@127.0.0.1", "3", "0", "0", "B"]


def test_check_with_a_refused_login_is_exit_2(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="right")
    config = setup(site, rpop, server.port, password="wrong")
    result = rpop("-c", config, "poll", "--check", "--record", "1", "--json")
    assert result.returncode == 2
    assert json_out(result)[0]["error"] == "auth-failed"


def test_records_by_owner_or_mailbox_and_a_name_that_matches_none(site, rpop, threaded_pop3):
    server = threaded_pop3([], user="alice.smith", password="pw")
    config = setup(site, rpop, server.port)
    by_mailbox = rpop("-c", config, "poll", "--once", "--json",
                      "--record", f"bob@example.test/a-rather-long-account-name-for-bob@127.0.0.1:{server.port}")
    assert [r["id"] for r in json_out(by_mailbox)] == [2]  # disabled, but named: polled
    unknown = rpop("-c", config, "poll", "--once", "--record", "carol@example.test")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("rpop: --record 'carol@example.test' names no record")


def test_verbose_for_one_run_and_c_after_the_subcommand(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="pw")
    config = setup(site, rpop, server.port)
    loud = rpop("poll", "--once", "-c", config, "-v", "--record", "1")
    assert loud.returncode == 0, loud.stderr
    assert "C: USER alice.smith" in loud.stderr and "C: PASS ****" in loud.stderr
    assert json_out(rpop("settings", "--json", "-c", config))["log_level"]["value"] == "problems"
    quiet = rpop("-c", config, "poll", "--once", "-q", "--json")
    assert quiet.stderr == ""


def test_poll_json_carries_the_detail_and_tables_fit_long_names(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="right")
    config = setup(site, rpop, server.port, password="wrong")
    (row,) = json_out(rpop("-c", config, "poll", "--once", "--json", "--record", "1"))
    assert row["error"] == "auth-failed" and row["detail"]

    lines = rpop("-c", config, "status").stdout.splitlines()
    header = lines[0]
    for line in lines[1:]:  # every column starts where its header does
        for title in ("KIND", "OWNER", "ACCOUNT@HOST", "CERT", "EVERY", "LAST"):
            start = header.index(title)
            assert line[start - 2:start] == "  " and line[start] != " ", (title, line)


def run_on_terminal(argv: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal, as a person at a shell does;
    returns the exit status and what the terminal showed."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # 30 rows, 120 columns
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal is closed once the process is gone
            break
        if not chunk:
            break
        shown += chunk
    process.wait(60)
    os.close(master)
    return process.returncode, shown.decode("utf-8", "replace")


def test_a_first_download_shows_progress_on_a_terminal_and_nowhere_else(site, rpop, threaded_pop3):
    from tests.cli.conftest import rpop_command

    server = threaded_pop3([message(f"m{n}", 2000) for n in range(5)], user="alice.smith", password="pw")
    config = setup(site, rpop, server.port)
    status, shown = run_on_terminal([rpop_command(), "-c", str(config), "poll", "--once", "--record", "1"])
    assert status == 0, shown
    assert "record 1 alice.smith@127.0.0.1: 5/5 messages 100%" in shown
    assert "left]" in shown  # the time left, and the rate before it

    server.mailbox.append(message("later", 10))
    piped = rpop("-c", config, "poll", "--once", "--record", "1")
    assert piped.returncode == 0, piped.stderr
    assert "messages" not in piped.stderr and "%|" not in piped.stderr  # not a terminal: no progress at all
