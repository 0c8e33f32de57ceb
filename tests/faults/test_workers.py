"""Several ``rpop run`` workers on one PostgreSQL state store: three worker
processes share 300 records, each record its own POP3 server (the project's
scriptable server, which counts the sessions open at once).  One worker is
killed with SIGKILL while it retrieves; the others finish its records
within the lease time.  In the end every message has arrived exactly once,
no server ever saw two sessions at once, and every server is empty.
A killed ``rpop poll --once`` blocks nothing either; and a host one worker
found dead is not contacted by another.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

from bench.faults.kill import marker_counts, message
from rpopcore.plugins import plugin_manager
from rpopcore.testing.scriptable_server import Faults, Message, ScriptableServer
from tests.cli.conftest import rpop_command
from rpopcore.testing.sites import make_site, remote

RECORDS = 300
MESSAGES_PER_RECORD = 3
WORKERS = 3
LEASE_TIMEOUT = 5
#: The schedule spreads first polls over 20 s after a worker starts; the
#: rest is the polls themselves on a shared 2-core machine.
DEADLINE = 120.0


def worker_site(folder: Path, dsn: str, ports: list[int]) -> Path:
    """A site on the shared database; its declaration (one record per
    port) is written to ``decl.toml`` beside it, not applied yet."""
    # Mailboxes are told apart by account and host, not port: one account each.
    declaration = "".join(remote("127.0.0.1", port, account=f"box{number}", leave=False, poll_every="1h")
                          for number, port in enumerate(ports))
    site_file = make_site(folder, declaration,
                          settings="allow_self_poll = true\nprocessors = 8\nlog_level = \"major\"\n")
    site_file.write_text(site_file.read_text().replace(
        '[state]\nplugin = "sqlite"\n',
        f'[state]\nplugin = "postgresql"\ndsn = "{dsn}"\nlease_timeout = "{LEASE_TIMEOUT}s"\n'))
    return site_file


async def rpop(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(rpop_command(), *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode, out.decode()


async def open_store(dsn: str):
    factories = {}
    for contributed in plugin_manager().hook.rpop_state_stores():
        factories.update(contributed)
    store = factories["postgresql"]({"dsn": dsn, "lease_timeout": f"{LEASE_TIMEOUT}s"}, None)
    await store.open()
    return store


async def wait_for(condition, seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(step)
    return False


async def test_three_workers_share_300_records_and_a_killed_one_loses_and_repeats_nothing(
    pop3_server, postgresql_dsn, tmp_path
):
    # Given 300 mailboxes, each on its own server answering a little slowly
    # (so that a kill lands inside retrievals), and one site on PostgreSQL,
    rng = random.Random(13)
    servers: list[ScriptableServer] = []
    for number in range(RECORDS):
        mail = [Message(f"u{number}-{k}", message(number, k, rng)) for k in range(MESSAGES_PER_RECORD)]
        servers.append(await pop3_server(mail, user=f"box{number}", faults=Faults(response_delay=0.02)))
    site_file = worker_site(tmp_path / "site", postgresql_dsn, [server.port for server in servers])
    code, out = await rpop("-c", str(site_file), "apply", str(tmp_path / "site" / "decl.toml"))
    assert code == 0, out
    store = await open_store(postgresql_dsn)
    by_port = {server.port: server for server in servers}
    workers = [await asyncio.create_subprocess_exec(rpop_command(), "-c", str(site_file), "run",
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
               for _ in range(WORKERS)]
    by_pid = {worker.pid: worker for worker in workers}
    victim = None
    try:
        # when the three are all listed as workers and one of them is retrieving
        # (whichever: they plan alike, and the one that started first wins most
        # of the first polls),
        assert await wait_for(lambda: _count_workers(store, WORKERS), 30), "the workers never announced themselves"
        server_of = {record.id: by_port[record.address[1]] for record in await store.list_records()}

        async def one_retrieves() -> bool:
            nonlocal victim
            for rid, holder in (await store.lease_holders()).items():
                server = server_of[rid]
                # One of its sessions is past its first RETR: mail in flight.
                if server.concurrent_now and any(c.startswith("RETR") for c in server.sessions[-1].commands):
                    victim = by_pid.get(int(holder.rpartition(":")[2]))
                    if victim is not None:
                        return True
            return False

        assert await wait_for(one_retrieves, 40, step=0.02), "no worker was seen retrieving"
        held_by_victim = {rid for rid, holder in (await store.lease_holders()).items()
                          if holder.endswith(f":{victim.pid}")}
        # it is killed mid-retrieval;
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await victim.wait()

        # then the others poll every record it held, within the lease time
        # (plus a tick of their scheduler and the poll itself),
        async def finished(record_ids) -> bool:
            statuses = await store.load_statuses()
            return all(rid in statuses and statuses[rid].last_success for rid in record_ids)

        assert await wait_for(lambda: finished(held_by_victim), LEASE_TIMEOUT + 15), (
            f"records {sorted(held_by_victim)} held by the killed worker were not taken over")
        took_over = time.monotonic() - killed_at
        # and every record is polled;
        every_record = [record.id for record in await store.list_records()]
        assert len(every_record) == RECORDS
        assert await wait_for(lambda: finished(every_record), DEADLINE), "not every record was polled"
    finally:
        survivors = [worker for worker in workers if worker is not victim]
        for worker in survivors:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
        logs = [(await worker.communicate())[1].decode() for worker in survivors]
        await store.close()

    for log in logs:
        assert "Traceback" not in log, log
    # No server ever had two sessions at once: one poller per record,
    assert max(server.max_concurrent for server in servers) == 1
    # every message arrived exactly once and left its server,
    counts = marker_counts(tmp_path / "site" / "mail" / "example.test" / "alice")
    expected = {(number, k) for number in range(RECORDS) for k in range(MESSAGES_PER_RECORD)}
    assert set(counts) == expected, f"lost: {sorted(expected - set(counts))[:10]}"
    assert [marker for marker, copies in counts.items() if copies > 1] == [], "delivered twice"
    assert all(server.mailbox == [] for server in servers), "mail left on a server"
    # although the kill cut sessions short,
    assert any(not session.committed for server in servers for session in server.sessions), "the kill hit no session"
    # and the killed worker's records were taken over in well under the deadline.
    assert held_by_victim and took_over < LEASE_TIMEOUT + 15


async def _count_workers(store, wanted: int) -> bool:
    return len([w for w in await store.list_workers() if w.role == "run"]) >= wanted


async def test_a_host_one_worker_found_dead_is_spared_by_the_others(pop3_server, postgresql_dsn, tmp_path,
                                                                     monkeypatch):
    from rpopcore.scheduler import Daemon
    from rpopcore.service import Site
    from rpopcore.testing.dovecot import free_port

    # Given two workers on one database, and two records on one host: one
    # on a port nobody listens on, one on a live server,
    monkeypatch.setattr("rpopcore.schedule.START_SPREAD", 0.5)
    live = await pop3_server([Message("m", b"Subject: m\r\n\r\nx\r\n")], user="live")
    dead_port = free_port()
    declaration = (remote("127.0.0.1", dead_port, account="dead", leave=True)
                   + remote("127.0.0.1", live.port, account="live", leave=True))
    site_file = worker_site(tmp_path / "site", postgresql_dsn, [])
    (tmp_path / "site" / "decl.toml").write_text((tmp_path / "site" / "decl.toml").read_text() + declaration)
    first, second = await Site.open(site_file), await Site.open(site_file)
    try:
        await first.apply(tmp_path / "site" / "decl.toml")
        dead, _ = await first.store.list_records()
        # when the first worker fails to connect to the dead port,
        (failed,) = await first.poll_once([dead.id])
        assert failed.error == "connect-failed"
        # then the second worker's daemon does not contact the host at all (delay_failed_hosts is shared),
        stop = asyncio.Event()
        daemon = asyncio.create_task(Daemon(second, tick=0.1).run(stop))

        async def marked() -> bool:
            statuses = await second.store.load_statuses()
            return len(statuses) == 2 and all(status.error for status in statuses.values())

        assert await wait_for(marked, 10), "the second worker never looked at the records"
        stop.set()
        await asyncio.wait_for(daemon, 30)
        statuses = await second.store.load_statuses()
    finally:
        await first.close()
        await second.close()
    assert live.sessions_total == 0
    assert {status.error for status in statuses.values()} == {"connect-failed", "host-delayed"}


async def test_a_killed_poll_once_blocks_nothing_and_the_next_finishes_exactly_once(pop3_server, postgresql_dsn,
                                                                                     tmp_path):
    # Given a site on PostgreSQL and a mailbox of 40 messages served slowly,
    rng = random.Random(7)
    server = await pop3_server([Message(f"u{k}", message(0, k, rng)) for k in range(40)], user="box0",
                               faults=Faults(response_delay=0.05))
    site_file = worker_site(tmp_path / "site", postgresql_dsn, [server.port])
    code, out = await rpop("-c", str(site_file), "apply", str(tmp_path / "site" / "decl.toml"))
    assert code == 0, out
    maildir = tmp_path / "site" / "mail" / "example.test" / "alice"
    # when 'rpop poll --once' is killed with SIGKILL while it retrieves,
    poll = await asyncio.create_subprocess_exec(rpop_command(), "-c", str(site_file), "poll", "--once",
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def some_arrived() -> bool:
        return sum(marker_counts(maildir).values()) >= 3

    assert await wait_for(some_arrived, 60, step=0.02), "the poll never delivered"
    poll.send_signal(signal.SIGKILL)
    await poll.wait()
    assert server.mailbox, "the kill came after the end"
    # then the very next poll is not turned away as busy, and every message arrives exactly once.
    code, out = await rpop("-c", str(site_file), "poll", "--once")
    assert code == 0 and "record-busy" not in out, out
    counts = marker_counts(maildir)
    assert set(counts) == {(0, k) for k in range(40)} and max(counts.values()) == 1
    assert server.mailbox == []
