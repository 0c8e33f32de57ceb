"""``rpop apply`` as a safe operation: a file that is most likely a mistake
is refused before anything changes, and what an apply changes is said, one
line each, before or instead of doing it (``--dry-run``).

Every scenario starts from a site whose record has been polled, so that
its remote mailbox's UIDs are remembered; a refused apply must leave the
records as they were, and a poll after it must retrieve nothing again."""

from __future__ import annotations

import resource
import subprocess
import textwrap
from pathlib import Path

import attrs
import pytest

from tests.cli.conftest import json_out, rpop_command
from tests.cli.test_cli import message, write_decl


@attrs.frozen
class PolledSite:
    """A site whose one record, alice's, has been polled: two messages were
    delivered and, as they stay on the server (``leave = true``), their UIDs
    are remembered."""

    folder: Path
    decl: Path

    @property
    def site_file(self) -> Path:
        return self.folder / "rpop.toml"

    @property
    def mailbox(self) -> str:
        return "alice.smith@127.0.0.1"


@pytest.fixture
def polled_site(site, rpop, threaded_pop3) -> PolledSite:
    server = threaded_pop3([message("a"), message("b")], user="alice.smith", password="pw")
    decl = write_decl(site, server.port)
    assert rpop("-c", site / "rpop.toml", "apply", decl).returncode == 0
    (first,) = json_out(rpop("-c", site / "rpop.toml", "poll", "--once", "--json"))
    assert (first["error"], first["delivered"]) == (None, 2)
    return PolledSite(folder=site, decl=decl)


def stored(rpop, polled: PolledSite) -> tuple[list[dict], str]:
    """The stored configuration as an administrator sees it: the status rows
    (without the times that move on their own) and the exported file."""
    rows = json_out(rpop("-c", polled.site_file, "status", "--json"))
    rows = [{k: v for k, v in row.items() if k not in ("next_due", "delayed")} for row in rows]
    exported = rpop("-c", polled.site_file, "export")
    assert exported.returncode == 0, exported.stderr
    return rows, exported.stdout


def assert_uids_still_remembered(rpop, polled: PolledSite) -> None:
    """Both messages are still on the server: a poll that retrieves neither
    shows their UIDs are still remembered."""
    (again,) = json_out(rpop("-c", polled.site_file, "poll", "--once", "--json"))
    assert (again["error"], again["retrieved"]) == (None, 0), "the remembered UIDs were lost"


