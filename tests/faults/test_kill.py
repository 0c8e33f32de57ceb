"""kill -9 at any instant of ``rpop poll --once``: no message lost, none
duplicated in a Maildir, at most one duplicate per kill over LMTP, and a
killed poll never makes the next one answer ``record-busy``.

These run the engine of ``python3 -m bench.faults kill`` (bench/faults/kill.py)
with small counts against a real Dovecot; the long run, its method and its
results are in docs/reliability.md.
"""

from __future__ import annotations

import json
import random

import attrs
import pytest

from bench.faults import kill

SEED = 1
MESSAGES = 300


@pytest.fixture
def mailbox(dovecot_factory):
    """Dovecot holding the remote mailbox, with LMTP into the local account's."""
    return dovecot_factory(users=kill.USERS, tls=False, lmtp=True)


@pytest.mark.parametrize("target, leave, kills", [
    pytest.param("maildir", False, 12, id="maildir-leave-false"),
    pytest.param("maildir", True, 12, id="maildir-leave-true"),
    pytest.param("lmtp", False, 10, id="lmtp-leave-false"),
    pytest.param("lmtp", True, 10, id="lmtp-leave-true"),
])
def test_polls_killed_at_random_instants_lose_nothing_and_duplicate_nothing(mailbox, tmp_path, target, leave, kills):
    result = kill.run_mode(mailbox, tmp_path / "site", target, leave, points=kills, messages=MESSAGES, seed=SEED)
    problems = kill.problems(result)
    assert not problems, "\n".join(problems) + "\n" + json.dumps(attrs.asdict(result), indent=1)


def test_a_poll_killed_mid_retrieval_does_not_hold_up_the_next_one(mailbox, tmp_path):
    # Given a site whose mailbox holds 600 messages,
    site = kill.KillSite(tmp_path / "site", mailbox, "maildir", leave=False)
    expected = site.fill(1, 600, random.Random(SEED))
    # when a poll is killed once 20 of them have been delivered,
    cut = site.poll(kill_when=lambda log: log.count(" delivered to ") >= 20)
    assert cut.killed and cut.phase in ("retr", "delivered", "dele"), (cut, site.log_text()[-2000:])
    # then a poll started at once runs (no record-busy) and succeeds,
    resumed = site.poll()
    assert (resumed.returncode, resumed.error, resumed.busy) == (0, None, False), (resumed, site.log_text()[-2000:])
    # and every message has arrived exactly once and left the server.
    delivered = site.delivered()
    assert sorted(expected - delivered.keys()) == [], "lost"
    assert sorted(marker for marker, copies in delivered.items() if copies > 1) == [], "duplicated"
    assert site.on_server() == {}
