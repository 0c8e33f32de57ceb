"""Several rpop processes on one site at once: a running daemon and two
``rpop poll --once`` started together, again and again, against one real
Dovecot mailbox that keeps receiving mail.  One record is polled by one
process at a time; the others say ``record-busy`` and exit 1, as
docs/configuration.md documents.
"""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cli.conftest import json_out, rpop_command
from tests.faults.test_disk_full import apply, arrived, dovecot_site, letter, poll, post

ROUNDS = 6
#: Rounds go on past ROUNDS until the daemon has polled too (its plan may
#: have met the racing polls holding the record each time so far).
MAX_ROUNDS = 40
LETTERS_PER_ROUND = 20


@pytest.mark.parametrize("leave", [False, True], ids=["leave-false", "leave-true"])
def test_two_polls_and_a_daemon_at_once_deliver_every_letter_exactly_once(dovecot_factory, tmp_path, leave):
    # Given a site whose daemon polls alice's mailbox every second,
    dovecot = dovecot_factory(tls=False)
    site_file = dovecot_site(tmp_path / "site", dovecot, leave=leave, poll_every="1s")
    apply(site_file)
    letters: dict[int, bytes] = {}
    polls = []
    daemon_err = tmp_path / "daemon.err"
    with open(daemon_err, "wb") as err:
        daemon = subprocess.Popen([rpop_command(), "-c", site_file, "run"], stdout=subprocess.DEVNULL, stderr=err)

    def daemon_took_part() -> bool:
        text = daemon_err.read_text()
        return "[record 1] poll done" in text or "[record 1] not polled" in text

    try:
        # when, round after round, new mail arrives and two polls start at the same moment,
        with ThreadPoolExecutor(2) as racers:
            for round_ in range(MAX_ROUNDS):
                if round_ >= ROUNDS and daemon_took_part():
                    break
                batch = {n: letter(n) for n in range(100 * round_, 100 * round_ + LETTERS_PER_ROUND)}
                post(dovecot, batch)
                letters.update(batch)
                polls += racers.map(lambda _: poll(site_file, "--json"), range(2))
                time.sleep(round_ * 0.37 % 1.2)  # meet the daemon at other moments of its cycle
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, daemon_err.read_text()
        daemon_log = daemon_err.read_text()
    # and a last poll collects whatever was still on its way,
    last = poll(site_file, "--json")
    assert last.returncode == 0, last.stdout + last.stderr

    # then each poll either polled (exit 0) or was told the record is busy (exit 1), cleanly;
    busy = 0
    for result in polls:
        output = result.stdout + result.stderr
        (outcome,) = json_out(result)
        assert outcome["error"] in (None, "record-busy"), output
        assert result.returncode == (0 if outcome["error"] is None else 1), output
        assert "Traceback" not in output, output
        busy += outcome["error"] == "record-busy"
    assert busy, "the racing polls never met: the test proved nothing"
    assert "[record 1] poll done" in daemon_log or "[record 1] not polled" in daemon_log, "the daemon never took part"
    # nobody waited on a locked database,
    for text in [daemon_log, last.stdout + last.stderr, *(r.stdout + r.stderr for r in polls)]:
        assert "database is locked" not in text and "Traceback" not in text, text
    # and every letter arrived exactly once, none lost.
    assert arrived(tmp_path / "site", letters) == sorted(letters)
    assert dovecot.count("alice") == (len(letters) if leave else 0)
