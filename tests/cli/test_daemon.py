"""``rpop run`` as a service: changes without restart, a clean stop that
loses nothing, failed hosts delaying their records."""

from __future__ import annotations

import signal
import subprocess
import time

from rpopcore.testing.scriptable_server import Faults, Message
from tests.cli.conftest import json_out, rpop_command
from tests.cli.test_cli import DECL, write_decl


def wait_for(predicate, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def start_daemon(site):
    return subprocess.Popen([rpop_command(), "-c", site / "rpop.toml", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop_daemon(daemon, seconds=60):
    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=seconds)
    assert daemon.returncode == 0, err
    return err.decode()


def new_mail(site, user="alice"):
    folder = site / "mail" / "example.test" / user / "new"
    return sorted(folder.glob("*")) if folder.exists() else []


def test_sigterm_mid_retrieval_finishes_the_message_in_hand_and_loses_nothing(site, rpop, threaded_pop3):
    messages = [Message(f"m{i}", f"Subject: m{i}\r\n\r\n{'x' * 2000}\r\n".encode()) for i in range(40)]
    server = threaded_pop3(messages, user="alice.smith", password="pw", faults=Faults(response_delay=0.1))
    decl = write_decl(site, server.port)
    decl.write_text(decl.read_text().replace("leave = true", "leave = false"))
    rpop("-c", site / "rpop.toml", "apply", decl)
    daemon = start_daemon(site)
    assert wait_for(lambda: len(new_mail(site)) >= 3), "the daemon did not start retrieving"
    stop_daemon(daemon)
    delivered_now = len(new_mail(site))
    assert 3 <= delivered_now < 40
    session = server.sessions[-1]
    assert session.commands[-1] == "QUIT" and session.committed, "the daemon said QUIT so deletions were committed"
    assert len(server.mailbox) == 40 - delivered_now, "exactly the delivered messages left the server"

    server.faults.response_delay = 0
    result = rpop("-c", site / "rpop.toml", "poll", "--once", "--json")
    assert json_out(result)[0]["delivered"] == 40 - delivered_now
    subjects = sorted(p.read_bytes().split(b"Subject: ")[1].split(b"\n")[0] for p in new_mail(site))
    assert subjects == sorted(f"m{i}".encode() for i in range(40)), "each message exactly once"
    assert server.mailbox == []


def test_records_and_log_level_applied_while_running_take_effect_without_a_restart(site, rpop, threaded_pop3):
    alice = threaded_pop3([Message("a", b"Subject: a\r\n\r\nx\r\n")], user="alice.smith", password="pw")
    bob = threaded_pop3([Message("b", b"Subject: b\r\n\r\ny\r\n")], user="bob", password="pw")
    decl = write_decl(site, alice.port)
    rpop("-c", site / "rpop.toml", "apply", decl)
    daemon = start_daemon(site)
    try:
        assert wait_for(lambda: len(new_mail(site, "alice")) == 1)
        # Protocol lines on, and a new record whose poll will show them.
        decl.write_text(decl.read_text().replace("allow_self_poll = true", 'allow_self_poll = true\nlog_level = "low-level"')
                        + f'\n[[remote]]\nowner = "bob@example.test"\naccount = "bob"\n'
                          f'host = "127.0.0.1:{bob.port}"\npassword = "pw"\n')
        assert rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0
        assert wait_for(lambda: len(new_mail(site, "bob")) == 1, 20), "the new record was not polled"
    finally:
        err = stop_daemon(daemon)
    before, said, after = err.partition("[daemon] log level problems -> low-level")
    assert said, err
    assert " C: " not in before, "no protocol lines at the starting level"
    assert " C: USER bob" in after and " C: PASS ****" in after, "protocol lines once the new level is applied"
    assert "PASS pw" not in after


def test_a_failed_host_delays_every_record_on_it_and_status_says_so(site, rpop, unused_tcp_port):
    decl = site / "decl.toml"
    decl.write_text(DECL.format(port=unused_tcp_port, password="pw").replace('poll_every = "10m"', 'poll_every = "1m"')
                    + f'\n[[remote]]\nowner = "bob@example.test"\naccount = "bob"\nhost = "127.0.0.1:{unused_tcp_port}"\n'
                    'password = "pw"\npoll_every = "1m"\n')
    rpop("-c", site / "rpop.toml", "apply", decl)
    # Record 1 fails to connect now; record 2 is then due by its own schedule.
    assert json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--record", "1", "--json"))[0]["error"] == "connect-failed"
    daemon = start_daemon(site)
    try:
        def second_delayed():
            rows = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
            return rows[1]["error"] == "host-delayed"
        assert wait_for(second_delayed, 30)
    finally:
        stop_daemon(daemon)
    rows = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
    assert rows[1]["last"] == "host-delayed"
    assert rows[1]["delayed"]["reason"] == "host-delayed"
    assert rows[0]["delayed"]["reason"] == "host-delayed"


def test_poll_once_record_polls_a_disabled_record(site, rpop, threaded_pop3):
    server = threaded_pop3([Message("a", b"Subject: a\r\n\r\nx\r\n")], user="alice.smith", password="pw")
    decl = write_decl(site, server.port)
    decl.write_text(decl.read_text().replace('poll_every = "10m"', 'poll_every = "disabled"'))
    rpop("-c", site / "rpop.toml", "apply", decl)
    assert json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--json")) == []
    result = json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--record", "1", "--json"))
    assert result == [{"id": 1, "retrieved": 1, "delivered": 1, "error": None, "detail": ""}]
    assert rpop("-c", site / "rpop.toml", "poll", "--once", "--record", "7").returncode == 2


def test_settings_shows_values_and_defaults(site, rpop):
    decl = write_decl(site, 1110)
    decl.write_text(decl.read_text().replace("allow_self_poll = true", 'allow_self_poll = true\nprocessors = 4\ndelay_failed_hosts = "1h"'))
    rpop("-c", site / "rpop.toml", "apply", decl)
    settings = json_out(rpop("-c", site / "rpop.toml", "settings", "--json"))
    assert settings["processors"] == {"value": 4, "default": 10}
    assert settings["delay_failed_hosts"] == {"value": 3600, "default": 600}
    assert settings["allow_self_poll"] == {"value": True, "default": False}
    text = rpop("-c", site / "rpop.toml", "settings").stdout
    assert "delay_failed_hosts" in text and "1h" in text and "(default 10m)" in text
