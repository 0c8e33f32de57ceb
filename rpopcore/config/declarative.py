"""Declarative files: module settings (``[rpop]``), local domains
(``[[domain]]``) and remote mailboxes (``[[remote]]`` per user,
``[[unified]]`` domain-wide), named after the seed's fields.

Reading a file produces a :class:`Declaration`: values only, checked, with
passwords already sealed by the site key.  Applying it is
:meth:`rpopcore.service.Site.apply`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

import attrs

from rpopcore import activity, errors
from rpopcore.config.schema import (
    Key,
    boolean,
    duration_key,
    integer,
    non_empty_string,
    one_of,
    poll_period,
    read_table,
    read_toml,
    string,
    string_list,
    string_map,
    show_poll_period,
)
from rpopcore.config.site import SITE_TABLES
from rpopcore.model import Directory, Domain, ModuleSettings, RecordKind, RemoteRecord, SecretRef, check_host
from rpopcore.model import LOG_LEVELS
from rpopcore.options import RecordOption
from rpopcore.secrets import Keyring

SETTINGS_KEYS = {
    "processors": Key(integer, help="how many records are polled at once (0 stops polling)"),
    "delay_failed_hosts": duration_key(help="how long a host that could not be reached is left alone"),
    "delay_failed_accounts": duration_key(help="how long a mailbox that failed is left alone"),
    "min_poll_period_for_users": duration_key(help="the shortest poll_every a user may set"),
    "max_accounts_per_user": Key(integer, help="how many records a user may set"),
    "use_apop": Key(boolean, help="whether APOP may be used where a record asks for it"),
    "allow_self_poll": Key(boolean, help="whether a record may poll this machine's own addresses"),
    "own_addresses": Key(string_list, help="more addresses that count as this machine's own"),
    "default_ip_address": Key(string, help="the source address of connections"),
    "use_domain_ip_addresses": Key(boolean, help="connect from the owner's domain's first address"),
    "activity_schedule": Key(lambda value: _checked(string_list(value), activity.parse_schedule),
                             help="the weekly windows polling is allowed in"),
    "time_zone": Key(lambda value: _checked(non_empty_string(value), activity.zone),
                     help="the time zone of activity_schedule"),
    "log_level": Key(one_of(*LOG_LEVELS), help="how much is logged"),
    "timeout": duration_key(help="how long a network step may take"),
    "max_status_line": Key(integer, help="the longest answer line accepted from a server"),
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


#: Every key of a record the core knows, in the order ``rpop export``
#: writes them; each reader and writer derives from this table.  Keys that
#: plugins add (:func:`rpopcore.hookspecs.rpop_record_options`) follow.
RECORD_KEYS = {
    "owner": Key(non_empty_string, help="the local account (or alias) mail goes to"),
    "poll_every": Key(poll_period, 600, "how often to poll: a duration, or \"disabled\"", show_poll_period),
    "account": Key(non_empty_string, help="the user name on the remote server"),
    "host": Key(non_empty_string, help="the POP3 server, host or host:port"),
    "password": Key(string, None, "the password, sealed with the site key when applied"),
    "password_env": Key(non_empty_string, None, "an environment variable holding the password"),
    "password_file": Key(non_empty_string, None, "a file whose first line is the password"),
    "leave": Key(boolean, True, "leave retrieved messages on the server"),
    "apop": Key(boolean, False, "log in with APOP"),
    "tls": Key(boolean, False, "TLS from the first byte (port 995)"),
    "tls_verify": Key(boolean, True, "verify the server's certificate"),
    "ca_file": Key(string, "", "a PEM bundle of the CAs to trust instead of the system's"),
    "server_name": Key(string, "", "the name to verify when host is an address"),
    "starttls": Key(one_of("auto", "required", "never"), "auto", "STLS on a plain connection"),
    "auth": Key(non_empty_string, "auto", "the login mechanism, or auto"),
    "timeout": duration_key(None, "how long a network step may take (default: the module's timeout)"),
    "set_by": Key(one_of("admin", "user"), "admin", "who set the record (user limits apply to users)"),
    "special_field": Key(string, "", "the header field holding the envelope recipients"),
    "dedupe": Key(boolean, True, "deliver one copy of a Message-ID per poll"),
}
#: Keys only one kind of record takes.
_ONLY = {"owner": RecordKind.REMOTE, "special_field": RecordKind.UNIFIED, "dedupe": RecordKind.UNIFIED}
#: The keys that give a record's password, by the SecretRef source each makes.
PASSWORD_KEYS = {"stored": "password", "env": "password_env", "file": "password_file"}


def record_keys(kind: RecordKind, options: Mapping[str, RecordOption] = {}) -> dict[str, Key]:
    """The keys a ``[[remote]]`` or ``[[unified]]`` table takes: the core's,
    then those plugins declare (absent unless given)."""
    keys = {name: key for name, key in RECORD_KEYS.items() if _ONLY.get(name, kind) is kind}
    keys |= {name: Key(option.convert, None, option.help)
             for name, option in options.items() if kind.value in option.kinds}
    return keys


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
    options: Mapping[str, RecordOption] = {},
) -> Declaration:
    """Read and check a declarative file.

    :param auth_names: the mechanism names installed plugins provide, so a
        typo in ``auth`` is caught now rather than at the first poll.
    :param route: the routing hook, to check that each owner is a local
        account.
    :param site_file: the file is the site file, whose own tables
        (``[delivery]``, ``[state]``...) are not declarations.
    :param options: the record keys installed plugins declare.
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
    return check_declaration(declared, str(path), path.parent, keyring, auth_names, route, options)


