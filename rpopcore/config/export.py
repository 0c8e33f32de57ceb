"""The stored configuration as a declaration: tables with the declarative
file's key names (:func:`settings_table`, :func:`domain_table`,
:func:`record_table`), written out as a file by ``rpop export`` and sent as
JSON by the web API.  Secrets stay out: a stored password is not exported
(applying the file keeps it, see :meth:`rpopcore.service.Site.apply`), while
``password_env`` and ``password_file`` references are; nor are the secret
parts of the keys plugins add.

Every key is written from its one definition (:data:`SETTINGS_KEYS`,
:data:`RECORD_KEYS`, a plugin's :class:`rpopcore.options.RecordOption`), so
what is written reads back the same."""

from __future__ import annotations

import json
from typing import Mapping

import attrs

from rpopcore.config.declarative import PASSWORD_KEYS, RECORD_KEYS, SETTINGS_KEYS, record_keys
from rpopcore.model import Directory, Domain, ModuleSettings, RecordKind, RemoteRecord
from rpopcore.options import RecordOption


def settings_table(settings: ModuleSettings) -> dict:
    """``[rpop]``: every module setting as the file writes it (durations as ``"10m"``)."""
    table = {}
    for field in attrs.fields(ModuleSettings):
        value = SETTINGS_KEYS[field.name].show(getattr(settings, field.name))
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


def record_table(record: RemoteRecord, options: Mapping[str, RecordOption] = {}) -> dict:
    """One ``[[remote]]`` or ``[[unified]]``, without its stored secrets
    (applying it back keeps them): the core's keys, then those of installed
    plugins, each from its one definition."""
    table: dict = {}
    for name, key in record_keys(record.kind, options).items():
        if name in PASSWORD_KEYS.values():
            if name == PASSWORD_KEYS.get(record.secret.source) and record.secret.source != "stored":
                table[name] = record.secret.value
        elif name in RECORD_KEYS:
            value = key.show(getattr(record, name))
            if value is not None:
                table[name] = value
        elif name in record.options:
            public = options[name].public(record.options[name])
            if public is not None:
                table[name] = public
    return table


def declaration(settings: ModuleSettings, directory: Directory, records: list[RemoteRecord],
                options: Mapping[str, RecordOption] = {}) -> dict:
    """The whole stored configuration as the tables of a declarative file."""
    return {
        "rpop": settings_table(settings),
        "domain": [domain_table(d) for d in directory.domains],
        "remote": [record_table(r, options) for r in records if r.kind is RecordKind.REMOTE],
        "unified": [record_table(r, options) for r in records if r.kind is RecordKind.UNIFIED],
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


def export(
    settings: ModuleSettings, directory: Directory, records: list[RemoteRecord],
    options: Mapping[str, RecordOption] = {},
) -> str:
    """The stored configuration as the text of a declarative file."""
    lines = ["# rpop configuration, exported. Stored passwords are not included;", "# applying this file keeps them.", "", "[rpop]"]
    lines += [f"{k} = {_value(v)}" for k, v in settings_table(settings).items()]
    for domain in directory.domains:
        lines += ["", "[[domain]]", *(f"{k} = {_value(v)}" for k, v in domain_table(domain).items())]
    for record in records:
        lines += ["", f"[[{record.kind.value}]]", f"# id {record.id}", *_record_lines(record, options)]
    return "\n".join(lines) + "\n"


def _record_lines(record: RemoteRecord, options: Mapping[str, RecordOption]) -> list[str]:
    """A record's table as lines, with a comment for each secret a plugin's
    key holds (stored, not exported) and each stored key no installed plugin
    declares."""
    table = record_table(record, options)
    lines = []
    for name, value in table.items():
        line = f"{name} = {_value(value)}"
        if name in options:
            option = options[name]
            hidden = [k for k in (option.secret_keys or ("",)) if option.sealed(record.options[name]).get(k)]
            if hidden:
                line += f"  # {', '.join(k or name for k in hidden)}: stored, not exported"
        lines.append(line)
    for name, option in options.items():
        if name in record.options and name not in table:
            hidden = [k for k in (option.secret_keys or ("",)) if option.sealed(record.options[name]).get(k)]
            lines.append(f"# {name}: {', '.join(k or name for k in hidden) or name}: stored, not exported")
    for name in record.options:
        if name not in options:
            lines.append(f"# {name}: kept in the store; no installed plugin declares this key, so it is not exported")
    return lines
