"""Per-user retrieval against the project's scriptable POP3 server: the
faults and quirks a real server will not produce on demand.

Each test: given a server holding these messages and this record, when we
poll, then this arrived in the Maildir and that stayed on the server.
"""

from __future__ import annotations

import logging
import tracemalloc

import pytest

from rpopcore.testing.scriptable_server import Faults, Message
from rpopcore.testing.sites import delivered, open_site, remote
from rpopcore.testing.sites import poll_one as poll


def msg(uid: str, body: str = "hello\r\n", *, return_path: str | None = "<sender@isp.test>", extra: str = "") -> Message:
    head = f"Return-Path: {return_path}\r\n" if return_path is not None else ""
    head += f"From: sender@isp.test\r\nTo: alice@isp.test\r\nSubject: message {uid}\r\nMessage-ID: <{uid}@isp.test>\r\n{extra}"
    return Message(uid=uid, data=(head + "\r\n" + body).encode())



async def test_leave_on_delivers_each_message_once_and_keeps_them_on_the_server(pop3_server, tmp_path):
    server = await pop3_server([msg("a"), msg("b"), msg("c")])
    site = await open_site(tmp_path, remote(server.host, server.port, leave=True))
    first = await poll(site)
    assert (first.retrieved, first.delivered, first.error) == (3, 3, None)
    second = await poll(site)
    assert (second.retrieved, second.delivered, second.error) == (0, 0, None)
    assert len(delivered(tmp_path)) == 3
    assert server.uids() == ["a", "b", "c"]
    assert not any("DELE" in c for s in server.sessions for c in s.commands)
    await site.close()


async def test_leave_off_deletes_after_delivery(pop3_server, tmp_path):
    server = await pop3_server([msg("a"), msg("b")])
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    result = await poll(site)
    assert (result.retrieved, result.delivered, result.error) == (2, 2, None)
    assert server.uids() == []
    assert len(delivered(tmp_path)) == 2
    await site.close()


async def test_delivered_copy_has_one_return_path_from_the_first_and_delivered_to_the_owner(pop3_server, tmp_path):
    data = (
        b"Return-Path: <first@isp.test>\r\nReceived: from x\r\nReturn-Path: <second@isp.test>\r\n"
        b"Subject: trace\r\n\r\nbody line\r\n"
    )
    server = await pop3_server([Message(uid="t", data=data)])
    site = await open_site(tmp_path, remote(server.host, server.port, owner="al@example.test"))
    await poll(site)
    (copy,) = delivered(tmp_path)
    assert copy == (
        b"Return-Path: <first@isp.test>\nDelivered-To: alice@example.test\n"
        b"Received: from x\nSubject: trace\n\nbody line\n"
    )
    await site.close()


async def test_a_message_without_return_path_gets_the_null_sender(pop3_server, tmp_path):
    server = await pop3_server([msg("n", return_path=None)])
    site = await open_site(tmp_path, remote(server.host, server.port))
    await poll(site)
    (copy,) = delivered(tmp_path)
    assert copy.startswith(b"Return-Path: <>\nDelivered-To: alice@example.test\nFrom: sender@isp.test\n")
    await site.close()


async def test_uids_that_left_the_server_are_forgotten(pop3_server, tmp_path):
    server = await pop3_server([msg("a"), msg("b")])
    site = await open_site(tmp_path, remote(server.host, server.port, leave=True))
    await poll(site)
    (record,) = await site.store.list_records()
    assert await site.store.seen_uids(record.mailbox) == {"a", "b"}
    server.mailbox.pop(0)
    await poll(site)
    assert await site.store.seen_uids(record.mailbox) == {"b"}
    await site.close()


async def test_connection_dropped_in_the_middle_of_retr_loses_nothing_and_duplicates_nothing(pop3_server, tmp_path):
    big = "x" * 70 + "\r\n"
    server = await pop3_server([msg("a"), msg("b", big * 2000), msg("c")], faults=Faults(drop_during_retr=(2, 5000)))
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    first = await poll(site)
    assert first.error == "protocol-error"
    assert first.delivered == 1
    assert server.uids() == ["a", "b", "c"], "no QUIT: the server deleted nothing"
    server.faults.drop_during_retr = None
    second = await poll(site)
    assert (second.retrieved, second.delivered, second.error) == (2, 2, None)
    assert server.uids() == []
    subjects = sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in delivered(tmp_path))
    assert subjects == [b"message a", b"message b", b"message c"]
    await site.close()


