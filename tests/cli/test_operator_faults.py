"""An operator's mistakes and the machine's limits, met by the installed
``rpop`` command: each is one line on stderr that names the file, the key
and the fix, with exit status 2 for bad input -- never ``internal error``,
never a traceback -- and what rpop writes is readable by its owner only."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.conftest import json_out, rpop_command, run_rpop
from tests.cli.test_cli import DECL, write_decl
from rpopcore.testing.sites import make_site, remote
from rpopcore.testing.plugin import DEFAULT_USERS


def one_line(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The single line a refused command wrote on stderr."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def read_only_folder():
    """``read_only_folder(path)`` mounts an empty read-only tmpfs there (made
    if missing): a folder even root cannot write.  Unmounted at teardown.
    Mounting needs root: where it is impossible this fails, never skips."""
    mounted: list[Path] = []

    def mount(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"cannot mount a read-only tmpfs on {folder} (this test needs root): {result.stderr}",
                        pytrace=False)
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def with_state_path(site: Path, path: str) -> Path:
    site_file = site / "rpop.toml"
    site_file.write_text(site_file.read_text().replace('plugin = "sqlite"\n', f'plugin = "sqlite"\npath = "{path}"\n'))
    return site_file


# --- paths that cannot be written --------------------------------------------


@pytest.mark.parametrize("where", ["a file where its folder should be", "a read-only disk"])
def test_a_state_path_that_cannot_be_created_or_written_names_the_key(site, read_only_folder, where):
    # Given a site whose [state] path cannot hold a database,
    if where == "a read-only disk":
        read_only_folder(site / "state")
    else:
        (site / "state").write_text("not a folder\n")
    site_file = with_state_path(site, "state/rpop.sqlite")
    decl = write_decl(site, 1110)

    # when any command opens the site, then it is refused in one line naming
    # the site file, the key, the path and what to do.
    for command in (["status"], ["apply", decl], ["poll", "--once"], ["export"]):
        line = one_line(run_rpop("-c", site_file, *command))
        assert line.startswith(f"rpop: {site_file}: [state] key 'path': "), line
        assert str(site / "state" / "rpop.sqlite") in line and "give a path in a folder" in line, line


def test_a_state_path_holding_a_nul_character_is_bad_input_naming_the_key(site):
    # Given a site file whose [state] path has a NUL in it (a TOML escape),
    site_file = with_state_path(site, "state\\u0000.sqlite")
    # when a command opens the site, then it is refused in one line naming the key, with exit 2.
    result = run_rpop("-c", site_file, "status")
    line = one_line(result)
    assert result.returncode == 2, result
    assert "[state]" in line and "'path'" in line and "NUL" in line, line


def test_init_into_a_folder_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    line = one_line(run_rpop("init", tmp_path / "blocker" / "site"))
    assert str(tmp_path / "blocker") in line and "choose a folder" in line


@pytest.mark.parametrize("where", ["a folder that does not exist", "a read-only disk"])
def test_a_log_file_that_cannot_be_opened_at_start_is_bad_input_naming_the_key(site, read_only_folder, where):
    # Given a [log] file in a folder that is missing or read-only,
    if where == "a read-only disk":
        read_only_folder(site / "log")
    site_file = site / "rpop.toml"
    site_file.write_text(site_file.read_text() + '\n[log]\nfile = "log/rpop.log"\n')
    decl = write_decl(site, 1110)

    # when a command starts, then it is refused, naming the key and the fix,
    # rather than running without its log.
    for command in (["status"], ["apply", decl], ["poll", "--once"]):
        line = one_line(run_rpop("-c", site_file, *command))
        assert line.startswith(f"rpop: {site_file}: [log] key 'file': cannot open {site / 'log' / 'rpop.log'}"), line
        assert "leave it empty" in line, line


# --- files that are not what they should be ------------------------------------


def test_a_site_file_or_declarative_file_that_is_not_utf8_names_the_line(site):
    site_file = site / "rpop.toml"
    site_file.write_bytes(site_file.read_bytes() + "# Fran\u00e7ois's site\n".encode("latin-1"))
    lines = site_file.read_bytes().count(b"\n")
    line = one_line(run_rpop("-c", site_file, "status"))
    assert f"{site_file}: not UTF-8 text (byte 0xe7 on line {lines})" in line and "save it as UTF-8" in line

    site_file.write_bytes(site_file.read_bytes().replace(b"\xe7", b"c"))
    decl = site / "decl.toml"
    decl.write_bytes(DECL.format(port=1110, password="pw").encode() + "# caf\u00e9\n".encode("cp1252"))
    line = one_line(run_rpop("-c", site_file, "apply", decl))
    assert f"{decl}: not UTF-8 text (byte 0xe9 on line" in line


def test_a_key_file_other_users_can_read_is_refused_as_ssh_refuses_a_private_key(site, threaded_pop3):
    server = threaded_pop3([], user="alice.smith", password="pw")
    site_file, key = site / "rpop.toml", site / "rpop.key"
    decl = write_decl(site, server.port)
    assert run_rpop("-c", site_file, "apply", decl).returncode == 0
    # Given the key made readable by everyone (a careless copy, cp without -p),
    key.chmod(0o644)

    # when a command needs it, it is refused, naming the mode and the fix;
    for command in (["poll", "--once"], ["apply", decl], ["secrets", "rotate"]):
        line = one_line(run_rpop("-c", site_file, *command))
        assert f"{key}: the secrets key is open to other users (mode 0644)" in line, line
        assert f"chmod 600 {key}" in line, line

    # and once the mode is fixed, all is as before.
    key.chmod(0o600)
    polled = run_rpop("-c", site_file, "poll", "--once", "--json")
    assert polled.returncode == 0 and json_out(polled)[0]["error"] is None, polled.stderr


def test_a_password_file_that_is_not_utf8_fails_its_record_not_rpop(site, threaded_pop3):
    server = threaded_pop3([], user="alice.smith", password="pw")
    (site / "password").write_bytes("p\u00e4ss\n".encode("latin-1"))
    (site / "password").chmod(0o600)
    decl = site / "decl.toml"
    decl.write_text(DECL.format(port=server.port, password="x").replace('password = "x"', 'password_file = "password"'))
    assert run_rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0
    polled = run_rpop("-c", site / "rpop.toml", "poll", "--once", "--json")
    assert polled.returncode == 1 and "Traceback" not in polled.stderr
    assert json_out(polled)[0]["error"] == "secret-unavailable"
    (row,) = json_out(run_rpop("-c", site / "rpop.toml", "status", "--json"))
    assert "is not UTF-8 text" in row["detail"]


def test_a_password_file_every_user_can_read_is_refused_naming_chmod(site, threaded_pop3):
    # Given a record whose password_file every user of the machine can read,
    server = threaded_pop3([], user="alice.smith", password="pw")
    (site / "password").write_text("pw\n")
    (site / "password").chmod(0o644)
    decl = site / "decl.toml"
    decl.write_text(DECL.format(port=server.port, password="x").replace('password = "x"', 'password_file = "password"'))
    assert run_rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0
    # when it is polled, its poll fails without sending it, saying how to fix it,
    polled = run_rpop("-c", site / "rpop.toml", "poll", "--once", "--json")
    assert json_out(polled)[0]["error"] == "secret-unavailable" and server.sessions_total == 0
    (row,) = json_out(run_rpop("-c", site / "rpop.toml", "status", "--json"))
    assert "open to every user (mode 0644)" in row["detail"] and f"chmod 600 {site / 'password'}" in row["detail"]
    # and readable by its owner and group only, it is used.
    (site / "password").chmod(0o640)
    polled = run_rpop("-c", site / "rpop.toml", "poll", "--once", "--json")
    assert json_out(polled)[0]["error"] is None, polled.stdout


@pytest.mark.parametrize(
    "host, says",
    [
        ("[::1", ["no closing ']'", '"[::1]:995"']),
        ("pop.isp.example:995:1", ["more than one ':'", '"pop.isp.example:995"']),
        ("pop isp.example", ["contains a space"]),
        ("pop3://pop.isp.example", ["is a URL", "drop 'pop3://'", 'host = "pop.isp.example"', "tls = true for pop3s"]),
        ("alice@pop.isp.example", ["contains '@'", "account"]),
    ],
)
def test_a_malformed_host_is_refused_at_apply_saying_what_to_write(site, host, says):
    site_file = site / "rpop.toml"
    good = write_decl(site, 1110)
    assert run_rpop("-c", site_file, "apply", good).returncode == 0
    before = run_rpop("-c", site_file, "export").stdout
    bad = site / "bad.toml"
    bad.write_text(DECL.format(port=1110, password="pw")
                   + f'\n[[remote]]\nowner = "bob@example.test"\naccount = "bob"\nhost = "{host}"\npassword = "pw"\n')

    line = one_line(run_rpop("-c", site_file, "apply", bad))

    assert line.startswith(f"rpop: {bad}: [[remote]] #2: key 'host': {host!r}"), line
    assert all(said in line for said in says), line
    assert run_rpop("-c", site_file, "export").stdout == before, "nothing was stored"


# --- standard output on a full device -----------------------------------------


def test_standard_output_on_a_full_device_is_one_line_and_exit_1(site):
    # `rpop export > /dev/full`: the command's input is fine, its output is
    # lost -- a failure (1), as a full disk under the state store is, not bad
    # input (2).
    with open("/dev/full", "w") as full:
        for command in (["-c", site / "rpop.toml", "export"], ["-c", site / "rpop.toml", "status"], ["plugins"]):
            result = subprocess.run([rpop_command(), *map(str, command)], stdout=full, stderr=subprocess.PIPE,
                                    text=True, timeout=60)
            line = one_line(result, status=1)
            assert line == ("rpop: cannot write standard output (No space left on device); what the command "
                            "printed is lost (anything it changed stays changed)\n")


# --- files readable by their owner only -----------------------------------------


def test_every_file_rpop_creates_is_readable_by_its_owner_only_whatever_the_umask(tmp_path, threaded_pop3):
    server = threaded_pop3([], user="alice.smith", password="pw")

    def rpop(*args, **kwargs):
        return subprocess.Popen([rpop_command(), *map(str, args)], umask=0o022, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)

    # Given a site made under umask 022, with a log file,
    made = rpop("init", tmp_path / "site")
    assert made.wait(60) == 0, made.stderr.read()
    site = tmp_path / "site"
    site_file = site / "rpop.toml"
    assert (mode(site_file), mode(site / "rpop.key")) == (0o600, 0o600)
    site_file.write_text(site_file.read_text() + '\n[log]\nfile = "rpop.log"\n')
    applied = rpop("-c", site_file, "apply", write_decl(site, server.port))
    assert applied.wait(60) == 0, applied.stderr.read()

    # when the daemon runs (its database open: -wal and -shm exist),
    daemon = rpop("-c", site_file, "run")
    try:
        files = [site / name for name in ("rpop.sqlite", "rpop.sqlite-wal", "rpop.sqlite-shm", "rpop.sqlite-leases",
                                          "rpop.log")]
        deadline = time.monotonic() + 30
        while not all(f.exists() for f in files) and time.monotonic() < deadline:
            time.sleep(0.1)
        # then each file it made is readable and writable by its owner alone.
        assert {f.name: oct(mode(f)) for f in files} == {f.name: oct(0o600) for f in files}
    finally:
        daemon.terminate()
        daemon.communicate(timeout=60)


# --- tls_verify = false --------------------------------------------------------


def test_tls_verify_false_shows_in_status(site):
    decl = write_decl(site, 1110, extra='\n[[remote]]\nowner = "bob@example.test"\naccount = "bob"\n'
                                        'host = "pop.isp.example"\ntls = true\ntls_verify = false\npassword = "pw"\n')
    assert run_rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0

    rows = json_out(run_rpop("-c", site / "rpop.toml", "status", "--json"))
    assert [(row["account"], row["tls_verify"]) for row in rows] == [("alice.smith", True), ("bob", False)]

    table = run_rpop("-c", site / "rpop.toml", "status").stdout.splitlines()
    assert "CERT" in table[0].split()
    (alice,) = [line for line in table if "alice.smith@" in line]
    (bob,) = [line for line in table if "bob@" in line]
    assert "NO-VERIFY" in bob.split() and "NO-VERIFY" not in alice.split()


def test_tls_verify_false_is_logged_once_per_poll_at_problems_level(dovecot_factory, tmp_path):
    # Given a Dovecot whose certificate rpop cannot verify, and a record that
    # knowingly accepts any certificate,
    dovecot = dovecot_factory(tls=True)
    dovecot.put("alice", b"Subject: hello\n\nhi\n")
    record = remote(dovecot.host, dovecot.pop3s_port, account="alice", password=DEFAULT_USERS["alice"],
                    tls=True, tls_verify=False)
    site_file = make_site(tmp_path / "site", record, settings='allow_self_poll = true\nlog_level = "problems"\n')
    assert run_rpop("-c", site_file, "apply", site_file.parent / "decl.toml").returncode == 0

    # when it is polled twice, each poll succeeds and says so once.
    for _ in range(2):
        polled = run_rpop("-c", site_file, "poll", "--once")
        assert polled.returncode == 0, polled.stdout + polled.stderr
        said = [line for line in polled.stderr.splitlines() if "tls_verify = false" in line]
        assert len(said) == 1, polled.stderr
        assert " RPOP PROBLEM " in said[0] and "[record 1]" in said[0], said
