"""Module settings that act on connections and logs, measured for real."""

from __future__ import annotations

import asyncio

import pytest

from rpopcore.testing.scriptable_server import Faults, Message
from rpopcore.testing.sites import DOMAIN, open_site, remote


def many_accounts(n: int) -> str:
    """A domain with n extra accounts u0..u{n-1}."""
    names = ", ".join(f'"u{i}"' for i in range(n))
    return DOMAIN.replace('"postmaster"]', f'"postmaster", {names}]')


async def test_processors_bound_concurrent_sessions_and_every_record_is_polled(pop3_server, tmp_path, monkeypatch):
    server = await pop3_server([Message("m", b"Subject: m\r\n\r\nx\r\n")], lock=False, user=None,
                               faults=Faults(response_delay=0.02))
    records = "".join(remote(server.host, server.port, owner=f"u{i}@example.test", account=f"u{i}") for i in range(50))
    monkeypatch.setattr("rpopcore.testing.sites.DOMAIN", many_accounts(50))
    site = await open_site(tmp_path, records, "allow_self_poll = true\nprocessors = 4\n")
    results = await site.poll_once()
    assert len(results) == 50 and all(r.error is None and r.delivered == 1 for r in results)
    assert server.sessions_total == 50
    assert 2 <= server.max_concurrent <= 4, server.max_concurrent
    await site.close()


async def test_the_daemon_respects_processors_too(pop3_server, tmp_path, monkeypatch):
    from rpopcore.scheduler import Daemon

    server = await pop3_server([], lock=False, user=None, faults=Faults(response_delay=0.02))
    records = "".join(remote(server.host, server.port, owner=f"u{i}@example.test", account=f"u{i}") for i in range(30))
    monkeypatch.setattr("rpopcore.testing.sites.DOMAIN", many_accounts(30))
    monkeypatch.setattr("rpopcore.schedule.START_SPREAD", 0.5)
    site = await open_site(tmp_path, records, "allow_self_poll = true\nprocessors = 3\n")
    stop = asyncio.Event()
    daemon = Daemon(site, tick=0.1)
    task = asyncio.create_task(daemon.run(stop))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if server.sessions_total == 30 and server.concurrent_now == 0:
            break
    stop.set()
    await asyncio.wait_for(task, 30)
    assert server.sessions_total == 30
    assert server.max_concurrent <= 3
    await site.close()


async def test_self_poll_is_refused_before_connecting(pop3_server, tmp_path):
    server = await pop3_server([Message("m", b"Subject: m\r\n\r\nx\r\n")])
    site = await open_site(tmp_path, remote(server.host, server.port), "allow_self_poll = false\n")
    (result,) = await site.poll_once()
    assert result.error == "self-poll-refused"
    assert "allow_self_poll" in result.detail
    assert server.sessions_total == 0, "no connection was made"
    await site.close()


async def test_own_addresses_extend_the_self_poll_check(tmp_path):
    from rpopcore import errors
    from rpopcore.selfpoll import refuse_self_poll

    with pytest.raises(errors.SelfPollRefused):
        await refuse_self_poll("198.51.100.7", 110, ["198.51.100.7"])
    await refuse_self_poll("198.51.100.8", 110, ["198.51.100.7"])  # not ours: allowed (no connection is made here)


async def test_default_ip_address_is_the_source_of_connections(pop3_server, tmp_path):
    server = await pop3_server([])
    site = await open_site(tmp_path, remote(server.host, server.port),
                           'allow_self_poll = true\ndefault_ip_address = "127.0.0.2"\n')
    (result,) = await site.poll_once()
    assert result.error is None
    assert server.peer_addresses == ["127.0.0.2"]
    await site.close()


async def test_use_domain_ip_addresses_for_per_user_records_only(pop3_server, tmp_path, monkeypatch):
    server = await pop3_server([])
    box = await pop3_server([], user="box", password="pw")
    monkeypatch.setattr("rpopcore.testing.sites.DOMAIN", DOMAIN.replace('main = true', 'main = true\nip_addresses = ["127.0.0.3"]'))
    unified = f'[[unified]]\naccount = "box"\npassword = "pw"\nhost = "{box.host}:{box.port}"\n'
    site = await open_site(tmp_path, remote(server.host, server.port) + unified,
                           'allow_self_poll = true\ndefault_ip_address = "127.0.0.2"\nuse_domain_ip_addresses = true\n')
    assert all(r.error is None for r in await site.poll_once())
    assert server.peer_addresses == ["127.0.0.3"]
    assert box.peer_addresses == ["127.0.0.2"]
    await site.close()


LEVEL_CASES = {
    "none": (False, False, False, False),
    "major": (True, False, False, False),
    "problems": (True, True, False, False),
    "low-level": (True, True, True, False),
    "all": (True, True, True, True),
}


@pytest.mark.parametrize("level", list(LEVEL_CASES))
async def test_log_levels_are_cumulative(pop3_server, tmp_path, level, capsys):
    from rpopcore import logs

    good = await pop3_server([Message("m", b"Subject: m\r\n\r\nx\r\n")], password="Pw-0123456789")
    bad = await pop3_server([], password="other")
    records = remote(good.host, good.port, password="Pw-0123456789") + remote(bad.host, bad.port, password="Pw-0123456789",
                                                                             account="second")
    site = await open_site(tmp_path, records, f'allow_self_poll = true\nlog_level = "{level}"\n')
    logs.configure(level)
    try:
        await site.poll_once()
    finally:
        logs.configure("none")
    text = capsys.readouterr().err
    transfer, problem, protocol, link = LEVEL_CASES[level]
    assert ("delivered to alice@example.test" in text) is transfer
    assert ("poll failed (auth-failed)" in text) is problem
    assert ("C: UIDL" in text) is protocol
    assert ("connecting to 127.0.0.1" in text) is link
    assert all(" RPOP " in line and "[record " in line for line in text.splitlines())
    assert "Pw-0123456789" not in text
    await site.close()
