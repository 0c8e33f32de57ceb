"""No secret anywhere, whichever line of a session the server fails at.

For every way rpop sends a secret -- USER/PASS, APOP, SASL PLAIN with the
credentials on the AUTH line and, with a 222-character password, on a line
of their own, CRAM-MD5, XOAUTH2 and OAUTHBEARER with 5,000-character
tokens from the tests' OAuth 2.0 provider -- the scriptable server drops
the connection, then stalls, at each line rpop sends.  After each cut the
password or token, plain or in base64 at any alignment, and every
secret-bearing line rpop sent (as sent, in either case, and decoded: the
CRAM-MD5 user and digest, the APOP digest, SASL payloads) appear nowhere:
not in what ``rpop poll --once`` printed (``--json`` and text), not in
``rpop status --json``, not in the log file at ``log_level = "all"``, the
state database, the bounce spool or any other file of the site.

This runs the engine of ``python3 -m bench.faults secrets``
(bench/faults/secrets.py), every way at once: about 45 s on 2 cores.
"""

from __future__ import annotations

import json

import attrs

from bench.faults import secrets


async def test_no_secret_in_any_output_or_file_whichever_line_the_server_fails_at(tmp_path):
    results = await secrets.run(tmp_path)
    found = {r.way: secrets.problems(r) for r in results if secrets.problems(r)}
    assert not found, json.dumps([attrs.asdict(r) for r in results if r.way in found], indent=1)
    for result in results:
        # Every line was cut both ways, and the cut ended the poll in the code that says so.
        assert result.cuts == 2 * result.lines >= 12, result
        assert set(result.errors) == {"protocol-error", "timeout"}, result
    # The bounce spool was searched with something in it: polls got as far as RETR.
    assert all(any((tmp_path / r.way / "bounces").iterdir()) for r in results)