def check_declaration(
    doc: Mapping,
    origin: str,
    base: Path,
    keyring: Keyring,
    auth_names: Iterable[str],
    route: Callable[[str, Directory], str | None],
    options: Mapping[str, RecordOption] = {},
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
    for kind in (k.value for k in RecordKind):
        entries = tables[kind]
        if not isinstance(entries, list):
            raise errors.ConfigError(f"{origin}: write each record as [[{kind}]], not [{kind}]")
        for index, entry in enumerate(entries, 1):
            where = f"{origin}: [[{kind}]] #{index}"
            record = check_record(kind, entry, where, base, keyring, auth_names, directory, route, options)
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
    options: Mapping[str, RecordOption] = {},
) -> RemoteRecord:
    """Check one ``[[remote]]`` or ``[[unified]]`` entry (``kind``) with the
    rules of a file; ``where`` begins each error, whose ``entry`` is
    ``(kind, N)`` when ``where`` ends in ``#N``.  ``options``: the record
    keys installed plugins declare."""
    try:
        values = read_table(entry, record_keys(RecordKind(kind), options), where)
        return _record(kind, values, where, base, keyring, {"auto", *auth_names}, directory, route, options)
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


def _record(kind, values, where, base: Path, keyring: Keyring, auth_names, directory, route, options) -> RemoteRecord:
    given = [k for k in PASSWORD_KEYS.values() if values[k] is not None]
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
    fields = {name: values[name] for name in RECORD_KEYS if name in values and name not in PASSWORD_KEYS.values()}
    if fields["ca_file"]:
        ca_path = base / fields["ca_file"]
        if not ca_path.is_file():
            raise errors.ConfigError(
                f"{where}: key 'ca_file': {ca_path} is not a readable file; give a PEM CA bundle", field="ca_file"
            )
        fields["ca_file"] = str(ca_path)
    fields["server_name"] = fields["server_name"].strip()
    if kind == "unified":
        fields["special_field"] = fields["special_field"].strip()
    else:
        fields["owner"] = route(values["owner"], directory)
        if fields["owner"] is None:
            raise errors.ConfigError(
                f"{where}: key 'owner': {values['owner']!r} is not a local account; "
                "add it to a [[domain]]'s accounts (or aliases)",
                field="owner",
            )
    plugin_values = {name: option.seal(values[name], keyring.seal)
                     for name, option in options.items() if values.get(name) is not None}
    return RemoteRecord(kind=RecordKind(kind), secret=secret, options=plugin_values, **fields)
