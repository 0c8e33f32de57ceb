"""The stored configuration as a declaration: tables with the declarative
file's key names (:func:`settings_table`, :func:`domain_table`,
:func:`record_table`), written out as a file by ``rpop export`` and sent as
JSON by the web API.  Secrets stay out: a stored password is not exported
(applying the file keeps it, see :meth:`rpopcore.service.Site.apply`), while
``password_env`` and ``password_file`` references are."""

from __future__ import annotations

import json

import attrs

from rpopcore.durations import format_duration
from rpopcore.model import Directory, Domain, ModuleSettings, RecordKind, RemoteRecord

_DURATIONS = {"delay_failed_hosts", "delay_failed_accounts", "min_poll_period_for_users", "timeout"}


def settings_table(settings: ModuleSettings) -> dict:
    """``[rpop]``: every module setting, durations written as ``"10m"``."""
    table = {}
    for field in attrs.fields(ModuleSettings):
        value = getattr(settings, field.name)
        if field.name in _DURATIONS:
            value = format_duration(value)
        table[field.name] = list(value) if isinstance(value, tuple) else value
    return table


def domain_table(domain: Domain) -> dict:
    """One ``[[domain]]``."""
    return {
        "name": domain.name,
        "main": domain.main,
        "accounts": sorted(domain.accounts),
        "aliases": dict(domain.aliases),
        "ip_addresses": list(domain.ip_addresses),
        "users_may_poll": domain.users_may_poll,
        "account_may_poll": dict(domain.account_may_poll),
    }


def record_table(record: RemoteRecord) -> dict:
    """One ``[[remote]]`` or ``[[unified]]``, without its stored secrets;
    applying it back keeps them."""
    table: dict = {}
    if record.kind is RecordKind.REMOTE:
        table["owner"] = record.owner
    table["poll_every"] = "disabled" if record.poll_every is None else format_duration(record.poll_every)
    table["account"] = record.account
    table["host"] = record.host
    if record.secret.source == "env":
        table["password_env"] = record.secret.value
    elif record.secret.source == "file":
        table["password_file"] = record.secret.value
    for name in ("leave", "apop", "tls", "tls_verify", "ca_file", "server_name", "starttls", "auth", "set_by"):
        table[name] = getattr(record, name)
    if record.timeout is not None:
        table["timeout"] = format_duration(record.timeout)
    if record.kind is RecordKind.UNIFIED:
        table["special_field"] = record.special_field
        table["dedupe"] = record.dedupe
    oauth2 = record.options.get("oauth2")
    if oauth2:
        table["oauth2"] = {k: v for k, v in oauth2.items() if not isinstance(v, dict)}
    return table


def declaration(settings: ModuleSettings, directory: Directory, records: list[RemoteRecord]) -> dict:
    """The whole stored configuration as the tables of a declarative file."""
    return {
        "rpop": settings_table(settings),
        "domain": [domain_table(d) for d in directory.domains],
        "remote": [record_table(r) for r in records if r.kind is RecordKind.REMOTE],
        "unified": [record_table(r) for r in records if r.kind is RecordKind.UNIFIED],
    }


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is a JSON string


def _lines(table: dict) -> list[str]:
    lines = []
    for key, value in table.items():
        line = f"{key} = {_value(value)}"
        if key == "oauth2":
            line += "  # client_secret and refresh_token are stored, not exported"
        lines.append(line)
    return lines


def export(settings: ModuleSettings, directory: Directory, records: list[RemoteRecord]) -> str:
    """The stored configuration as the text of a declarative file."""
    lines = ["# rpop configuration, exported. Stored passwords are not included;", "# applying this file keeps them.", "", "[rpop]"]
    lines += _lines(settings_table(settings))
    for domain in directory.domains:
        lines += ["", "[[domain]]", *_lines(domain_table(domain))]
    for record in records:
        lines += ["", f"[[{record.kind.value}]]", f"# id {record.id}", *_lines(record_table(record))]
    return "\n".join(lines) + "\n"
