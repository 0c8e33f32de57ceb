"""The connection cut after any byte of a whole session, either way: no
message lost, none duplicated, none left on the server, and every broken
``rpop poll --once`` ends in one known error code without a traceback.

These run the engine of ``python3 -m bench.faults cut`` (bench/faults/cut.py)
against a real Dovecot, behind a proxy that closes both connections after N
bytes: every other byte rpop sends, and every 53rd byte Dovecot sends (about
50 s in all on 2 cores); the long run cuts after every byte both ways, in both
leave modes, and its figures are in docs/reliability.md.
"""

from __future__ import annotations

import json

import attrs
import pytest

from bench.faults import cut

#: Every other byte rpop sends (a session holds about 90), every 53rd of
#: the about 650 Dovecot sends (the long run takes every byte: here the
#: suite's time is the limit).
STRIDES = {"to-server": 2, "to-client": 53}


@pytest.fixture
def mailbox(dovecot_factory):
    """Dovecot holding the lanes' remote mailboxes."""
    return dovecot_factory(users=cut.USERS, tls=False)


@pytest.mark.parametrize("direction", list(STRIDES))
def test_a_session_cut_after_any_byte_loses_nothing_duplicates_nothing_and_says_why(mailbox, tmp_path, direction):
    # Given a site polling two short messages through a proxy that cuts
    # the session after N bytes one way, for each N from 0 to its end,
    (result,) = cut.run_mode(mailbox, tmp_path / "sites", leave=False, strides={direction: STRIDES[direction]},
                             lanes=2)
    # when each cut poll is followed by an unbroken one, then every message
    # arrived once and left the server, and each cut poll said why it failed.
    assert result.trials >= result.session_bytes // STRIDES[direction]
    assert not cut.problems(result), "\n".join(cut.problems(result)) + "\n" + json.dumps(attrs.asdict(result), indent=1)
    assert set(result.errors) <= {"protocol-error", "timeout"}, result.errors
