"""A full disk under the mail, the state database or the log file, with a
real Dovecot holding the mail and the installed ``rpop`` command polling it.

Each disk is a small tmpfs the test mounts over a folder of the site (so the
site file's relative paths stay as ``rpop init`` wrote them) and fills with
a ballast file; freeing the space is deleting the ballast.  Mounting needs
root: a machine where it is impossible fails these tests, it never skips
them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import run_rpop
from rpopcore.testing.sites import delivered, make_site, remote
from rpopcore.testing.plugin import DEFAULT_USERS

#: How a user is told that a disk is full: the C library's text for ENOSPC,
#: or (about the state database) SQLite's own words for SQLITE_FULL.
ENOSPC = "No space left on device"
DISK_FULL = re.compile(f"{ENOSPC}|database or disk is full")
#: SQLite needs this much room beside a database in WAL mode just to read it
#: (the shared-memory WAL index, ``<db>-shm``, which it writes page by page
#: on open).  A disk with exactly this much free is one where rpop can read
#: its state and cannot write any of it.
WAL_INDEX_BYTES = 32 * 1024


# --- small disks ----------------------------------------------------------------


class Disk:
    """A mounted tmpfs; ``fill`` takes its free space with a ballast file."""

    def __init__(self, path: Path):
        self.path = path
        self.ballast = path / ".ballast"

    def free(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leaving: int = 0) -> None:
        """Leave exactly ``leaving`` bytes free (a multiple of the page size)."""
        with open(self.ballast, "ab") as ballast:
            ballast.write(b"\0" * (self.free() - leaving))
        assert self.free() == leaving, f"{self.path} has {self.free()} bytes free, not {leaving}"

    def make_room(self) -> None:
        self.ballast.unlink()


@pytest.fixture
def small_disk():
    """``small_disk(folder, size="1m", **tmpfs options)`` mounts a tmpfs of
    that size on ``folder`` (made if missing); all are unmounted at teardown,
    whatever the test did."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str = "1m", **options) -> Disk:
        folder.mkdir(parents=True, exist_ok=True)
        settings = ",".join([f"size={size}", "mode=0755", *(f"{k}={v}" for k, v in options.items())])
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", settings, "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs on {folder} (these tests need root and mount -t tmpfs): "
                        f"{result.stderr.strip() or result.returncode}", pytrace=False)
        mounted.append(folder)
        return Disk(folder)

    yield mount
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


# --- a site polling alice's Dovecot mailbox --------------------------------------