async def test_connection_dropped_before_quit_commits_nothing_and_next_poll_deletes_without_redelivering(
    pop3_server, tmp_path
):
    server = await pop3_server([msg("a"), msg("b")], faults=Faults(drop_on_quit=True))
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    first = await poll(site)
    assert first.delivered == 2
    assert first.error == "protocol-error"
    assert server.uids() == ["a", "b"]
    server.faults.drop_on_quit = False
    second = await poll(site)
    assert (second.retrieved, second.error) == (0, None)
    assert server.uids() == []
    assert len(delivered(tmp_path)) == 2
    await site.close()


async def test_mailbox_in_use_is_mailbox_locked(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], faults=Faults(pass_error="[IN-USE] mailbox locked"))
    site = await open_site(tmp_path, remote(server.host, server.port))
    result = await poll(site)
    assert (result.error, result.retrieved) == ("mailbox-locked", 0)
    assert (await site.status())[0]["last"] == "mailbox-locked"
    await site.close()


async def test_login_delay_and_wrong_password(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], faults=Faults(pass_error="[LOGIN-DELAY] wait 15 minutes"))
    site = await open_site(tmp_path, remote(server.host, server.port))
    assert (await poll(site)).error == "login-delay"
    server.faults.pass_error = None
    server.password = "other"
    assert (await poll(site)).error == "auth-failed"
    await site.close()


async def test_without_uidl_leave_on_retrieves_nothing(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], uidl=False)
    site = await open_site(tmp_path, remote(server.host, server.port, leave=True))
    result = await poll(site)
    assert (result.error, result.retrieved) == ("no-uidl", 0)
    assert not any(c.startswith("RETR") for s in server.sessions for c in s.commands)
    assert delivered(tmp_path) == []
    await site.close()


async def test_without_uidl_leave_off_retrieves_and_deletes(pop3_server, tmp_path):
    server = await pop3_server([msg("a"), msg("b")], uidl=False)
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    result = await poll(site)
    assert (result.error, result.delivered) == (None, 2)
    assert server.uids() == []
    await site.close()


async def test_dot_stuffed_lines_arrive_as_written(pop3_server, tmp_path):
    body = ".hidden\r\n..two dots\r\n.\r\n. space\r\nend\r\n"
    server = await pop3_server([msg("d", body)])
    site = await open_site(tmp_path, remote(server.host, server.port))
    await poll(site)
    (copy,) = delivered(tmp_path)
    assert copy.endswith(b"\n\n.hidden\n..two dots\n.\n. space\nend\n")
    await site.close()


async def test_bare_lf_lines_on_the_wire_are_accepted(pop3_server, tmp_path):
    wire = b"Subject: bare\n\nline one\n..stuffed\nlast\n"
    server = await pop3_server([Message(uid="lf", data=b"Subject: bare\r\n\r\nx\r\n", wire=wire)])
    site = await open_site(tmp_path, remote(server.host, server.port))
    assert (await poll(site)).delivered == 1
    (copy,) = delivered(tmp_path)
    assert copy.endswith(b"Subject: bare\n\nline one\n.stuffed\nlast\n")
    await site.close()


async def test_a_line_of_a_megabyte_is_delivered_whole(pop3_server, tmp_path):
    line = "y" * (1 << 20)
    server = await pop3_server([msg("long", "." + line + "\r\nnext\r\n")])
    site = await open_site(tmp_path, remote(server.host, server.port))
    assert (await poll(site)).delivered == 1
    (copy,) = delivered(tmp_path)
    assert copy.endswith(b"\n\n." + line.encode() + b"\nnext\n")
    await site.close()