def assert_refused_in_one_line(result, *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("rpop: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for text in expected:
        assert text in result.stderr


def lines(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# --- refused: a file that is most likely a mistake ------------------------------


@pytest.mark.parametrize(
    "written, typo, expected",
    [
        ("[[remote]]", "[[remotes]]", "unknown key 'remotes'; did you mean 'remote'?"),
        ("[[domain]]", "[[domains]]", "unknown key 'domains'; did you mean 'domain'?"),
        ("[rpop]", "[rpopp]", "unknown key 'rpopp'; did you mean 'rpop'?"),
        # a setting written above [rpop] belongs to no table
        ("[rpop]", "use_apop = false\n[rpop]", "unknown key 'use_apop'; known keys: domain, remote, rpop, unified"),
    ],
)
def test_a_misspelt_table_is_refused_and_the_records_and_uids_are_kept(polled_site, rpop, written, typo, expected):
    # given a site with a record and remembered UIDs,
    before = stored(rpop, polled_site)
    # when a file with a misspelt top-level name is applied,
    typo_file = polled_site.folder / "typo.toml"
    typo_file.write_text(polled_site.decl.read_text().replace(written, typo))
    result = rpop("-c", polled_site.site_file, "apply", typo_file)
    # then it is refused in one line naming the file and the name, with a suggestion,
    assert_refused_in_one_line(result, f"rpop: {typo_file}: ", expected)
    # and the records and their UIDs are as they were.
    assert stored(rpop, polled_site) == before
    assert_uids_still_remembered(rpop, polled_site)


@pytest.mark.parametrize("text", ["", "# accounts.toml: Alice's mailbox goes here\n\n"])
def test_a_file_that_declares_nothing_is_refused(polled_site, rpop, text):
    before = stored(rpop, polled_site)
    empty = polled_site.folder / "empty.toml"
    empty.write_text(text)
    result = rpop("-c", polled_site.site_file, "apply", empty)
    assert_refused_in_one_line(result, f"rpop: {empty}: declares nothing", "remove every record", "[rpop]")
    assert stored(rpop, polled_site) == before
    assert_uids_still_remembered(rpop, polled_site)


def test_applying_the_site_file_by_mistake_is_refused(polled_site, rpop):
    # `rpop -c rpop.toml apply rpop.toml`: the site file as rpop init wrote it
    # declares no record, so applying it would remove them all.
    before = stored(rpop, polled_site)
    result = rpop("-c", polled_site.site_file, "apply", polled_site.site_file)
    assert_refused_in_one_line(result, f"rpop: {polled_site.site_file}: declares nothing")
    assert stored(rpop, polled_site) == before
    assert_uids_still_remembered(rpop, polled_site)


def test_a_site_file_that_carries_the_declarations_still_applies_itself(site, rpop):
    site_file = site / "rpop.toml"
    declarations = write_decl(site, 1110).read_text()
    site_file.write_text(site_file.read_text() + declarations)
    assert lines(rpop("-c", site_file, "apply", site_file))[-1] == f"applied {site_file}: 1 record"


@pytest.mark.parametrize(
    "new_record, entry",
    [
        ('[[remote]]\nowner = "bob@example.test"\naccount = "bob"\nhost = "pop.isp.test"\n', "[[remote]] #2"),
        ('[[unified]]\naccount = "catchall"\nhost = "pop.isp.test"\n', "[[unified]] #1"),
    ],
)
def test_a_new_mailbox_without_a_password_is_refused_naming_its_entry(polled_site, rpop, new_record, entry):
    before = stored(rpop, polled_site)
    decl = polled_site.decl
    decl.write_text(decl.read_text() + "\n" + new_record)
    result = rpop("-c", polled_site.site_file, "apply", decl)
    assert_refused_in_one_line(
        result, f"rpop: {decl}: {entry} key 'password' is missing", "give password, password_env or password_file"
    )
    assert stored(rpop, polled_site) == before
    assert_uids_still_remembered(rpop, polled_site)


def test_a_stored_mailbox_may_leave_its_password_out(polled_site, rpop):
    # given alice's record applied with its password, when the file is
    # applied again without it, the stored password is kept:
    decl = polled_site.decl
    decl.write_text(decl.read_text().replace('password = "pw"\n', ""))
    assert lines(rpop("-c", polled_site.site_file, "apply", decl)) == ["no changes", f"applied {decl}: 1 record"]
    assert_uids_still_remembered(rpop, polled_site)  # and the poll still logs in


def test_a_state_database_that_cannot_be_written_fails_in_one_line_and_changes_nothing(polled_site, rpop):
    # given a site whose state database cannot grow (the kernel refuses to
    # write past a file-size limit, as a full disk refuses),
    before = stored(rpop, polled_site)
    many = polled_site.folder / "many.toml"
    many.write_text(polled_site.decl.read_text() + "".join(
        f'\n[[remote]]\nowner = "bob@example.test"\naccount = "bob{n:04d}"\nhost = "pop{n}.isp.test"\npassword = "pw"\n'
        for n in range(1000)
    ))
    limit = 64 * 1024

    def cannot_write_past_the_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # when a file is applied,
    result = subprocess.run(
        [rpop_command(), "-c", str(polled_site.site_file), "apply", str(many)],
        capture_output=True, text=True, timeout=120, preexec_fn=cannot_write_past_the_limit,
    )
    # then it fails in one line naming the database, not as a bug of rpop,
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("rpop: "), result.stderr
    assert "rpop.sqlite" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    # and nothing changed.
    assert stored(rpop, polled_site) == before
    assert_uids_still_remembered(rpop, polled_site)


# --- the change report ---------------------------------------------------------


def test_reapplying_the_same_file_says_no_changes(polled_site, rpop):
    # The password is given again: sealing it anew must not count as a change.
    decl = polled_site.decl
    assert lines(rpop("-c", polled_site.site_file, "apply", decl)) == ["no changes", f"applied {decl}: 1 record"]


def changing_file(polled: PolledSite):
    """A file that changes a setting, a domain's accounts and alice's
    record (password and leave), adds a domain, bob's record and a unified
    record."""
    changed = polled.folder / "changed.toml"
    changed.write_text(
        polled.decl.read_text()
        .replace("allow_self_poll = true", "allow_self_poll = true\nuse_apop = false")
        .replace('accounts = ["alice", "bob", "postmaster"]', 'accounts = ["alice", "bob", "carol", "postmaster"]')
        .replace('password = "pw"', 'password = "Brand-New-Secret"')
        .replace("leave = true", "leave = false")
        + textwrap.dedent("""
            [[domain]]
            name = "other.test"
            accounts = ["dave"]

            [[remote]]
            owner = "bob@example.test"
            account = "Bob"
            host = "POP.isp.test:995"
            tls = true
            password_env = "BOB_PASSWORD"

            [[unified]]
            account = "catchall"
            host = "pop.other.test"
            password_file = "catchall.password"
        """)
    )
    return changed


def test_apply_reports_each_change_in_one_line_without_a_secret(polled_site, rpop):
    changed = changing_file(polled_site)
    assert lines(rpop("-c", polled_site.site_file, "apply", changed)) == [
        "changed settings: use_apop",
        "changed domain example.test: accounts",
        "added domain other.test",
        f"changed remote {polled_site.mailbox} for alice@example.test: password, leave",
        "added remote Bob@pop.isp.test for bob@example.test",
        "added unified catchall@pop.other.test",
        f"applied {changed}: 3 records",
    ]

    # A record the file no longer names is removed, and said so; a record
    # whose password moves to the environment names both keys.
    fewer = polled_site.folder / "fewer.toml"
    fewer.write_text(changed.read_text().split("[[remote]]\nowner = \"bob@example.test\"")[0]
                     .replace('password = "Brand-New-Secret"', 'password_env = "ALICE_PASSWORD"'))
    assert lines(rpop("-c", polled_site.site_file, "apply", fewer)) == [
        f"changed remote {polled_site.mailbox} for alice@example.test: password, password_env",
        "removed remote Bob@pop.isp.test for bob@example.test",
        "removed unified catchall@pop.other.test",
        f"applied {fewer}: 1 record",
    ]


def test_dry_run_prints_what_apply_would_change_and_changes_nothing(polled_site, rpop):
    before = stored(rpop, polled_site)
    changed = changing_file(polled_site)
    dry = lines(rpop("-c", polled_site.site_file, "apply", "--dry-run", changed))
    assert dry[-1] == f"dry run: nothing changed; applying {changed} would leave 3 records"
    assert stored(rpop, polled_site) == before
    assert_uids_still_remembered(rpop, polled_site)

    applied = lines(rpop("-c", polled_site.site_file, "apply", changed))
    assert dry[:-1] == applied[:-1] and len(applied) == 7


def test_removing_every_record_on_purpose_takes_a_file_that_says_so(polled_site, rpop):
    # [rpop] alone declares the module settings and nothing else: no domain,
    # no record.
    only_settings = polled_site.folder / "only-settings.toml"
    only_settings.write_text("[rpop]\nallow_self_poll = true\n")
    assert lines(rpop("-c", polled_site.site_file, "apply", only_settings)) == [
        "removed domain example.test",
        f"removed remote {polled_site.mailbox} for alice@example.test",
        f"applied {only_settings}: 0 records",
    ]
    assert json_out(rpop("-c", polled_site.site_file, "status", "--json")) == []