def letter(n: int, size: int = 1000) -> bytes:
    """A message with the subject ``letter N`` and a body of about ``size`` bytes."""
    body = "".join(f"letter {n}, line {i:07d} of its body\n" for i in range(size // 32 + 1))
    return (f"From: sender{n}@isp.test\nTo: alice@isp.test\nSubject: letter {n}\n"
            f"Message-ID: <{n}@isp.test>\n\n{body}").encode()


def post(dovecot, letters: dict[int, bytes]) -> None:
    """Put letters into alice's mailbox on the server, in number order."""
    dovecot.put_many("alice", [letters[n] for n in sorted(letters)])


def dovecot_site(folder: Path, dovecot, *, leave: bool, poll_every: str = "10m", log_level: str = "problems",
                 state: str = "", log: str = "") -> Path:
    """A site (made as ``rpop init`` does) whose one record polls alice's
    mailbox on ``dovecot``; Maildir root ``mail``, the state database at
    ``state`` and the log at ``log`` when given.  Returns the site file; the
    declarative file is ``decl.toml`` beside it, not applied yet."""
    record = remote(dovecot.host, dovecot.pop3_port, account="alice", password=DEFAULT_USERS["alice"],
                    leave=leave, poll_every=poll_every)
    site_file = make_site(folder, record, settings=f'allow_self_poll = true\nlog_level = "{log_level}"\n')
    text = site_file.read_text()
    if state:
        text = text.replace('plugin = "sqlite"\n', f'plugin = "sqlite"\npath = "{state}"\n')
    if log:
        text += f'\n[log]\nfile = "{log}"\n'
    site_file.write_text(text)
    return site_file


def apply(site_file: Path) -> None:
    result = run_rpop("-c", site_file, "apply", site_file.parent / "decl.toml")
    assert result.returncode == 0, result.stderr


def poll(site_file: Path, *more: str) -> subprocess.CompletedProcess:
    return run_rpop("-c", site_file, "poll", "--once", *more)


def record_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The lines ``rpop poll --once`` printed about records, on either stream."""
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("record ")]


def one_record_line(result: subprocess.CompletedProcess) -> str:
    lines = record_lines(result)
    assert len(lines) == 1, f"not one line for the record:\n{result.stdout}{result.stderr}"
    return lines[0]


def arrived(folder: Path, letters: dict[int, bytes]) -> list[int]:
    """The numbers of the letters in alice's new/, sorted, one per copy;
    every copy must be whole (the letter as sent, below rpop's trace fields)."""
    numbers = []
    for copy in delivered(folder):
        n = int(copy.split(b"\nSubject: letter ", 1)[1].split(b"\n", 1)[0])
        assert copy.endswith(letters[n]), f"a half-written copy of letter {n} is in new/"
        numbers.append(n)
    return sorted(numbers)


def maildir(folder: Path, sub: str) -> list[str]:
    where = folder / "mail" / "example.test" / "alice" / sub
    return sorted(os.listdir(where)) if where.exists() else []


# --- the scenarios ------------------------------------------------------------------


def test_a_maildir_that_runs_out_of_space_mid_message_keeps_it_on_the_server(dovecot_factory, tmp_path, small_disk):
    # Given a mailbox whose middle letter is larger than the room left on
    # the disk under the Maildirs,
    dovecot = dovecot_factory(tls=False)
    letters = {1: letter(1), 2: letter(2, size=256 * 1024), 3: letter(3)}
    post(dovecot, letters)
    site_file = dovecot_site(tmp_path / "site", dovecot, leave=False)
    disk = small_disk(tmp_path / "site" / "mail", size="1m")
    apply(site_file)
    disk.fill(leaving=64 * 1024)

    # when rpop polls,
    first = poll(site_file)

    # then the poll fails, saying the disk is full and where,
    assert first.returncode == 1, first.stdout + first.stderr
    line = one_record_line(first)
    assert "delivery-failed" in line and ENOSPC in line, line
    assert str(tmp_path / "site" / "mail" / "example.test" / "alice") in line, line
    # the large letter stays on the server (with whatever did not arrive),
    on_server = dovecot.count("alice")
    assert any(b"Subject: letter 2\n" in m for m in dovecot.messages("alice"))
    # what did arrive is whole, nothing half-written is visible and nothing is left in tmp/,
    got = arrived(tmp_path / "site", letters)
    assert 2 not in got
    assert len(got) + on_server == 3, "each letter is either delivered and gone from the server, or still there"
    assert maildir(tmp_path / "site", "tmp") == []

    # and once there is room again, the next poll delivers the rest: each letter exactly once.
    disk.make_room()
    second = poll(site_file)
    assert second.returncode == 0, second.stdout + second.stderr
    assert arrived(tmp_path / "site", letters) == [1, 2, 3]
    assert dovecot.count("alice") == 0
    assert maildir(tmp_path / "site", "tmp") == []


@pytest.mark.parametrize("leave", [False, True], ids=["leave-false", "leave-true"])
def test_a_state_database_on_a_full_disk_fails_the_poll_in_one_line_and_loses_nothing(
        dovecot_factory, tmp_path, small_disk, leave):
    # Given the state database on a disk that fills up after the records
    # were applied, so that rpop can read its state but not write it,
    dovecot = dovecot_factory(tls=False)
    letters = {n: letter(n) for n in range(1, 6)}
    post(dovecot, letters)
    site_file = dovecot_site(tmp_path / "site", dovecot, leave=leave, state="state/rpop.sqlite")
    disk = small_disk(tmp_path / "site" / "state", size="1m")
    apply(site_file)
    disk.fill(leaving=WAL_INDEX_BYTES)

    # when rpop polls,
    first = poll(site_file)

    # then the poll fails with one line for the record that names the state
    # file, says the disk is full and gives the code state-failed,
    output = first.stdout + first.stderr
    assert first.returncode == 1, output
    line = one_record_line(first)
    assert "state-failed" in line and DISK_FULL.search(line), line
    assert str(tmp_path / "site" / "state" / "rpop.sqlite") in line, line
    # with no traceback, no "internal error" and at most a few lines on stderr,
    assert "Traceback" not in output and "internal error" not in output, output
    assert len(first.stderr.splitlines()) <= 4, first.stderr
    # and the mail stays on the server.
    assert dovecot.count("alice") == 5

    # When there is room again, the very next poll is not turned away as
    # busy, and every letter arrives exactly once;
    disk.make_room()
    second = poll(site_file)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "record-busy" not in second.stdout + second.stderr
    assert arrived(tmp_path / "site", letters) == [1, 2, 3, 4, 5]
    assert dovecot.count("alice") == (5 if leave else 0)
    if leave:
        # the letters left on the server are remembered: a third poll retrieves nothing.
        third = poll(site_file)
        assert third.returncode == 0, third.stdout + third.stderr
        assert record_lines(third) == ["record 1: 0 retrieved, 0 delivered"]
        assert arrived(tmp_path / "site", letters) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("trouble", ["full", "no-inodes"])
def test_a_log_file_that_cannot_be_written_costs_one_line_and_never_a_poll(
        dovecot_factory, tmp_path, small_disk, trouble):
    # Given the log file on a disk that is full ("full": the file can be
    # created but not written; "no-inodes": not even created), and a log
    # level that writes many lines,
    dovecot = dovecot_factory(tls=False)
    letters = {n: letter(n) for n in range(1, 4)}
    post(dovecot, letters)
    site_file = dovecot_site(tmp_path / "site", dovecot, leave=False, log_level="all", log="log/rpop.log")
    log_file = tmp_path / "site" / "log" / "rpop.log"
    if trouble == "full":
        disk = small_disk(log_file.parent, size="64k")
        disk.fill()
    else:
        disk = small_disk(log_file.parent, size="64k", nr_inodes=1)

    # when the records are applied and polled,
    applied = run_rpop("-c", site_file, "apply", site_file.parent / "decl.toml")
    polled = poll(site_file)

    # then both work, and the poll delivers everything;
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert polled.returncode == 0, polled.stdout + polled.stderr
    assert arrived(tmp_path / "site", letters) == [1, 2, 3]
    assert dovecot.count("alice") == 0
    # each command says at most once, in one line, that its log file cannot be written
    for result in (applied, polled):
        assert "Logging error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) <= 1, result.stderr
        assert all(str(log_file) in line and ENOSPC in line for line in lines), result.stderr
    assert polled.stderr, "the poll that lost its log lines says so"

    if trouble == "full":
        # And once there is room again, the log is written as before.
        disk.make_room()
        post(dovecot, {4: letter(4)})
        again = poll(site_file)
        assert again.returncode == 0 and again.stderr == "", again.stderr
        assert "[record 1]" in log_file.read_text()
