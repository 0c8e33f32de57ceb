"""``rpop passwd``, ``rpop web`` and ``rpop run`` with a ``[web]`` table,
run as an administrator runs them."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess

import httpx
import pytest

from tests.cli.conftest import rpop_command
from rpopcore.testing.dovecot import free_port
from tests.web.conftest import ALICE, make_web_site


def rpop(site, *args, input=None):
    return subprocess.run([rpop_command(), "-c", site, *args], input=input, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def site(tmp_path):
    path = make_web_site(tmp_path, web=f"[web]\nlisten = \"127.0.0.1:{free_port()}\"\nadmins = [\"postmaster@example.test\"]\n")
    assert rpop(path, "apply", tmp_path / "decl.toml").returncode == 0
    return path


def test_passwd_reads_standard_input_and_stores_an_argon2_hash(site):
    done = rpop(site, "passwd", "al@example.test", input="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"set the web password of {ALICE}; its web sessions have ended\n"
    (stored,) = sqlite3.connect(site.parent / "rpop.sqlite").execute(
        "SELECT hash FROM web_passwords WHERE address = ?", (ALICE,)).fetchone()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


@pytest.mark.parametrize("address, given, said", [
    ("nobody@example.test", "long enough pw\n", "'nobody@example.test' is not a local account"),
    (ALICE, "short\n", "shorter than 8 characters"),
    (ALICE, "\n", "no password given"),
])
def test_passwd_refuses_in_one_line_with_status_2(site, address, given, said):
    refused = rpop(site, "passwd", address, input=given)
    assert refused.returncode == 2
    assert said in refused.stderr and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr


@pytest.mark.parametrize("table, said", [
    ('[web]\nlisten = "localhost"\n', "[web] key 'listen': 'localhost' is not host:port"),
    ('[web]\ntls_cert = "cert.pem"\n', "give both tls_cert and tls_key"),
    ('[web]\nadmins = ["postmaster"]\n', "[web] key 'admins': 'postmaster' is not an address"),
    ('[web]\nlisen = "127.0.0.1:1"\n', "unknown key 'lisen'; did you mean 'listen'?"),
])
def test_a_bad_web_table_is_one_line_naming_the_key(tmp_path, table, said):
    path = make_web_site(tmp_path, web=table)
    refused = rpop(path, "status")
    assert refused.returncode == 2 and said in refused.stderr and refused.stderr.count("\n") == 1


def test_rpop_web_without_a_web_table_says_what_to_add(tmp_path):
    path = make_web_site(tmp_path, web="")
    refused = rpop(path, "web")
    assert refused.returncode == 2 and "no [web] table" in refused.stderr


def test_a_port_in_use_is_one_line_at_start(site):
    port = int(site.read_text().split("127.0.0.1:")[-1].split('"')[0])
    with socket.create_server(("127.0.0.1", port)):
        refused = rpop(site, "web")
    assert refused.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in refused.stderr


@pytest.mark.parametrize("command", ["web", "run"])
async def test_web_and_run_serve_the_pages_and_api_until_sigterm(site, command):
    assert rpop(site, "passwd", "postmaster@example.test", input="admin password\n").returncode == 0
    port = int(site.read_text().split("127.0.0.1:")[-1].split('"')[0])
    server = subprocess.Popen([rpop_command(), "-c", site, command], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                try:
                    health = await client.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert health.json() == {"status": "ok"}
            records = await client.get("/api/v1/records", auth=("postmaster@example.test", "admin password"))
            assert sorted(r["account"] for r in records.json()) == ["alice.remote", "bob.remote", "domain.remote"]
            assert (await client.get("/signin")).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    if command == "web":
        assert out == f"serving http://127.0.0.1:{port}/ (pages and /api/v1/; not polling)\n"
    assert "Traceback" not in err

