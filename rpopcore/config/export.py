"""Writing the stored configuration back out as a declarative file
(``rpop export``).  Secrets stay out: a stored password is not exported
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
from rpopcore.model import Directory, ModuleSettings, RemoteRecord
from rpopcore.options import RecordOption


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
    lines = ["# rpop configuration, exported. Stored passwords are not included;", "# applying this file keeps them.", "", "[rpop]"]
    for field in attrs.fields(ModuleSettings):
        lines.append(f"{field.name} = {_value(SETTINGS_KEYS[field.name].show(getattr(settings, field.name)))}")
    for domain in directory.domains:
        lines += ["", "[[domain]]", f"name = {_value(domain.name)}", f"main = {_value(domain.main)}",
                  f"accounts = {_value(sorted(domain.accounts))}", f"aliases = {_value(dict(domain.aliases))}",
                  f"ip_addresses = {_value(list(domain.ip_addresses))}"]
    for record in records:
        lines += ["", f"[[{record.kind.value}]]", f"# id {record.id}"]
        lines += _record_lines(record, options)
    return "\n".join(lines) + "\n"


def _record_lines(record: RemoteRecord, options: Mapping[str, RecordOption]) -> list[str]:
    lines = []
    for name, key in record_keys(record.kind, options).items():
        if name in PASSWORD_KEYS.values():
            if name == PASSWORD_KEYS.get(record.secret.source) and record.secret.source != "stored":
                lines.append(f"{name} = {_value(record.secret.value)}")
            continue
        if name in RECORD_KEYS:
            value = key.show(getattr(record, name))
            if value is not None:
                lines.append(f"{name} = {_value(value)}")
            continue
        if name not in record.options:
            continue
        option = options[name]
        public = option.public(record.options[name])
        hidden = [k for k in (option.secret_keys or ("",)) if option.sealed(record.options[name]).get(k)]
        note = f"  # {', '.join(k or name for k in hidden)}: stored, not exported" if hidden else ""
        if public is None:
            lines.append(f"# {name}{note[1:]}")
        else:
            lines.append(f"{name} = {_value(public)}{note}")
    for name in record.options:
        if name not in options:
            lines.append(f"# {name}: kept in the store; no installed plugin declares this key, so it is not exported")
    return lines
