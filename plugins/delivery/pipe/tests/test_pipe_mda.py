"""Delivery through an MDA command: a small Python MDA that writes its stdin
to a file named after the recipient and exits as told, and the real
``dovecot-lda`` delivering into a Dovecot Maildir."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rpop_delivery_pipe import PipeAgent, make_agent

from rpopcore.api import Envelope, MessageSpool, Outcome, Recipient, RetrievedMessage

DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
MAIL = b"Return-Path: <old@isp.test>\nX-Special: alice\nSubject: piped\n\nline one\n.dot line\n"

# The recipient's local part says what the MDA does.
MDA = textwrap.dedent("""\
    import json, os, signal, sys, time
    outdir, recipient, local = sys.argv[1], sys.argv[2], sys.argv[3]
    if local == "sleepy":
        time.sleep(60)
    if local == "deaf":
        print("deaf: not reading", file=sys.stderr)
        sys.exit(1)
    data = sys.stdin.buffer.read()
    with open(os.path.join(outdir, recipient), "wb") as f:
        f.write(data)
    with open(os.path.join(outdir, recipient + ".argv"), "w") as f:
        json.dump(sys.argv[1:], f)
    with open(os.path.join(outdir, recipient + ".env"), "w") as f:
        json.dump(dict(os.environ), f)
    if local == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    code = {"temp": 75, "perm": 1, "nouser": 67}.get(local, 0)
    print("some noise first", file=sys.stderr)
    print(f"mda: {local} ends with {code}", file=sys.stderr)
    sys.exit(code)