async def test_a_very_large_message_keeps_memory_flat(pop3_server, tmp_path):
    size = 100 << 20
    line = b"z" * 998 + b"\r\n"
    body = line * (size // len(line))
    server = await pop3_server([Message(uid="huge", data=b"Subject: huge\r\n\r\n" + body)])
    site = await open_site(tmp_path, remote(server.host, server.port))
    del body
    tracemalloc.start()
    try:
        result = await poll(site)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.delivered, result.error) == (1, None)
    # The server's own chunks are counted too; the client must not hold the message.
    assert peak < 24 << 20, f"peak Python allocations {peak / 2**20:.1f} MiB while moving a 100 MiB message"
    (path,) = (tmp_path / "mail" / "example.test" / "alice" / "new").iterdir()
    trace = b"Return-Path: <>\nDelivered-To: alice@example.test\nSubject: huge\n\n"
    assert path.stat().st_size == len(trace) + (size // len(line)) * (len(line) - 1)  # CRLF became LF
    await site.close()


async def test_a_size_differing_from_list_is_not_an_error(pop3_server, tmp_path):
    server = await pop3_server([Message(uid="s", data=b"Subject: s\r\n\r\nbody\r\n", size=5)])
    site = await open_site(tmp_path, remote(server.host, server.port))
    assert (await poll(site)).delivered == 1
    await site.close()


@pytest.mark.parametrize(
    "listing",
    [["1 a", "1 b"], ["1 a", "2 a"], ["one a"], ["1"]],
    ids=["duplicate-number", "duplicate-uid", "not-a-number", "missing-uid"],
)
async def test_a_malformed_uidl_listing_is_a_protocol_error_and_deletes_nothing(pop3_server, tmp_path, listing):
    server = await pop3_server([msg("a"), msg("b")], faults=Faults(uidl_override=listing))
    site = await open_site(tmp_path, remote(server.host, server.port, leave=False))
    result = await poll(site)
    assert (result.error, result.retrieved) == ("protocol-error", 0)
    assert server.uids() == ["a", "b"]
    await site.close()


async def test_a_status_line_over_the_limit_is_a_protocol_error(pop3_server, tmp_path):
    server = await pop3_server([msg("a")])
    site = await open_site(tmp_path, remote(server.host, server.port), "allow_self_poll = true\nmax_status_line = 16\n")
    assert (await poll(site)).error == "protocol-error"
    await site.close()


async def test_a_server_that_stops_answering_times_out(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], faults=Faults(hang_on="RETR"))
    site = await open_site(tmp_path, remote(server.host, server.port, timeout="1s", leave=False))
    result = await poll(site)
    assert (result.error, result.delivered) == ("timeout", 0)
    assert server.uids() == ["a"]
    await site.close()


async def test_a_closed_port_is_connect_failed(tmp_path, unused_tcp_port):
    site = await open_site(tmp_path, remote("127.0.0.1", unused_tcp_port))
    assert (await poll(site)).error == "connect-failed"
    await site.close()


async def test_apop_is_used_only_when_module_record_and_greeting_all_allow_it(pop3_server, tmp_path):
    server = await pop3_server([msg("a")], apop=True)
    site = await open_site(tmp_path, remote(server.host, server.port, apop=True))
    assert (await poll(site)).error is None
    assert server.sessions[-1].commands[-1].startswith("QUIT")
    assert any(c.startswith("APOP user ") for c in server.sessions[-1].commands)
    assert not any(c.startswith("PASS") for c in server.sessions[-1].commands)
    await site.close()

    for settings, apop, server_apop in [("use_apop = false\n", True, True), ("", False, True), ("", True, False)]:
        folder = tmp_path / f"case-{len(settings)}-{apop}-{server_apop}"
        server = await pop3_server([msg("a")], apop=server_apop)
        site = await open_site(folder, remote(server.host, server.port, apop=apop), "allow_self_poll = true\n" + settings)
        assert (await poll(site)).error is None
        commands = server.sessions[-1].commands
        assert any(c.startswith("PASS") for c in commands) and not any(c.startswith("APOP") for c in commands)
        await site.close()


async def test_pipelining_sends_commands_ahead_of_answers(pop3_server, tmp_path):
    server = await pop3_server([msg(str(i)) for i in range(10)], faults=Faults(hang_on="RETR"))
    site = await open_site(tmp_path, remote(server.host, server.port, timeout="1s"))
    assert (await poll(site)).error == "timeout"
    retrs = [c for c in server.sessions[-1].commands if c.startswith("RETR")]
    # The server never answered the first RETR, yet more arrived: they were pipelined.
    assert len(retrs) > 1, server.sessions[-1].commands
    await site.close()


async def test_without_pipelining_one_command_at_a_time(pop3_server, tmp_path):
    caps = ["TOP", "UIDL", "USER", "RESP-CODES"]
    server = await pop3_server([msg(str(i)) for i in range(3)], capabilities=caps, faults=Faults(hang_on="RETR"))
    site = await open_site(tmp_path, remote(server.host, server.port, timeout="1s"))
    assert (await poll(site)).error == "timeout"
    assert [c for c in server.sessions[-1].commands if c.startswith("RETR")] == ["RETR 1"]
    await site.close()


async def test_the_password_never_reaches_the_log_at_any_level(pop3_server, tmp_path, caplog):
    secret = "S3cr3t-pa55"
    server = await pop3_server([msg("a")], password=secret)
    site = await open_site(tmp_path, remote(server.host, server.port, password=secret), "allow_self_poll = true\nlog_level = \"all\"\n")
    with caplog.at_level(1, logger="rpop"):
        logging.getLogger("rpop").propagate = True
        assert (await poll(site)).error is None
    text = caplog.text
    assert "C: PASS ****" in text and "S: +OK" in text
    assert secret not in text
    await site.close()


