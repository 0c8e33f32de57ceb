"""Writing the stored configuration back out as a declarative file
(``rpop export``).  Secrets stay out: a stored password is not exported
(applying the file keeps it, see :meth:`rpopcore.service.Site.apply`), while
``password_env`` and ``password_file`` references are."""

from __future__ import annotations

import json

import attrs

from rpopcore.durations import format_duration
from rpopcore.model import Directory, ModuleSettings, RecordKind, RemoteRecord

_DURATIONS = {"delay_failed_hosts", "delay_failed_accounts", "min_poll_period_for_users", "timeout"}


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


def export(settings: ModuleSettings, directory: Directory, records: list[RemoteRecord]) -> str:
    lines = ["# rpop configuration, exported. Stored passwords are not included;", "# applying this file keeps them.", "", "[rpop]"]
    for field in attrs.fields(ModuleSettings):
        value = getattr(settings, field.name)
        lines.append(f"{field.name} = {_value(format_duration(value) if field.name in _DURATIONS else value)}")
    for domain in directory.domains:
        lines += ["", "[[domain]]", f"name = {_value(domain.name)}", f"main = {_value(domain.main)}",
                  f"accounts = {_value(sorted(domain.accounts))}", f"aliases = {_value(dict(domain.aliases))}",
                  f"ip_addresses = {_value(list(domain.ip_addresses))}"]
    for record in records:
        lines += ["", f"[[{record.kind.value}]]", f"# id {record.id}"]
        if record.kind is RecordKind.REMOTE:
            lines.append(f"owner = {_value(record.owner)}")
        every = "disabled" if record.poll_every is None else format_duration(record.poll_every)
        lines += [f"poll_every = {_value(every)}", f"account = {_value(record.account)}", f"host = {_value(record.host)}"]
        if record.secret.source == "env":
            lines.append(f"password_env = {_value(record.secret.value)}")
        elif record.secret.source == "file":
            lines.append(f"password_file = {_value(record.secret.value)}")
        for name in ("leave", "apop", "tls", "tls_verify", "ca_file", "server_name", "starttls", "auth", "set_by"):
            lines.append(f"{name} = {_value(getattr(record, name))}")
        if record.timeout is not None:
            lines.append(f"timeout = {_value(format_duration(record.timeout))}")
        if record.kind is RecordKind.UNIFIED:
            lines += [f"special_field = {_value(record.special_field)}", f"dedupe = {_value(record.dedupe)}"]
        oauth2 = record.options.get("oauth2")
        if oauth2:
            public = {k: v for k, v in oauth2.items() if not isinstance(v, dict)}
            lines.append(f"oauth2 = {_value(public)}  # client_secret and refresh_token are stored, not exported")
    return "\n".join(lines) + "\n"