""")


@pytest.fixture
def mda(tmp_path) -> tuple[Path, Path]:
    """(the MDA script, the folder it writes to)."""
    script = tmp_path / "mda.py"
    script.write_text(MDA)
    out = tmp_path / "out"
    out.mkdir()
    return script, out


def agent_for(mda, *extra: str, timeout: str = "30s") -> PipeAgent:
    script, out = mda
    command = [sys.executable, str(script), str(out), "{recipient}", "{localpart}", *extra]
    return make_agent({"command": command, "timeout": timeout}, script.parent)


def retrieved(data: bytes = MAIL) -> RetrievedMessage:
    spool = MessageSpool()
    spool.write(data)
    spool.finish()
    return RetrievedMessage("uid1", 1, spool)


def envelope(sender: str, *addresses: str) -> Envelope:
    return Envelope(sender=sender, recipients=tuple(Recipient(a, report_failure=True, original=a) for a in addresses),
                    remove_fields={"x-special"})


async def deliver(agent, env: Envelope, data: bytes = MAIL):
    message = retrieved(data)
    try:
        return await agent.deliver(message, env, env.recipients)
    finally:
        message.close()
        await agent.close()


async def test_each_recipient_gets_its_own_run_and_its_own_outcome(mda):
    _, out = mda
    env = envelope("carol@isp.test", "alice@example.test", "temp@example.test", "perm@example.test")

    alice, temp, perm = await deliver(agent_for(mda), env)

    assert (alice.outcome, temp.outcome, perm.outcome) == (Outcome.DELIVERED, Outcome.TEMPORARY, Outcome.PERMANENT)
    assert temp.detail.endswith("exited with status 75 (EX_TEMPFAIL): mda: temp ends with 75")
    assert perm.detail.endswith("exited with status 1: mda: perm ends with 1")
    for address in ("alice@example.test", "temp@example.test", "perm@example.test"):
        assert (out / address).read_bytes() == (
            f"Return-Path: <carol@isp.test>\nDelivered-To: {address}\n".encode()
            + b"Subject: piped\n\nline one\n.dot line\n")


async def test_placeholders_fill_whole_arguments_never_a_shell(mda):
    _, out = mda
    sender = "we ird;$(touch pwned)'{recipient}\"@isp.test"
    env = envelope(sender, "alice@example.test")

    [result] = await deliver(agent_for(mda, "-f", "{sender}", "--to={localpart}+x@{domain}"), env)

    assert result.outcome is Outcome.DELIVERED
    argv = json.loads((out / "alice@example.test.argv").read_text())
    assert argv == [str(out), "alice@example.test", "alice", "-f", sender, "--to=alice+x@example.test"]
    assert not (Path.cwd() / "pwned").exists() and not (out / "pwned").exists()


async def test_the_command_sees_the_envelope_in_its_environment_and_no_secrets(mda, monkeypatch):
    _, out = mda
    monkeypatch.setenv("POP_PASSWORD", "hunter2")  # as a record's secret = "env:POP_PASSWORD" would be
    env = Envelope(sender="carol@isp.test", recipients=(Recipient("alice@example.test", original="Al@Example.TEST"),))

    [result] = await deliver(agent_for(mda), env)

    assert result.outcome is Outcome.DELIVERED
    seen = json.loads((out / "alice@example.test.env").read_text())
    assert "POP_PASSWORD" not in seen and seen["PATH"] == os.environ["PATH"]
    assert {k: seen[k] for k in ("SENDER", "RECIPIENT", "ORIGINAL_RECIPIENT", "LOCAL", "DOMAIN")} == {
        "SENDER": "carol@isp.test", "RECIPIENT": "alice@example.test", "ORIGINAL_RECIPIENT": "Al@Example.TEST",
        "LOCAL": "alice", "DOMAIN": "example.test"}


async def test_the_null_sender_is_an_empty_argument(mda):
    _, out = mda

    [result] = await deliver(agent_for(mda, "{sender}"), envelope("", "alice@example.test"))

    assert result.outcome is Outcome.DELIVERED
    assert json.loads((out / "alice@example.test.argv").read_text())[-1] == ""
    assert (out / "alice@example.test").read_bytes().startswith(b"Return-Path: <>\nDelivered-To: alice@example.test\n")


async def test_a_command_that_hangs_is_killed_and_temporary(mda):
    agent = agent_for(mda)
    agent.timeout = 0.5  # (the site file's smallest is 1s)
    started = time.monotonic()

    [result] = await deliver(agent, envelope("s@isp.test", "sleepy@example.test"))

    assert result.outcome is Outcome.TEMPORARY
    assert "killed after running for 0.5s" in result.detail
    assert time.monotonic() - started < 5


async def test_a_command_that_does_not_read_its_input_is_judged_by_its_status(mda):
    big = b"Subject: big\n\n" + b"x" * 999 + b"\n" * 5000 * 4  # far more than a pipe buffer

    [result] = await deliver(agent_for(mda), envelope("s@isp.test", "deaf@example.test"), big)

    assert result.outcome is Outcome.PERMANENT
    assert result.detail.endswith("exited with status 1: deaf: not reading")


async def test_a_command_killed_by_a_signal_is_temporary(mda):
    [result] = await deliver(agent_for(mda), envelope("s@isp.test", "crash@example.test"))

    assert result.outcome is Outcome.TEMPORARY
    assert "killed by SIGKILL" in result.detail


async def test_a_program_removed_after_the_site_opened_is_temporary(tmp_path):
    (tmp_path / "bin").mkdir()
    program = tmp_path / "bin" / "mda"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    agent = make_agent({"command": ["bin/mda", "{recipient}"]}, tmp_path)  # relative: to the site folder
    assert agent.command[0] == str(program)
    program.unlink()

    [result] = await deliver(agent, envelope("s@isp.test", "alice@example.test"))

    assert result.outcome is Outcome.TEMPORARY
    assert "cannot run" in result.detail


async def test_dovecot_lda_delivers_into_the_maildir(dovecot_factory):
    # Not skipped without Dovecot: make_agent and dovecot_factory fail loudly.
    dovecot = dovecot_factory(users={"alice": "a"}, tls=False)
    agent = make_agent({"command": [DOVECOT_LDA, "-c", str(dovecot.conf_path), "-f", "{sender}", "-d", "{recipient}"]},
                       Path("/srv/rpop"))
    env = envelope("carol@isp.test", "alice@example.test", "nobody@example.test")

    alice, nobody = await deliver(agent, env)

    assert alice.outcome is Outcome.DELIVERED, alice.detail
    assert nobody.outcome is Outcome.PERMANENT  # EX_NOUSER
    assert "exited with status 67" in nobody.detail
    [stored] = dovecot.messages("alice")
    assert stored.startswith(b"Return-Path: <carol@isp.test>\nDelivered-To: alice@example.test\n")
    assert stored.endswith(b"Subject: piped\n\nline one\n.dot line\n")
    assert b"old@isp.test" not in stored and b"X-Special" not in stored
    assert os.path.basename(agent.command[0]) == "dovecot-lda"
