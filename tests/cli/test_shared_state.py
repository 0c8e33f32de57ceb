"""The commands of a site on a shared PostgreSQL state store, as an
administrator moving to it and running it uses them: ``migrate-state``,
``migrate``, ``workers`` and the holder column of ``status``."""

from __future__ import annotations

import asyncio
import os
import socket

from rpop_storage_postgresql import schema as pg_schema

from tests.cli.conftest import json_out
from tests.cli.test_cli import message, write_decl
from tests.faults.test_workers import open_store


def use_postgresql(site, dsn: str) -> None:
    site_file = site / "rpop.toml"
    site_file.write_text(site_file.read_text().replace(
        '[state]\nplugin = "sqlite"\n', f'[state]\nplugin = "postgresql"\ndsn_env = "RPOP_TEST_DSN"\n'))


def test_moving_a_site_to_postgresql_keeps_its_uids_and_secrets(tmp_path, rpop, threaded_pop3, postgresql_dsn):
    # Given a SQLite site that has retrieved two messages and left them on the server,
    server = threaded_pop3([message("a"), message("b")], user="alice.smith", password="pw")
    old = tmp_path / "old"
    assert rpop("init", old).returncode == 0
    assert rpop("-c", old / "rpop.toml", "apply", write_decl(old, server.port)).returncode == 0
    (first,) = json_out(rpop("-c", old / "rpop.toml", "poll", "--once", "--json"))
    assert first["retrieved"] == 2
    # and a new site on PostgreSQL, with a key of its own,
    new = tmp_path / "new"
    assert rpop("init", new).returncode == 0
    use_postgresql(new, postgresql_dsn)
    env = {"RPOP_TEST_DSN": postgresql_dsn}

    # when the state is moved,
    moved = rpop("-c", old / "rpop.toml", "migrate-state", "--to", new / "rpop.toml", env=env)
    assert moved.returncode == 0, moved.stderr
    assert "copied 1 record (1 secret sealed again" in moved.stdout and "2 remembered UIDs of 1 mailbox" in moved.stdout

    # then the new site logs in with the moved password and retrieves only what is new,
    server.add(message("c"))
    (again,) = json_out(rpop("-c", new / "rpop.toml", "poll", "--once", "--json", env=env))
    assert (again["error"], again["retrieved"]) == (None, 1)
    # its status came along, and moving again into a store that has records is refused in one line.
    (row,) = json_out(rpop("-c", new / "rpop.toml", "status", "--json", env=env))
    assert row["last"].endswith("Z")
    twice = rpop("-c", old / "rpop.toml", "migrate-state", "--to", new / "rpop.toml", env=env)
    assert twice.returncode == 2 and "already holds records" in twice.stderr and twice.stderr.count("\n") == 1
    assert "pw" not in moved.stdout + twice.stderr


def test_status_and_workers_show_who_polls_what(tmp_path, rpop, postgresql_dsn):
    site = tmp_path / "site"
    assert rpop("init", site).returncode == 0
    use_postgresql(site, postgresql_dsn)
    env = {"RPOP_TEST_DSN": postgresql_dsn}
    assert rpop("-c", site / "rpop.toml", "apply", write_decl(site, 1110), env=env).returncode == 0
    migrate = rpop("-c", site / "rpop.toml", "migrate", env=env)
    assert migrate.returncode == 0 and f"schema is at version {pg_schema.SCHEMA_VERSION}" in migrate.stdout, migrate.stderr
    assert "no rpop process is polling" in rpop("-c", site / "rpop.toml", "workers", env=env).stdout

    async def while_this_process_polls(check):
        store = await open_store(postgresql_dsn)
        try:
            (record,) = await store.list_records()
            await store.announce_worker("run", 5)
            assert await store.acquire_lease(record.id, "test:1", 60)
            return await asyncio.to_thread(check)
        finally:
            await store.close()

    def check():
        me = f"{socket.gethostname()}:{os.getpid()}"
        (row,) = json_out(rpop("-c", site / "rpop.toml", "status", "--json", env=env))
        assert row["polled_by"] == me
        assert f"polling now ({me})" in rpop("-c", site / "rpop.toml", "status", env=env).stdout
        (worker,) = json_out(rpop("-c", site / "rpop.toml", "workers", "--json", env=env))
        assert (worker["name"], worker["role"], worker["polling"], worker["processors"]) == (me, "run", 1, 5)

    asyncio.run(while_this_process_polls(check))
