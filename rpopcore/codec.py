"""Turning records, settings and the directory into JSON-able dicts and back.
Every state store uses this one codec, so stores differ only in where they
keep the text, and a record read back is equal to the record written."""

from __future__ import annotations

import attrs

from rpopcore.model import Directory, Domain, ModuleSettings, RecordKind, RemoteRecord, SecretRef


def record_to_dict(record: RemoteRecord) -> dict:
    """A record as a JSON-able dict, without its id (the store keeps that)."""
    data = attrs.asdict(record, recurse=False)
    data["kind"] = record.kind.value
    data["secret"] = {"source": record.secret.source, "value": record.secret.value}
    data["options"] = dict(record.options)
    del data["id"]
    return data


def record_from_dict(data: dict, record_id: int | None) -> RemoteRecord:
    """The record :func:`record_to_dict` wrote, with the store's id; keys
    of fields that no longer exist are passed over."""
    data = dict(data)
    data["kind"] = RecordKind(data["kind"])
    data["secret"] = SecretRef(**data["secret"])
    fields = {f.name for f in attrs.fields(RemoteRecord)}
    return RemoteRecord(id=record_id, **{k: v for k, v in data.items() if k in fields})


def settings_to_dict(settings: ModuleSettings) -> dict:
    """The module settings as a JSON-able dict."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(settings).items()}


def settings_from_dict(data: dict) -> ModuleSettings:
    """The settings :func:`settings_to_dict` wrote; unknown keys passed over."""
    fields = {f.name for f in attrs.fields(ModuleSettings)}
    return ModuleSettings(**{k: v for k, v in data.items() if k in fields})


def directory_to_dict(directory: Directory) -> dict:
    """The local domains as a JSON-able dict."""
    return {
        "domains": [
            {
                "name": d.name,
                "main": d.main,
                "accounts": sorted(d.accounts),
                "aliases": dict(d.aliases),
                "ip_addresses": list(d.ip_addresses),
                "users_may_poll": d.users_may_poll,
                "account_may_poll": dict(d.account_may_poll),
            }
            for d in directory.domains
        ]
    }


def directory_from_dict(data: dict) -> Directory:
    """The directory :func:`directory_to_dict` wrote."""
    return Directory(domains=tuple(Domain(**d) for d in data.get("domains", ())))
