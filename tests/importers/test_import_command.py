"""``rpop import`` as an administrator runs it: a file on stdout that
applies as it is, a line on stderr for every option not carried over, and
one clear line (exit 2) for a file it cannot read."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import json_out

EXAMPLES = Path(__file__).parent / "examples"


def test_the_printed_file_applies_and_keeps_what_the_site_had(site, rpop, tmp_path):
    config = site / "rpop.toml"
    before = tmp_path / "before.toml"
    before.write_text('[rpop]\nprocessors = 3\n[[domain]]\nname = "example.org"\naccounts = ["carol"]\n'
                      '[[remote]]\nowner = "carol@example.org"\naccount = "carol"\nhost = "pop.carol.example"\n'
                      'password = "kept"\n')
    assert rpop("-c", config, "apply", before).returncode == 0

    imported = rpop("-c", config, "import", "fetchmailrc", EXAMPLES / "fetchmailrc.manpage")
    assert imported.returncode == 0, imported.stderr
    # every option without an equivalent: a comment in the file and a line on stderr
    for needle in ("protocol pop2", "protocol imap", "'to * here'"):
        assert needle in imported.stdout and needle in imported.stderr
    assert imported.stderr.splitlines()[-1].startswith("rpop: imported 6 mailboxes;")

    accounts = tmp_path / "accounts.toml"
    accounts.write_text(imported.stdout)
    applied = rpop("-c", config, "apply", accounts)
    assert applied.returncode == 0, applied.stderr
    rows = json_out(rpop("-c", config, "status", "--json"))
    assert sorted((r["kind"], r["owner"], r["account"], r["host"]) for r in rows) == [
        ("remote", "carol@example.org", "carol", "pop.carol.example"),
        ("remote", "jjones@example.org", "jones", "pop2.provider.net:3111"),
        ("remote", "jsmith@example.org", "jsmith", "pop.provider.net"),
        ("remote", "jws@example.org", "jsmith", "mail.provider.net"),
        ("remote", "smith@example.org", "jsmith", "pop2.provider.net:3111"),
        ("unified", None, "maildrop", "pop3.provider.net"),
        ("unified", None, "maildrop", "pop4.provider.net"),
    ]
    settings = json_out(rpop("-c", config, "settings", "--json"))
    assert settings["processors"]["value"] == 3

    # importing again and applying changes nothing: one mailbox, one record
    again = rpop("-c", config, "import", "fetchmailrc", EXAMPLES / "fetchmailrc.manpage")
    accounts.write_text(again.stdout)
    assert rpop("-c", config, "apply", accounts, "--dry-run").stdout.startswith("no changes")


def test_uids_of_a_mailbox_nobody_polls_are_named_and_not_stored(site, rpop, tmp_path):
    rc = tmp_path / "fetchmailrc"
    rc.write_text('poll pop.isp.example user alice pass pw is alice here keep\n')
    ids = tmp_path / ".fetchids"
    ids.write_text("alice@pop.isp.example U1\nalice@pop.isp.example U2\nbob@elsewhere.example U3\n")
    result = rpop("-c", site / "rpop.toml", "import", "fetchmailrc", rc, "--uids", ids, "--domain", "example.org")
    assert result.returncode == 0, result.stderr
    assert "UIDs of bob@elsewhere.example not stored" in result.stderr
    assert "stored 2 UIDs of 1 mailbox" in result.stderr


def test_a_file_it_cannot_read_is_one_line_and_exit_2(site, rpop, tmp_path):
    missing = rpop("-c", site / "rpop.toml", "import", "mpoprc", tmp_path / "nope")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "nope: cannot read it" in missing.stderr
    bad = tmp_path / "fetchmailrc"
    bad.write_text("poll a.example\n  user u pasword p\n")
    refused = rpop("-c", site / "rpop.toml", "import", "fetchmailrc", bad)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == f"rpop: {bad}:2: 'pasword' is not a fetchmail option; check the spelling (fetchmailrc(5))\n"
