"""A broken or hostile server cannot hurt rpop: answers out of step with the
commands, listings that do not add up, refused messages, absurd counts,
endless answers and answers dripped a byte at a time.

Each test: given the project's scriptable POP3 server misbehaving so, when
we poll, then the poll fails with the code that says what happened, nothing
after the fault is delivered, and the mail stays on the server.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest

from rpopcore import errors
from rpopcore.pop3.client import ConnectOptions, Pop3Client
from rpopcore.testing.scriptable_server import Faults, Message
from rpopcore.testing.sites import delivered, open_site, remote
from rpopcore.testing.sites import poll_one as poll

NO_PIPELINING = ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE"]


def msg(uid: str) -> Message:
    return Message(uid, f"From: sender@isp.test\r\nSubject: message {uid}\r\n\r\nbody of {uid}\r\n".encode())


def subjects(folder) -> list[str]:
    return sorted(m.split(b"Subject: ")[1].split(b"\n")[0].decode() for m in delivered(folder))


async def stored_error(site) -> tuple[str | None, str]:
    (record,) = await site.store.list_records()
    status = await site.store.load_status(record.id)
    return status.error, status.detail


# --- answers out of step with the commands ---------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
@pytest.mark.parametrize(
    "after, stray",
    [("RETR 1", b"+OK stray\r\n"), ("RETR 1", b"-ERR stray\r\n"), ("RETR 1", b"stray\r\n"), ("UIDL", b"+OK\r\n")],
    ids=["ok-line-after-retr", "err-line-after-retr", "garbage-after-retr", "ok-line-after-uidl"],
)
async def test_bytes_after_an_answer_fail_the_poll_before_anything_after_them_is_delivered(
    pop3_server, tmp_path, pipelining, after, stray
):
    server = await pop3_server([msg("a"), msg("b"), msg("c")], faults=Faults(extra_after=(after, stray)),
                               capabilities=None if pipelining else NO_PIPELINING)
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    result = await poll(site)
    assert result.error == "protocol-error", result
    # Nothing after the stray bytes was used, nor message 1 before them:
    # they may be the rest of it (a line "." the server did not stuff).
    assert subjects(tmp_path) == []
    assert not any(b"+OK" in m or b"stray" in m for m in delivered(tmp_path))
    assert server.uids() == ["a", "b", "c"], "no QUIT: nothing was deleted"
    assert (await stored_error(site))[0] == "protocol-error"
    await site.close()


async def test_the_detail_says_the_answers_are_out_of_step(pop3_server, tmp_path):
    server = await pop3_server([msg("a"), msg("b")], faults=Faults(extra_after=("RETR 1", b"+OK stray\r\n")))
    site = await open_site(tmp_path, remote(server.host, server.port))
    result = await poll(site)
    # Pipelined, RETR 1 is followed by UIDL 1, whose answer proves RETR 1's.
    assert "UIDL 1" in result.detail and "out of step" in result.detail
    await site.close()


WHOLE_ANSWER_OF_A = b"+OK 60 octets\r\nFrom: sender@isp.test\r\nSubject: message a\r\n\r\nbody of a\r\n.\r\n"


@pytest.mark.parametrize("leave", [True, False], ids=["leave", "delete"])
@pytest.mark.parametrize(
    "shape",
    ["answer-sent-twice", "early-end", "never-ends"],
)
async def test_an_answer_out_of_step_under_pipelining_delivers_nothing_under_the_wrong_uid(
    pop3_server, tmp_path, shape, leave
):
    # Given a pipelining server whose answer to RETR 1 is followed by the
    # whole of it again, or ends early at a line "." it did not stuff (the
    # rest looking like an answer), or never ends -- each moves every later
    # answer by one, so message 2's answer would be read for message 3,
    a = msg("a")
    faults = Faults()
    if shape == "answer-sent-twice":
        faults = Faults(extra_after=("RETR 1", WHOLE_ANSWER_OF_A))
    elif shape == "early-end":
        a = Message("a", a.data, wire=a.data.replace(b"\r\n\r\n", b"\r\n.\r\n+OK 9 octets\r\n\r\n", 1))
    else:  # a "." before the terminator makes it a stuffed line: the answer goes on
        a = Message("a", a.data, wire=a.data + b".")
    server = await pop3_server([a, msg("b"), msg("c")], faults=faults)
    site = await open_site(tmp_path, remote(server.host, server.port, leave=leave))
    # when we poll,
    result = await poll(site)
    # then the poll fails as protocol-error before delivering anything --
    # message 1 too, since what came after it may be the rest of it -- no
    # UID is remembered and nothing leaves the server,
    assert result.error == "protocol-error", result
    assert "out of step" in result.detail, result.detail
    assert delivered(tmp_path) == []
    assert server.uids() == ["a", "b", "c"]
    await site.close()


async def test_after_an_answer_sent_twice_the_next_poll_of_an_honest_server_delivers_each_message_once(
    pop3_server, tmp_path
):
    # Given a server that answered RETR 1 twice in one session,
    server = await pop3_server([msg("a"), msg("b"), msg("c")],
                               faults=Faults(extra_after=("RETR 1", WHOLE_ANSWER_OF_A)))
    site = await open_site(tmp_path, remote(server.host, server.port, leave=True))
    assert (await poll(site)).error == "protocol-error"
    # when it behaves and we poll again,
    server.faults.extra_after = None
    result = await poll(site)
    # then every message arrives once: none was remembered under another's UID.
    assert result.error is None, result
    assert subjects(tmp_path) == ["message a", "message b", "message c"]
    await site.close()


# --- listings are checked against STAT ------------------------------------


@pytest.mark.parametrize(
    "listing, detail",
    [
        (["1 a", "3 b"], "UIDL lists message 3, but STAT counts 2 messages"),
        (["1 a"], "UIDL leaves out message 2 of the 2 STAT counts (1 listed)"),
        (["1 a", "2 b", "2 c"], "duplicate entry in UIDL listing"),
    ],
    ids=["beyond-stat", "left-out", "duplicate"],
)
async def test_a_listing_that_does_not_add_up_fails_the_poll_and_touches_nothing(pop3_server, tmp_path, listing, detail):
    server = await pop3_server([msg("a"), msg("b")], faults=Faults(uidl_override=listing))
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    result = await poll(site)
    assert (result.error, result.retrieved) == ("protocol-error", 0)
    assert detail in result.detail
    assert await stored_error(site) == ("protocol-error", result.detail)
    assert not any(c.startswith("RETR") for s in server.sessions for c in s.commands)
    assert server.uids() == ["a", "b"]
    await site.close()


# --- a refused RETR is a failed poll ----------------------------------------


async def test_a_server_that_refuses_every_retr_fails_the_poll_and_keeps_the_mail(pop3_server, tmp_path):
    faults = Faults(retr_errors={1: "[SYS/TEMP] cannot read", 2: "[SYS/TEMP] cannot read"})
    server = await pop3_server([msg("a"), msg("b")], faults=faults)
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    result = await poll(site)
    assert (result.error, result.delivered) == ("server-refused", 0)
    assert "refused to hand over 2 of the messages" in result.detail and "RETR 1: -ERR [SYS/TEMP]" in result.detail
    error, _ = await stored_error(site)
    assert error == "server-refused"
    (row,) = await site.status()
    assert row["last"] == "server-refused"
    assert server.uids() == ["a", "b"]
    await site.close()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
async def test_a_refused_message_stays_and_the_others_arrive(pop3_server, tmp_path, pipelining):
    server = await pop3_server([msg("a"), msg("b"), msg("c"), msg("d")], faults=Faults(retr_errors={2: "unreadable"}),
                               capabilities=None if pipelining else NO_PIPELINING)
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    result = await poll(site)
    assert (result.error, result.delivered) == ("server-refused", 3)
    assert subjects(tmp_path) == ["message a", "message c", "message d"]
    assert server.uids() == ["b"]
    # The server can read it again: the next poll brings it and succeeds.
    server.faults.retr_errors.clear()
    second = await poll(site)
    assert (second.error, second.delivered) == (None, 1)
    assert subjects(tmp_path) == ["message a", "message b", "message c", "message d"]
    assert server.uids() == []
    await site.close()


# --- bounded by us, not by the server ---------------------------------------


@pytest.mark.parametrize("uidl", [True, False], ids=["with-uidl", "without-uidl"])
async def test_an_absurd_message_count_is_refused_before_anything_is_allocated(pop3_server, tmp_path, uidl):
    server = await pop3_server([msg("a")], uidl=uidl, faults=Faults(stat_override="10000000 1"))
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    tracemalloc.start()
    try:
        result = await asyncio.wait_for(poll(site), 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error == "protocol-error"
    assert "STAT counts 10000000 messages; rpop takes at most 1000000" in result.detail
    assert peak < 16 << 20, f"{peak / 2**20:.1f} MiB"
    assert server.uids() == ["a"]
    await site.close()


async def test_an_endless_capa_is_cut_off(pop3_server, tmp_path):
    capabilities = ["UIDL", "USER"] + ["X-PADDING " + "x" * 1000] * 100
    server = await pop3_server([msg("a")], capabilities=capabilities)
    site = await open_site(tmp_path, remote(server.host, server.port))
    result = await poll(site)
    assert result.error == "protocol-error"
    assert "the answer to CAPA is longer than 65536 bytes" in result.detail
    await site.close()


async def test_a_listing_longer_than_stat_allows_is_cut_off(pop3_server, tmp_path):
    listing = [f"{n} uid-{n}" for n in range(1, 10_001)]
    server = await pop3_server([msg("a"), msg("b")], faults=Faults(uidl_override=listing))
    site = await open_site(tmp_path, remote(server.host, server.port))
    result = await poll(site)
    assert result.error == "protocol-error"
    assert "the answer to UIDL is longer than 384 bytes" in result.detail
    await site.close()


@pytest.mark.parametrize("step", ["GREETING", "CAPA", "UIDL", "RETR"])
async def test_a_server_dripping_a_byte_at_a_time_ends_in_timeout(pop3_server, tmp_path, step):
    # A byte every 0.3 s never trips the 1 s idle timeout; the minimum rate does.
    server = await pop3_server([msg("a")], faults=Faults(drip=(step, 0.3)))
    site = await open_site(tmp_path, remote(server.host, server.port, timeout="1s", leave=False))
    started = time.monotonic()
    result = await asyncio.wait_for(poll(site), 10)
    took = time.monotonic() - started
    assert result.error == "timeout"
    assert "slower than 1024 bytes/s" in result.detail
    assert took < 4, f"{took:.1f}s"
    assert delivered(tmp_path) == [] and server.uids() == ["a"]
    await site.close()


async def test_a_listing_of_100000_messages_is_read_whole_and_checked(pop3_server):
    # (How long it takes is measured by python3 -m bench.listing; the
    # figure is in docs/performance.md.)
    count = 100_000
    listing = [f"{n} {n:08x}-0123456789abcdef0123456789abcdef" for n in range(1, count + 1)]
    server = await pop3_server([], faults=Faults(uidl_override=listing, stat_override=f"{count} {count * 4000}"))
    client = Pop3Client(ConnectOptions(server.host, server.port))
    await client.connect()
    await client.capa()
    await client.user_pass("user", "pass")
    got, uids = await client.stat_and_uidl()
    await client.close()
    assert got == count and len(uids) == count
    assert uids[1] == listing[0].split()[1] and uids[count] == listing[-1].split()[1]


async def test_a_list_listing_is_checked_against_stat_too(pop3_server):
    server = await pop3_server([msg("a"), msg("b")], faults=Faults(list_override=["1 100", "7 200"]))
    client = Pop3Client(ConnectOptions(server.host, server.port))
    await client.connect()
    await client.capa()
    await client.user_pass("user", "pass")
    with pytest.raises(errors.ProtocolError, match="LIST lists message 7, but STAT counts 2 messages"):
        await client.stat_and_list()
    await client.close()