async def test_a_clear_text_password_without_tls_is_warned_about_once_per_record(pop3_server, tmp_path, caplog):
    server = await pop3_server([msg("a")])
    site = await open_site(tmp_path, remote(server.host, server.port))
    with caplog.at_level(1, logger="rpop"):
        logging.getLogger("rpop").propagate = True
        await poll(site)
        await poll(site)
    warnings = [r for r in caplog.records if "sent in clear text" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "PROBLEM"
    await site.close()


async def test_a_crashing_delivery_plugin_fails_the_record_and_leaves_mail_on_the_server(pop3_server, tmp_path):
    from rpopcore.hookspecs import hookimpl
    from rpopcore.plugins import plugin_manager
    from rpopcore.service import Site
    from rpopcore.testing.sites import make_site

    class Crashing:
        async def deliver(self, message, envelope, recipients):
            raise RuntimeError("disk on fire")

        async def close(self):
            pass

    class Plugin:
        @hookimpl
        def rpop_delivery_agents(self):
            return {"crashing": lambda options, base_dir: Crashing()}

    pm = plugin_manager()
    pm.register(Plugin(), name="crashing")
    server = await pop3_server([msg("a")])
    site_file = make_site(tmp_path, remote(server.host, server.port, leave=False))
    site_file.write_text(site_file.read_text().replace('plugin = "maildir"\nroot = "mail"', 'plugin = "crashing"'))
    site = await Site.open(site_file, pm=pm)
    await site.apply(tmp_path / "decl.toml")
    (result,) = await site.poll_once()
    assert result.error == "internal-error" and "disk on fire" in result.detail
    assert server.uids() == ["a"]
    await site.close()


async def test_a_record_another_process_is_polling_is_not_polled_twice(pop3_server, tmp_path):
    server = await pop3_server([msg("a")])
    site = await open_site(tmp_path, remote(server.host, server.port))
    (record,) = await site.store.list_records()
    assert await site.store.acquire_lease(record.id, "another-process", 60)
    result = await poll(site)
    assert (result.error, result.retrieved) == ("record-busy", 0)
    assert server.sessions_total == 0
    await site.store.release_lease(record.id, "another-process")
    assert (await poll(site)).delivered == 1
    await site.close()


async def test_password_from_the_environment_or_a_file_is_read_at_poll_time(pop3_server, tmp_path, monkeypatch):
    server = await pop3_server([msg("a"), msg("b")], password="from-elsewhere", user=None, lock=False)
    (tmp_path / "secret.txt").write_text("from-elsewhere\n")
    (tmp_path / "secret.txt").chmod(0o600)
    records = (remote(server.host, server.port, password_env="ALICE_POP_PASSWORD").replace('password = "pass"\n', "")
               + remote(server.host, server.port, owner="bob@example.test", account="bob", password_file="secret.txt",
                      leave=True)
               .replace('password = "pass"\n', ""))
    monkeypatch.delenv("ALICE_POP_PASSWORD", raising=False)
    site = await open_site(tmp_path, records)
    first, second = await site.poll_once()
    assert first.error == "secret-unavailable" and "ALICE_POP_PASSWORD" in first.detail
    assert second.error is None and second.delivered == 2
    monkeypatch.setenv("ALICE_POP_PASSWORD", "from-elsewhere")
    first, _ = await site.poll_once()
    assert (first.error, first.delivered) == (None, 2)
    exported = await site.export()
    assert "from-elsewhere" not in exported and 'password_env = "ALICE_POP_PASSWORD"' in exported
    await site.close()


async def test_starttls_never_keeps_the_session_in_clear_even_when_offered(pop3_server, tmp_path, server_cert):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*server_cert)
    server = await pop3_server([msg("a")], ssl_context=context)
    site = await open_site(tmp_path, remote(server.host, server.port, starttls="never"))
    assert (await poll(site)).error is None
    assert "STLS" not in server.sessions[-1].commands
    assert not server.sessions[-1].tls
    await site.close()


async def test_starttls_auto_upgrades_when_offered(pop3_server, tmp_path, server_cert, test_ca):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*server_cert)
    server = await pop3_server([msg("a")], ssl_context=context)
    site = await open_site(tmp_path, remote(server.host, server.port, ca_file=str(test_ca.ca_pem_path)))
    assert (await poll(site)).error is None
    assert server.sessions[-1].commands[:2] == ["CAPA", "STLS"] and server.sessions[-1].tls
    await site.close()


async def test_user_and_pass_go_out_together_when_the_server_pipelines(pop3_server, tmp_path):
    # A server that never answers USER: with pipelining PASS was sent anyway.
    server = await pop3_server([msg("a")], faults=Faults(hang_on="USER"))
    site = await open_site(tmp_path, remote(server.host, server.port, timeout="1s"))
    assert (await poll(site)).error == "timeout"
    assert server.sessions[-1].commands[1:] == ["USER user", "PASS pass"]
    await site.close()
