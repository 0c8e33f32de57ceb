"""A plugin adds a record key through rpop_record_options, and every reader
and writer of records handles it from that one declaration: the declarative
reader checks it and seals its secrets, export and status show its public
part only, a later apply keeps its stored secret, rotation re-seals it."""

from __future__ import annotations

import pytest

from rpopcore.api import ConfigError, RecordOption, SecretRef, hookimpl, non_empty_string
from rpopcore.secrets import Keyring
from rpopcore.testing import Message, poll_one, remote


def vault_table(value):
    if not isinstance(value, dict) or set(value) - {"path", "token"} or "path" not in value:
        raise ValueError('expected a table: vault = { path = "...", token = "..." }')
    return {"path": non_empty_string(value["path"]), "token": value.get("token", "")}


VAULT = RecordOption(name="vault", convert=vault_table, help="where the password is kept",
                     kinds=("remote",), secret_keys=("token",), required_secret_keys=("token",), credential=True)


class Vault:
    @hookimpl
    def rpop_record_options(self):
        return [VAULT]


def declared(server, **vault):
    table = ", ".join(f'{k} = "{v}"' for k, v in {"path": "kv/alice", **vault}.items())
    return remote(server.host, server.port, password="pass") + f"vault = {{ {table} }}\n"


async def test_a_plugin_key_is_checked_sealed_and_exported_without_its_secret(pop3_server, rpop_site, tmp_path):
    server = await pop3_server([Message("a", b"Subject: a\r\n\r\nbody\r\n")])
    site = await rpop_site(declared(server, token="t0ken-s3cret"), plugins=[Vault()], delivery="capture")

    (record,) = await site.store.list_records()
    stored = record.options["vault"]
    assert stored["path"] == "kv/alice" and stored["token"]["source"] == "stored"
    assert site.keyring.reveal(SecretRef(**stored["token"])) == "t0ken-s3cret"
    exported = await site.export()
    assert 'vault = { path = "kv/alice" }  # token: stored, not exported' in exported
    assert "t0ken-s3cret" not in exported and stored["token"]["value"] not in exported
    (row,) = await site.status()
    assert row["options"] == {"vault": {"path": "kv/alice"}}
    assert (await poll_one(site)).error is None


async def test_a_file_that_leaves_the_secret_out_keeps_the_stored_one_and_rotation_reseals_it(
        pop3_server, rpop_site, tmp_path):
    server = await pop3_server([])
    site = await rpop_site(declared(server, token="t0ken-s3cret"), plugins=[Vault()], delivery="capture")
    (before,) = await site.store.list_records()
    decl = tmp_path / "again.toml"
    decl.write_text((tmp_path / "site1" / "decl.toml").read_text().replace(', token = "t0ken-s3cret"', ""))

    report = await site.apply(decl)

    assert report.changes == ()
    (after,) = await site.store.list_records()
    assert after.options == before.options
    assert await site.rotate_secrets() == 2  # the password and the token
    (rotated,) = await site.store.list_records()
    assert rotated.options["vault"]["token"] != before.options["vault"]["token"]
    assert Keyring(site.config.key_file).reveal(SecretRef(**rotated.options["vault"]["token"])) == "t0ken-s3cret"


async def test_a_new_record_without_the_required_secret_is_refused(pop3_server, rpop_site):
    server = await pop3_server([])
    with pytest.raises(ConfigError, match=r"\[\[remote\]\] #1 key 'vault': 'token' is missing and none is stored"):
        await rpop_site(declared(server), plugins=[Vault()])


async def test_a_bad_value_names_the_key(pop3_server, rpop_site):
    server = await pop3_server([])
    with pytest.raises(ConfigError, match=r"\[\[remote\]\] #1 key 'vault': expected a table"):
        await rpop_site(remote(server.host, server.port) + 'vault = "kv/alice"\n', plugins=[Vault()])


async def test_without_the_plugin_the_key_is_unknown(pop3_server, rpop_site):
    server = await pop3_server([])
    with pytest.raises(ConfigError, match="unknown key 'vault'"):
        await rpop_site(declared(server, token="x"))


async def test_two_plugins_declaring_one_key_is_an_error_naming_both(rpop_site):
    class Again:
        @hookimpl
        def rpop_record_options(self):
            return [RecordOption(name="vault", convert=str, help="another vault")]

    with pytest.raises(ConfigError, match="'vault' is declared by both a plugin registered by hand and a plugin registered by hand; uninstall"):
        await rpop_site("", plugins=[Vault(), Again()])


async def test_a_plugin_cannot_redeclare_a_core_key(rpop_site):
    class Shadow:
        @hookimpl
        def rpop_record_options(self):
            return [RecordOption(name="host", convert=str, help="a host of my own")]

    with pytest.raises(ConfigError, match="'host' is declared by both the rpop core and a plugin registered by hand"):
        await rpop_site("", plugins=[Shadow()])
