"""getmail6's rc files (``~/.getmail/getmailrc``, getmail's
"configuration" documentation) and its UID files (``oldmail-*``).

An rc file is INI: ``[retriever]`` (``type``, ``server``, ``port``,
``username``, ``password`` or ``password_command``, TLS keys,
``envelope_recipient`` for multidrop), ``[destination]`` and
``[options]``; ``[filter-*]`` sections filter after retrieval.  One rc
file is one mailbox.

getmail keeps the UIDs of one mailbox in ``oldmail-SERVER-PORT-USERNAME``,
a line per message: the UID, a NUL byte, the time it was seen.
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

from rpopcore import errors
from rpopcore.importers.fetchmail import mda_delivery
from rpopcore.importers.model import Delivery, ImportedMailbox, Imported, LocalNames, Note, UidList
from rpopcore.importers.text import read_text

POP3_TYPES = {
    "simplepop3retriever": (False, False), "simplepop3sslretriever": (True, False),
    "brokenuidlpop3retriever": (False, False), "brokenuidlpop3sslretriever": (True, False),
    "multidroppop3retriever": (False, True), "multidroppop3sslretriever": (True, True),
}
_RETRIEVER_READ = {"type", "server", "port", "username", "password", "password_command", "timeout", "ca_certs",
                   "ssl_cert_hostname", "envelope_recipient", "use_apop"}
RETRIEVER_WHY = {
    "keyfile": "rpop presents no client certificate",
    "certfile": "rpop presents no client certificate",
    "ssl_version": "rpop negotiates the best TLS version both sides have (TLS 1.2 or later)",
    "ssl_ciphers": "rpop negotiates the best cipher both sides have",
    "ssl_fingerprints": "rpop verifies certificates against CAs (ca_file), not fingerprints",
    "use_peek": "an IMAP option",
    "mailboxes": "an IMAP option",
    "move_on_delete": "an IMAP option",
    "record_mailbox": "an IMAP option",
    "use_xoauth2": "give auth = \"xoauth2\" and an oauth2 table on the record",
}
OPTIONS_WHY = {
    "verbose": "use -v/-q on the command line, or log_level",
    "read_all": "rpop retrieves each message once: only mail it has not delivered",
    "delete_after": "rpop deletes a message once it is delivered (leave = false) or never (leave = true)",
    "delete_bigger_than": "rpop has no size limit per record",
    "max_bytes_per_session": "rpop retrieves every new message in each poll",
    "max_message_size": "rpop has no size limit per record",
    "max_messages_per_session": "rpop retrieves every new message in each poll",
    "delivered_to": "rpop writes its own Delivered-To: in pipe deliveries",
    "received": "rpop adds its own Received: field",
    "message_log": "set [log] file in the site file",
    "message_log_syslog": "rpop logs to stderr or [log] file; under systemd, the journal",
    "message_log_verbose": "use log_level",
    "use_netrc": "give the password on the record (password, password_env or password_file)",
    "netrc_file": "give the password on the record (password, password_env or password_file)",
    "to_oldmail_on_each_mail": "rpop records each message as soon as it is delivered",
    "skip_imap_fetch_size": "an IMAP option",
    "fingerprint": "rpop verifies certificates against CAs (ca_file), not fingerprints",
}


def _boolean(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _read(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str.lower
    try:
        parser.read_string(read_text(path), source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise errors.ConfigError(f"{path}: not a getmail rc file ({first}); fix the line it names") from None
    if not parser.has_section("retriever"):
        raise errors.ConfigError(f"{path}: no [retriever] section; a getmail rc file names its server there")
    return parser


def parse(path: Path, local: LocalNames) -> Imported:
    """Read one getmail rc file (one mailbox) into what rpop can import."""
    name = str(path)
    parser = _read(path)
    retriever = dict(parser.items("retriever"))
    where = f"{name}: [retriever]"
    notes = []
    kind = retriever.get("type", "").strip()
    if kind.lower() not in POP3_TYPES:
        return Imported(notes=(Note(where, f"type = {kind}", "rpop polls POP3 only (Simple-, BrokenUIDL- and "
                                     "MultidropPOP3[SSL]Retriever): this file is not imported"),))
    tls, multidrop = POP3_TYPES[kind.lower()]
    for key in ("server", "username"):
        if not retriever.get(key, "").strip():
            raise errors.ConfigError(f"{where}: {key} is missing; a POP3 retriever needs server and username")
    host = retriever["server"].strip()
    if ":" in host:
        host = f"[{host}]"
    if retriever.get("port", "").strip():
        host = f"{host}:{retriever['port'].strip()}"
    password = retriever.get("password")
    if "password_command" in retriever:
        notes.append(Note(where, f"password_command = {retriever['password_command']}",
                          "rpop has no password command: store the password with password = \"...\", or write it "
                          "to a file only rpop reads and give password_file"))
    if password is None and "password_command" not in retriever:
        notes.append(Note(where, "no password", "getmail asked for it on the terminal; add password to the record"))
    for key in sorted(set(retriever) - _RETRIEVER_READ):
        notes.append(Note(where, f"{key} = {retriever[key]}", RETRIEVER_WHY.get(key, "rpop has no such option")))
    owner, domains, special_field = local.default_owner, (), ""
    if multidrop:
        owner, domains = None, (local.domain,)
        header, _, index = retriever.get("envelope_recipient", "").partition(":")
        special_field = header.strip()
        if index.strip() not in ("", "1"):
            notes.append(Note(where, f"envelope_recipient = {retriever['envelope_recipient']}",
                              f"rpop reads the first {header.strip()} field, not field {index.strip()}"))
        domains, accounts, sorter_notes = _sorted_locals(parser, name, local.domain)
        notes += sorter_notes
    options = dict(parser.items("options")) if parser.has_section("options") else {}
    for key in sorted(set(options) - {"delete"}):
        notes.append(Note(f"{name}: [options]", f"{key} = {options[key]}",
                          OPTIONS_WHY.get(key, "rpop has no such option")))
    for section in parser.sections():
        if section.lower().startswith("filter"):
            notes.append(Note(f"{name}: [{section}]", f"[{section}] type = {parser.get(section, 'type', fallback='')}",
                              "rpop runs no filters; filter in the delivery (a pipe MDA, Sieve)"))
    timeout = retriever.get("timeout", "").strip()
    mailbox = ImportedMailbox(
        source=where,
        label=name,
        account=retriever["username"].strip(),
        host=host,
        owner=owner,
        domains=domains,
        accounts=accounts if multidrop else (),
        password=password,
        leave=not _boolean(options.get("delete", "false")),
        apop=_boolean(retriever.get("use_apop", "false")),
        tls=tls,
        starttls="auto" if tls else "never",
        ca_file=retriever.get("ca_certs", "").strip(),
        server_name=retriever.get("ssl_cert_hostname", "").strip(),
        timeout=int(float(timeout)) if re.fullmatch(r"\d+(\.\d*)?", timeout) and float(timeout) >= 1 else None,
        special_field=special_field,
        notes=tuple(notes),
    )
    return Imported(mailboxes=(mailbox,), deliveries=(_delivery(parser, name),))


_PLACEHOLDERS = {"%(recipient)s": "{recipient}", "%(sender)s": "{sender}", "%(local)s": "{localpart}",
                 "%(domain)s": "{domain}", "%(recipient)": "{recipient}", "%(sender)": "{sender}",
                 "%(local)": "{localpart}", "%(domain)": "{domain}", "%%": "%"}
_ADDRESS = re.compile(r"[a-z0-9._+-]+@[a-z0-9.-]+")


def _sorted_locals(parser, path: str, default_domain: str):
    """The local addresses a MultiSorter (or MultiGuesser) destination
    names: plain addresses become accounts of their domains; a pattern that
    is not one address becomes a note."""
    where = f"{path}: [destination]"
    sorter = dict(parser.items("destination")) if parser.has_section("destination") else {}
    notes = []
    found: dict[str, set[str]] = {}
    if sorter.get("type", "").strip() in ("MultiSorter", "MultiGuesser") and "locals" in sorter:
        for entry in _tuple(sorter["locals"], where):
            pattern = entry[0] if isinstance(entry, tuple) else entry
            plain = str(pattern).strip().lstrip("^").rstrip("$").replace("\\.", ".").lower()
            if _ADDRESS.fullmatch(plain):
                local, _, domain = plain.partition("@")
                found.setdefault(domain, set()).add(local)
            else:
                notes.append(Note(where, f"locals pattern {pattern}", "not one address: list the addresses it "
                                  "matches as accounts or aliases in [[domain]]"))
    if not found:
        notes.append(Note(where, "multidrop", f"recipients are taken to be in {default_domain} (give --domain); "
                                              "list the domain's users in [[domain]] accounts"))
        return (default_domain,), (), notes
    accounts = tuple(sorted({a for names in found.values() for a in names}))
    if len(found) > 1:
        notes.append(Note(where, "locals", "addresses of several domains: each domain gets every local name; "
                                           "check the [[domain]] accounts"))
    return tuple(sorted(found)), accounts, notes


def _delivery(parser, path: str) -> Delivery:
    where = f"{path}: [destination]"
    if not parser.has_section("destination"):
        return Delivery(where, "", {}, (Note(where, "no [destination]", "rpop delivers through the site file's "
                                               "[delivery]"),))
    destination = dict(parser.items("destination"))
    kind = destination.get("type", "").strip()
    shown = f"type = {kind}" + (f", path = {destination['path']}" if "path" in destination else "")
    if kind == "MDA_external":
        arguments = _tuple(destination.get("arguments", "()"), where)
        command = " ".join([destination.get("path", "")] + [_shell_word(a) for a in arguments])
        return mda_delivery(where, shown, command, _PLACEHOLDERS)
    if kind == "MDA_lmtp":
        host = destination.get("host", "").strip()
        if host.startswith("/"):
            return Delivery(where, "lmtp", {"socket": host})
        port = destination.get("port", "24").strip()
        return Delivery(where, "lmtp", {"host": host, "port": int(port) if port.isdigit() else 24})
    if kind == "Maildir":
        return Delivery(where, "", {}, (Note(where, shown, "rpop's maildir plugin delivers into "
                                              "ROOT/DOMAIN/LOCALPART; point root at the folder above, or use an MDA "
                                              "(pipe plugin) that writes this Maildir"),))
    return Delivery(where, "", {}, (Note(where, shown, "rpop delivers to Maildir, an MDA, LMTP or SMTP; choose one "
                                          "in the site file's [delivery]"),))


def _shell_word(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _tuple(text: str, where: str) -> tuple[str, ...]:
    try:
        value = ast.literal_eval(text.strip() or "()")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise errors.ConfigError(f"{where}: arguments = {text} is not a tuple of quoted strings; "
                                 "write arguments = (\"-d\", \"%(local)s\")") from None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise errors.ConfigError(f"{where}: {text} is not a tuple of quoted strings")
    return tuple(v if isinstance(v, tuple) else str(v) for v in value)


_OLDMAIL = re.compile(r"oldmail-(?P<server>.+?)-(?P<port>\d+)-(?P<user>.+)")


def read_uids(path: Path) -> list[UidList]:
    """One ``oldmail-SERVER-PORT-USERNAME`` file."""
    match = _OLDMAIL.fullmatch(Path(path).name)
    if not match:
        raise errors.ConfigError(f"{path}: not a getmail UID file (its name is not oldmail-SERVER-PORT-USERNAME)")
    uids = set()
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        uid, nul, _seen = line.partition("\0")
        if not nul or not uid:
            raise errors.ConfigError(f"{path}:{number}: expected 'UID<NUL>TIME'; is this a getmail oldmail file?")
        uids.add(uid)
    return [UidList(str(path), match["user"], match["server"], frozenset(uids))]
