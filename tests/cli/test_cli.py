"""The ``rpop`` command as an administrator uses it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest

from rpopcore.testing.scriptable_server import Message
from tests.cli.conftest import json_out, rpop_command

DECL = """
[rpop]
allow_self_poll = true

[[domain]]
name = "example.test"
main = true
accounts = ["alice", "bob", "postmaster"]
aliases = {{ al = "alice" }}

[[remote]]
owner = "alice@example.test"
poll_every = "10m"
account = "alice.smith"
host = "127.0.0.1:{port}"
password = "{password}"
leave = true
"""


def message(uid: str) -> Message:
    return Message(uid=uid, data=f"Return-Path: <x@isp.test>\r\nSubject: {uid}\r\n\r\nbody {uid}\r\n".encode())


def write_decl(site, port, password="pw", extra=""):
    path = site / "decl.toml"
    path.write_text(DECL.format(port=port, password=password) + extra)
    return path


def test_init_writes_the_pinned_defaults_and_a_private_key(site):
    text = (site / "rpop.toml").read_text()
    for line in ('[delivery]', 'plugin = "maildir"', 'root = "mail"', '[state]', 'plugin = "sqlite"',
                 '[secrets]', 'key_file = "rpop.key"'):
        assert line in text
    assert stat.S_IMODE((site / "rpop.key").stat().st_mode) == 0o600


def test_apply_poll_status_round_trip_with_json(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a"), message("b")], user="alice.smith", password="pw")
    decl = write_decl(site, server.port)
    assert rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0

    status = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
    assert status == [{
        **status[0],
        "kind": "remote", "owner": "alice@example.test", "account": "alice.smith",
        "host": f"127.0.0.1:{server.port}", "last": None, "error": None,
    }]

    polled = rpop("-c", site / "rpop.toml", "poll", "--once", "--json")
    assert polled.returncode == 0, polled.stderr
    assert json_out(polled) == [{"id": status[0]["id"], "retrieved": 2, "delivered": 2, "error": None, "detail": ""}]

    (row,) = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
    assert row["error"] is None and row["last"].endswith("Z") and row["last"][:4].isdigit()
    assert len(list((site / "mail" / "example.test" / "alice" / "new").iterdir())) == 2


def test_a_failed_poll_exits_1_and_status_shows_the_code(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="right")
    decl = write_decl(site, server.port, password="wrong")
    rpop("-c", site / "rpop.toml", "apply", decl)
    polled = rpop("-c", site / "rpop.toml", "poll", "--once", "--json")
    assert polled.returncode == 1
    assert json_out(polled)[0]["error"] == "auth-failed"
    (row,) = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
    assert (row["last"], row["error"]) == ("auth-failed", "auth-failed")
    assert "wrong" not in polled.stdout + polled.stderr


def test_apply_is_idempotent_and_keeps_remembered_uids(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="pw")
    decl = write_decl(site, server.port)
    rpop("-c", site / "rpop.toml", "apply", decl)
    first = json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--json"))
    rpop("-c", site / "rpop.toml", "apply", decl)
    again = json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--json"))
    assert first[0]["id"] == again[0]["id"]
    assert (first[0]["delivered"], again[0]["retrieved"]) == (1, 0)


@pytest.mark.parametrize(
    "extra, expected",
    [
        ('\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h"\npasword = "x"\n', "unknown key 'pasword'; did you mean 'password'?"),
        ('\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h"\nleave = "yes"\n', "key 'leave': expected true or false"),
        ('\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h"\npoll_every = "soon"\n', "key 'poll_every'"),
        ('\n[[remote]]\nowner = "zed@example.test"\naccount = "b"\nhost = "h"\n', "key 'owner'"),
        ('\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h"\nauth = "kerberos"\n', "key 'auth'"),
        ('\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h:99999"\n', "key 'host'"),
    ],
)
def test_bad_declarations_get_one_line_exit_2_and_change_nothing(site, rpop, extra, expected):
    good = write_decl(site, 1110)
    assert rpop("-c", site / "rpop.toml", "apply", good).returncode == 0
    def stored():
        rows = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
        return [{k: v for k, v in row.items() if k not in ("next_due", "delayed")} for row in rows]

    before = stored()
    bad = site / "bad.toml"
    bad.write_text(DECL.format(port=1110, password="pw") + extra)
    result = rpop("-c", site / "rpop.toml", "apply", bad)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(bad) in result.stderr and expected in result.stderr
    assert stored() == before


def test_unknown_plugin_missing_key_file_and_bad_toml_are_one_line_errors(site, rpop):
    site_file = site / "rpop.toml"
    original = site_file.read_text()

    site_file.write_text(original.replace('plugin = "maildir"', 'plugin = "mbox"'))
    result = rpop("-c", site_file, "status")
    assert result.returncode == 2 and "[delivery] key 'plugin'" in result.stderr and "'mbox'" in result.stderr

    site_file.write_text(original + "\n[bogus]\nx = 1\n")
    result = rpop("-c", site_file, "status")
    assert result.returncode == 2 and "unknown table [bogus]" in result.stderr

    site_file.write_text(original + "\n[delivery\n")
    result = rpop("-c", site_file, "status")
    assert result.returncode == 2 and "not valid TOML" in result.stderr

    site_file.write_text(original)
    (site / "rpop.key").unlink()
    decl = write_decl(site, 1110)
    result = rpop("-c", site_file, "apply", decl)
    assert result.returncode == 2 and "rpop.key" in result.stderr and "key_file" in result.stderr
    for r in (result,):
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_user_set_record_below_the_minimum_period_is_refused(site, rpop):
    decl = write_decl(site, 1110, extra='\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h"\n'
                      'poll_every = "1m"\nset_by = "user"\n')
    result = rpop("-c", site / "rpop.toml", "apply", decl)
    assert result.returncode == 2 and "min_poll_period_for_users" in result.stderr
    ok = write_decl(site, 1110, extra='\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h"\n'
                    'password = "pw"\npoll_every = "1m"\nset_by = "admin"\n')
    assert rpop("-c", site / "rpop.toml", "apply", ok).returncode == 0


def test_plugins_json_lists_every_default_plugin(rpop):
    rows = json_out(rpop("plugins", "--json"))
    by_name = {row["name"]: row for row in rows}
    for name, dist, hook in [
        ("userpass", "rpop-auth-userpass", "rpop_auth_mechanisms"),
        ("apop", "rpop-auth-apop", "rpop_auth_mechanisms"),
        ("sqlite", "rpop-storage-sqlite", "rpop_state_stores"),
        ("maildir", "rpop-delivery-maildir", "rpop_delivery_agents"),
        ("owner", "rpop-recipients-owner", "rpop_resolve_envelope"),
        ("directory", "rpop-routing-directory", "rpop_route_address"),
    ]:
        assert by_name[name]["distribution"] == dist and hook in by_name[name]["hooks"]
        assert by_name[name]["version"]


def test_output_into_a_closed_pipe_ends_quietly_as_sigpipe_would():
    # `rpop plugins | head -1`: the reader is gone before rpop writes.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run([rpop_command(), "plugins"], stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(writer)
    assert result.returncode == 128 + signal.SIGPIPE
    assert result.stderr == ""


def test_logs_go_to_stderr_tagged_rpop_or_to_the_log_file(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="pw")
    decl = write_decl(site, server.port)
    (site / "decl.toml").write_text(decl.read_text().replace("allow_self_poll = true", 'allow_self_poll = true\nlog_level = "all"'))
    rpop("-c", site / "rpop.toml", "apply", decl)
    result = rpop("-c", site / "rpop.toml", "poll", "--once")
    lines = [l for l in result.stderr.splitlines() if l]
    assert lines and all(" RPOP " in l for l in lines)
    assert any("[record 1]" in l and "C: PASS ****" in l for l in lines)
    assert "pw\n" not in result.stderr and " pw" not in result.stderr

    site_file = site / "rpop.toml"
    site_file.write_text(site_file.read_text() + '\n[log]\nfile = "rpop.log"\n')
    result = rpop("-c", site_file, "poll", "--once")
    assert result.stderr == ""
    assert " RPOP " in (site / "rpop.log").read_text()


def test_run_polls_new_records_soon_and_stops_cleanly_on_sigterm(site, threaded_pop3):
    server = threaded_pop3([message("a"), message("b")], user="alice.smith", password="pw")
    decl = write_decl(site, server.port)
    subprocess.run([rpop_command(), "-c", site / "rpop.toml", "apply", decl], check=True, capture_output=True)
    daemon = subprocess.Popen([rpop_command(), "-c", site / "rpop.toml", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        new = site / "mail" / "example.test" / "alice" / "new"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(new.glob("*")) if new.exists() else []) < 2:
            time.sleep(0.2)
        assert len(list(new.glob("*"))) == 2, "the daemon did not poll a never-polled record within 30 s"
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "Traceback" not in err.decode()


def test_no_subcommand_and_bad_arguments_are_exit_2(rpop, tmp_path):
    assert rpop("frobnicate").returncode == 2
    missing = rpop("-c", tmp_path / "nope.toml", "status")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_demo_runs_on_a_fresh_machine(rpop):
    result = rpop("demo")
    assert result.returncode == 0, result.stderr
    assert "alice/new/" in result.stdout and "bob/new/" in result.stdout
    assert "Return-Path: <carol@isp.test> / Delivered-To: alice@example.test" in result.stdout


def test_secrets_rotate_reencrypts_without_losing_a_record(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="pw")
    decl = write_decl(site, server.port)
    rpop("-c", site / "rpop.toml", "apply", decl)
    old_key = (site / "rpop.key").read_bytes()
    before = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
    result = rpop("-c", site / "rpop.toml", "secrets", "rotate")
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 1 secret under" in result.stdout and "pw" not in result.stdout
    assert (site / "rpop.key").read_bytes() != old_key
    assert stat.S_IMODE((site / "rpop.key").stat().st_mode) == 0o600
    (site / "rpop.key.previous").unlink()  # the administrator deletes the old key: the new one must suffice
    after = json_out(rpop("-c", site / "rpop.toml", "status", "--json"))
    assert [r["id"] for r in after] == [r["id"] for r in before]
    polled = json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--json"))
    assert polled[0]["error"] is None and polled[0]["delivered"] == 1


def test_a_wrong_key_file_is_a_clear_error(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="pw")
    rpop("-c", site / "rpop.toml", "apply", write_decl(site, server.port))
    (site / "rpop.key").write_bytes(b"not a key\n")
    result = rpop("-c", site / "rpop.toml", "poll", "--once", "--json")
    assert result.returncode == 2 and "not a secrets key" in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    run = rpop("-c", site / "rpop.toml", "run")
    assert run.returncode == 2 and "rpop.key" in run.stderr
    rotate = rpop("-c", site / "rpop.toml", "secrets", "rotate")
    assert rotate.returncode == 2 and "not a secrets key" in rotate.stderr
    (site / "rpop.key").unlink()
    result = rpop("-c", site / "rpop.toml", "poll", "--once")
    assert result.returncode == 2 and "cannot read the secrets key" in result.stderr


def test_export_round_trips_without_secrets_and_reapplying_keeps_the_password(site, rpop, threaded_pop3):
    server = threaded_pop3([message("a")], user="alice.smith", password="Very-Secret-1")
    decl = write_decl(site, server.port, password="Very-Secret-1")
    decl.write_text(decl.read_text().replace("allow_self_poll = true", 'allow_self_poll = true\nactivity_schedule = ["Daily 00:00-24:00"]'))
    rpop("-c", site / "rpop.toml", "apply", decl)
    exported = rpop("-c", site / "rpop.toml", "export")
    assert exported.returncode == 0, exported.stderr
    assert "Very-Secret-1" not in exported.stdout and "password =" not in exported.stdout
    assert 'owner = "alice@example.test"' in exported.stdout and 'aliases = { al = "alice" }' in exported.stdout
    (site / "exported.toml").write_text(exported.stdout)
    assert rpop("-c", site / "rpop.toml", "apply", site / "exported.toml").returncode == 0
    assert rpop("-c", site / "rpop.toml", "export").stdout == exported.stdout
    polled = json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--json"))
    assert polled[0]["error"] is None, "the stored password survived the re-apply"


def test_an_oauth2_token_endpoint_in_clear_over_a_network_is_refused(site, rpop):
    decl = write_decl(site, 1110, extra='\n[[remote]]\nowner = "bob@example.test"\naccount = "b"\nhost = "h"\n'
                      'oauth2 = { token_endpoint = "http://login.example.test/token", client_id = "c", refresh_token = "r" }\n')
    result = rpop("-c", site / "rpop.toml", "apply", decl)
    assert result.returncode == 2 and "key 'oauth2'" in result.stderr and "https://" in result.stderr
    assert '"r"' not in result.stderr


def test_a_user_may_set_only_max_accounts_per_user_records(site, rpop):
    def bob(n, set_by):
        return (f'\n[[remote]]\nowner = "bob@example.test"\naccount = "b{n}"\nhost = "h"\npassword = "pw"\n'
                f'poll_every = "1h"\nset_by = "{set_by}"\n')

    settings = "allow_self_poll = true\nmax_accounts_per_user = 2"
    decl = write_decl(site, 1110, extra=bob(1, "user") + bob(2, "user") + bob(3, "admin") + bob(4, "admin"))
    decl.write_text(decl.read_text().replace("allow_self_poll = true", settings))
    assert rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0, "two of their own plus the admin's"
    decl.write_text(decl.read_text() + bob(5, "user"))
    result = rpop("-c", site / "rpop.toml", "apply", decl)
    assert result.returncode == 2 and "max_accounts_per_user" in result.stderr and "bob@example.test" in result.stderr
