"""Declarative files: module settings (``[rpop]``), local domains
(``[[domain]]``) and remote mailboxes (``[[remote]]`` per user,
``[[unified]]`` domain-wide), named after the seed's fields.

Reading a file produces a :class:`Declaration`: values only, checked, with
passwords already sealed by the site key.  Applying it is
:meth:`rpopcore.service.Site.apply`.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Callable, Iterable, Mapping

import attrs

from rpopcore import activity, errors
from rpopcore.config.schema import (
    Key,
    boolean,
    duration,
    integer,
    non_empty_string,
    one_of,
    poll_period,
    REQUIRED,
    read_table,
    read_toml,
    string,
    string_list,
    string_map,
)
from rpopcore.config.site import SITE_TABLES
from rpopcore.model import Directory, Domain, ModuleSettings, RecordKind, RemoteRecord, SecretRef, check_host
from rpopcore.model import LOG_LEVELS
from rpopcore.secrets import Keyring
from rpopcore.selfpoll import is_loopback_host

SETTINGS_KEYS = {
    "processors": Key(integer),
    "delay_failed_hosts": Key(duration),
    "delay_failed_accounts": Key(duration),
    "min_poll_period_for_users": Key(duration),
    "max_accounts_per_user": Key(integer),
    "use_apop": Key(boolean),
    "allow_self_poll": Key(boolean),
    "own_addresses": Key(string_list),
    "default_ip_address": Key(string),
    "use_domain_ip_addresses": Key(boolean),
    "activity_schedule": Key(lambda value: _checked(string_list(value), activity.parse_schedule)),
    "time_zone": Key(lambda value: _checked(non_empty_string(value), activity.zone)),
    "log_level": Key(one_of(*LOG_LEVELS)),
    "timeout": Key(duration),
    "max_status_line": Key(integer),
}

DOMAIN_KEYS = {
    "name": Key(non_empty_string),
    "main": Key(boolean, False),
    "accounts": Key(string_list, ()),
    "aliases": Key(string_map, {}),
    "ip_addresses": Key(string_list, ()),
    "users_may_poll": Key(boolean, False),
    "account_may_poll": Key(lambda value: _boolean_map(value), {}),
}


def _boolean_map(value) -> dict[str, bool]:
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        raise ValueError(f"expected a table of true or false per account, like {{ bob = false }}, got {value!r}")
    return dict(value)

_COMMON_RECORD_KEYS = {
    "poll_every": Key(poll_period, 600),
    "account": Key(non_empty_string),
    "host": Key(non_empty_string),
    "password": Key(string, None),
    "password_env": Key(non_empty_string, None),
    "password_file": Key(non_empty_string, None),
    "leave": Key(boolean, True),
    "apop": Key(boolean, False),
    "tls": Key(boolean, False),
    "tls_verify": Key(boolean, True),
    "ca_file": Key(string, ""),
    "server_name": Key(string, ""),
    "oauth2": Key(lambda value: _oauth2_table(value), None),
    "starttls": Key(one_of("auto", "required", "never"), "auto"),
    "auth": Key(non_empty_string, "auto"),
    "timeout": Key(duration, None),
    "set_by": Key(one_of("admin", "user"), "admin"),
}
REMOTE_KEYS = {"owner": Key(non_empty_string), **_COMMON_RECORD_KEYS}
UNIFIED_KEYS = {**_COMMON_RECORD_KEYS, "special_field": Key(string, ""), "dedupe": Key(boolean, True)}


def _token_endpoint(value) -> str:
    """HTTPS, or plain HTTP only to this machine (a test or a local proxy):
    refresh tokens and client secrets must not cross a network in clear."""
    url = urllib.parse.urlsplit(non_empty_string(value))
    host = url.hostname or ""
    if url.scheme == "https" and host or (url.scheme == "http" and host and is_loopback_host(host)):
        return value.strip()
    raise ValueError(f"{value!r} is not an https:// URL (plain http:// is allowed only to 127.0.0.1 or ::1)")


OAUTH2_KEYS = {
    "token_endpoint": Key(_token_endpoint),
    "client_id": Key(non_empty_string),
    "client_secret": Key(string, ""),
    "refresh_token": Key(string, ""),
    "scope": Key(string, ""),
}
OAUTH2_SECRETS = ("client_secret", "refresh_token")


def _oauth2_table(value):
    if not isinstance(value, dict):
        raise ValueError("expected a table: oauth2 = { token_endpoint = \"...\", client_id = \"...\", refresh_token = \"...\" }")
    unknown = sorted(set(value) - set(OAUTH2_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; known keys: {', '.join(OAUTH2_KEYS)}")
    missing = [k for k, key in OAUTH2_KEYS.items() if key.default is REQUIRED and k not in value]
    # refresh_token may be left out only to keep the one already stored.
    if missing:
        raise ValueError(f"{missing[0]!r} is missing")
    return {k: OAUTH2_KEYS[k].convert(v) for k, v in value.items()}


def _checked(value, check):
    check(value)
    return value


def _as_given(value):
    return value


#: The top level of a declarative file.  Each table is checked by its own
#: schema further on; this one catches a misspelt table (``[[remotes]]``),
#: which would otherwise read as "no records" and remove them all.
DECLARATION_TABLES = {
    "rpop": Key(_as_given, {}),
    "domain": Key(_as_given, []),
    "remote": Key(_as_given, []),
    "unified": Key(_as_given, []),
}

#: The site file's own tables, passed over when the site file itself is
#: applied (it may carry the declarative tables too).
_SITE_FILE_TABLES = {name: Key(_as_given, None) for name in SITE_TABLES}


@attrs.frozen
class Declaration:
    """A declarative file, read and checked.  ``entries`` says where each
    record is declared, by its mailbox (``"[[remote]] #2"``), so that a
    check made later, against the stored records, can name it."""

    settings: ModuleSettings
    directory: Directory
    records: tuple[RemoteRecord, ...]
    entries: Mapping[str, str] = attrs.field(factory=dict)


def read_declaration(
    path: Path,
    keyring: Keyring,
    auth_names: Iterable[str],
    route: Callable[[str, Directory], str | None],
    site_file: bool = False,
) -> Declaration:
    """Read and check a declarative file.

    :param auth_names: the mechanism names installed plugins provide, so a
        typo in ``auth`` is caught now rather than at the first poll.
    :param route: the routing hook, to check that each owner is a local
        account.
    :param site_file: the file is the site file, whose own tables
        (``[delivery]``, ``[state]``...) are not declarations.
    """
    path = Path(path).absolute()
    doc = read_toml(path)
    read_table(doc, DECLARATION_TABLES | (_SITE_FILE_TABLES if site_file else {}), str(path))
    if not any(name in doc for name in DECLARATION_TABLES):
        # Applying it would remove every record and its UIDs: an empty file
        # is far more often a mistake (a wrong path, a truncated copy) than
        # a wish.  An explicit [rpop] table says the wish.
        raise errors.ConfigError(
            f"{path}: declares nothing (no [rpop], [[domain]], [[remote]] or [[unified]]), and applying it would "
            "remove every record; check that it is the right file (to remove every record on purpose, apply a "
            "file with just [rpop])"
        )
    declared = {name: value for name, value in doc.items() if name in DECLARATION_TABLES}
    return check_declaration(declared, str(path), path.parent, keyring, auth_names, route)


def check_declaration(
    doc: Mapping,
    origin: str,
    base: Path,
    keyring: Keyring,
    auth_names: Iterable[str],
    route: Callable[[str, Directory], str | None],
) -> Declaration:
    """Check a declaration already parsed into tables -- a TOML file's, or
    one a web page or the JSON API built -- with exactly the rules of a
    file.  ``origin`` begins each error (a file's path); ``base`` is the
    folder relative ``password_file`` and ``ca_file`` paths start from.  An
    error about one record carries ``entry`` = ``(kind, index)``."""
    tables = read_table(doc, DECLARATION_TABLES, origin)
    settings = _settings(tables["rpop"], f"{origin}: [rpop]")
    directory = _directory(tables["domain"], origin)
    records: list[RemoteRecord] = []
    seen: dict[str, str] = {}
    for kind in ("remote", "unified"):
        entries = tables[kind]
        if not isinstance(entries, list):
            raise errors.ConfigError(f"{origin}: write each record as [[{kind}]], not [{kind}]")
        for index, entry in enumerate(entries, 1):
            where = f"{origin}: [[{kind}]] #{index}"
            record = check_record(kind, entry, where, base, keyring, auth_names, directory, route)
            if record.mailbox in seen:
                exc = errors.ConfigError(f"{where}: the same mailbox as {seen[record.mailbox]}; remove one",
                                         field="account")
                exc.entry = (kind, index)
                raise exc
            seen[record.mailbox] = f"[[{kind}]] #{index}"
            records.append(record)
    return Declaration(settings=settings, directory=directory, records=tuple(records), entries=seen)


def check_record(
    kind: str,
    entry,
    where: str,
    base: Path,
    keyring: Keyring,
    auth_names: Iterable[str],
    directory: Directory,
    route: Callable[[str, Directory], str | None],
) -> RemoteRecord:
    """Check one ``[[remote]]`` or ``[[unified]]`` entry (``kind``) with the
    rules of a file; ``where`` begins each error, whose ``entry`` is
    ``(kind, N)`` when ``where`` ends in ``#N``."""
    try:
        values = read_table(entry, REMOTE_KEYS if kind == "remote" else UNIFIED_KEYS, where)
        return _record(kind, values, where, base, keyring, {"auto", *auth_names}, directory, route)
    except errors.ConfigError as exc:
        number = where.rpartition("#")[2]
        exc.entry = (kind, int(number)) if number.isdigit() else (kind, 1)
        raise


def _settings(table, where: str) -> ModuleSettings:
    values = read_table(table, _optional(SETTINGS_KEYS), where)
    try:
        return ModuleSettings(**values)
    except ValueError as exc:  # a validator of ModuleSettings: "processors must not be negative"
        field = str(exc).split(" ", 1)[0]
        raise errors.ConfigError(f"{where} key '{field}': {exc}", field=field if field in values else None) from None


def _optional(keys: dict[str, Key]) -> dict[str, Key]:
    """Settings not given keep their defaults (the ModuleSettings defaults)."""
    defaults = ModuleSettings()
    return {name: Key(key.convert, getattr(defaults, name)) for name, key in keys.items()}


def _directory(entries, path: str) -> Directory:
    if not isinstance(entries, list):
        raise errors.ConfigError(f"{path}: write each domain as [[domain]], not [domain]")
    domains = []
    names = set()
    for index, entry in enumerate(entries, 1):
        where = f"{path}: [[domain]] #{index}"
        values = read_table(entry, DOMAIN_KEYS, where)
        name = values["name"].lower()
        if name in names:
            raise errors.ConfigError(f"{where}: domain '{name}' is declared twice")
        names.add(name)
        accounts = {a.lower() for a in values["accounts"]}
        for alias, target in values["aliases"].items():
            if target.lower() not in accounts:
                raise errors.ConfigError(
                    f"{where}: key 'aliases': alias '{alias}' points to '{target}', which is not in accounts"
                )
            if alias.lower() in accounts:
                raise errors.ConfigError(f"{where}: key 'aliases': '{alias}' is both an account and an alias")
        for account in values["account_may_poll"]:
            if account.lower() not in accounts:
                raise errors.ConfigError(
                    f"{where}: key 'account_may_poll': '{account}' is not in accounts; name accounts of this domain",
                    field="account_may_poll",
                )
        domains.append(Domain(**values))
    mains = [d for d in domains if d.main]
    if len(mains) > 1:
        raise errors.ConfigError(
            f"{path}: [[domain]]: {', '.join(d.name for d in mains)} are all main = true; exactly one domain is the main domain"
        )
    if not mains and len(domains) > 1:
        raise errors.ConfigError(f"{path}: [[domain]]: no domain has main = true; mark exactly one as the main domain")
    if not mains and domains:
        domains[0] = attrs.evolve(domains[0], main=True)
    return Directory(domains=tuple(domains))


def _record(kind, values, where, base: Path, keyring: Keyring, auth_names, directory, route) -> RemoteRecord:
    given = [k for k in ("password", "password_env", "password_file") if values[k] is not None]
    if len(given) > 1:
        raise errors.ConfigError(f"{where}: give only one of {', '.join(given)}", field=given[-1])
    if values["password"] is not None:
        secret = keyring.seal(values["password"])
    elif values["password_env"] is not None:
        secret = SecretRef("env", values["password_env"])
    elif values["password_file"] is not None:
        secret = SecretRef("file", str(base / values["password_file"]))
    else:
        secret = SecretRef()
    try:
        check_host(values["host"])
    except ValueError as exc:
        raise errors.ConfigError(f"{where}: key 'host': {exc}", field="host") from None
    if values["auth"] not in auth_names:
        raise errors.ConfigError(
            f"{where}: key 'auth': no installed plugin provides {values['auth']!r}; "
            f"choose one of {', '.join(sorted(auth_names))}",
            field="auth",
        )
    ca_file = values["ca_file"]
    if ca_file:
        ca_path = base / ca_file
        if not ca_path.is_file():
            raise errors.ConfigError(
                f"{where}: key 'ca_file': {ca_path} is not a readable file; give a PEM CA bundle", field="ca_file"
            )
        ca_file = str(ca_path)
    owner = None
    if kind == "remote":
        owner = route(values["owner"], directory)
        if owner is None:
            raise errors.ConfigError(
                f"{where}: key 'owner': {values['owner']!r} is not a local account; "
                "add it to a [[domain]]'s accounts (or aliases)",
                field="owner",
            )
    extra = {}
    options = {}
    if values["oauth2"] is not None:
        oauth2 = dict(values["oauth2"])
        for name in OAUTH2_SECRETS:
            if oauth2.get(name):
                sealed = keyring.seal(oauth2[name])
                oauth2[name] = {"source": sealed.source, "value": sealed.value}
        options["oauth2"] = oauth2
    if kind == "unified":
        extra = {"special_field": values["special_field"].strip(), "dedupe": values["dedupe"]}
    return RemoteRecord(
        kind=RecordKind(kind),
        owner=owner,
        account=values["account"],
        host=values["host"],
        poll_every=values["poll_every"],
        secret=secret,
        leave=values["leave"],
        apop=values["apop"],
        tls=values["tls"],
        tls_verify=values["tls_verify"],
        ca_file=ca_file,
        server_name=values["server_name"].strip(),
        options=options,
        starttls=values["starttls"],
        auth=values["auth"],
        timeout=values["timeout"],
        set_by=values["set_by"],
        **extra,
    )
