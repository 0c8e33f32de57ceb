"""mpop's configuration file (``~/.mpoprc``, mpop(1) "CONFIGURATION
FILES") and its UID files (``uidls_file``).

The configuration is one command a line, its argument the rest of the line
(optionally in double quotes); ``#`` starts a comment.  ``defaults`` sets
values for the accounts that follow; ``account NAME [: OTHER, ...]``
starts an account from the defaults and then the named accounts' values.

A UID file holds lists: a line `` COUNT HOST USER`` (starting with a
space) followed by COUNT UIDs, one a line; ``#`` lines are comments.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from rpopcore import errors
from rpopcore.importers.fetchmail import mda_delivery
from rpopcore.importers.model import Delivery, ImportedMailbox, Imported, LocalNames, Note, UidList
from rpopcore.importers.text import read_text

#: Commands rpop reads into the mailbox.
_READ = {"host", "port", "timeout", "auth", "user", "password", "tls", "tls_starttls", "tls_trust_file",
         "tls_certcheck", "tls_nocertcheck", "tls_host_override", "keep", "delivery", "uidls_file", "pipelining",
         "passwordeval"}
#: Every other command mpop knows, and what rpop does instead.
WHY = {
    "eval": "rpop reads no configuration from a command's output",
    "source_ip": "rpop takes its source address from default_ip_address or the domain",
    "proxy_host": "rpop connects directly, without a SOCKS proxy",
    "proxy_port": "rpop connects directly, without a SOCKS proxy",
    "socket": "rpop connects over TCP",
    "ntlmdomain": "rpop has no NTLM authentication",
    "tls_crl_file": "rpop checks no certificate revocation list",
    "tls_fingerprint": "rpop verifies certificates against CAs (ca_file), not fingerprints",
    "tls_key_file": "rpop presents no client certificate",
    "tls_cert_file": "rpop presents no client certificate",
    "tls_priorities": "rpop negotiates the best TLS version and cipher both sides have",
    "tls_min_dh_prime_bits": "rpop negotiates the best TLS version and cipher both sides have",
    "only_new": "rpop retrieves each message once, whatever the server marks as new",
    "killsize": "rpop has no size limit per record",
    "skipsize": "rpop has no size limit per record",
    "filter": "rpop runs no filter before retrieving; filter in the delivery (a pipe MDA, Sieve)",
    "received_header": "rpop adds its own Received: field",
}
_AUTH = {"on": "auto", "": "auto", "user": "auto", "plain": "plain", "cram-md5": "cram-md5", "apop": "apop",
         "xoauth2": "xoauth2", "oauthbearer": "oauthbearer"}


@attrs.define
class _Account:
    name: str
    line: int
    values: dict = attrs.field(factory=dict)  # command -> (argument, line)


def _argument(rest: str) -> str:
    rest = rest.strip()
    if len(rest) >= 2 and rest[0] == '"' and rest[-1] == '"':
        out, i = [], 1
        while i < len(rest) - 1:
            if rest[i] == "\\" and i + 1 < len(rest) - 1:
                out.append(rest[i + 1])
                i += 2
                continue
            out.append(rest[i])
            i += 1
        return "".join(out)
    return rest


def _accounts(text: str, path: str) -> list[_Account]:
    defaults: dict = {}
    accounts: dict[str, _Account] = {}
    current: dict | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        command, rest = (line.split(None, 1) + [""])[:2]
        command = command.lower()
        argument = _argument(rest)
        if command == "defaults":
            current = defaults
            continue
        if command == "account":
            name, colon, parents = argument.partition(":")
            name = name.strip()
            if not name:
                raise errors.ConfigError(f"{path}:{number}: 'account' without a name; write 'account NAME'")
            account = _Account(name, number, dict(defaults))
            for parent in filter(None, (p.strip() for p in parents.split(","))):
                if parent not in accounts:
                    raise errors.ConfigError(f"{path}:{number}: account {name!r} inherits from {parent!r}, "
                                             "which is not defined above it")
                account.values.update(accounts[parent].values)
            accounts[name] = account
            current = account.values
            continue
        if command not in _READ and command not in WHY:
            raise errors.ConfigError(f"{path}:{number}: {command!r} is not an mpop command; check the spelling (mpop(1))")
        if current is None:
            raise errors.ConfigError(f"{path}:{number}: {command!r} before any 'defaults' or 'account'; "
                                     "start with 'defaults' or 'account NAME'")
        current[command] = (argument, number)
    return list(accounts.values())


def _on(value: str) -> bool:
    return value.strip().lower() in ("", "on")


def parse(path: Path, local: LocalNames) -> Imported:
    """Read an mpoprc into what rpop can import."""
    name = str(path)
    mailboxes, deliveries = [], []
    for account in _accounts(read_text(path), name):
        values = {k: v for k, (v, _line) in account.values.items()}
        lines = {k: line for k, (_v, line) in account.values.items()}
        notes = []

        def note(key, why):
            shown = f"{key} {values[key]}".strip()
            notes.append(Note(f"{name}:{lines[key]}", shown, why))

        if "host" not in values:
            raise errors.ConfigError(f"{name}:{account.line}: account {account.name!r} has no 'host'; "
                                     "every mpop account names its server")
        tls = _on(values["tls"]) if "tls" in values else False
        implicit = tls and not _on(values.get("tls_starttls", "on"))
        host = values["host"]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        if "port" in values:
            host = f"{host}:{values['port']}"
        auth = _AUTH.get(values.get("auth", "on").lower())
        if auth is None:
            note("auth", "rpop has no such mechanism; it chooses among those it has (auth = \"auto\")")
            auth = "auto"
        if "passwordeval" in values and "password" not in values:
            note("passwordeval", "rpop has no password command: store the password with password = \"...\", "
                                 "or write it to a file only rpop reads and give password_file")
        elif "passwordeval" in values:
            note("passwordeval", "the password given with 'password' is imported instead")
        if "tls_nocertcheck" in values:
            values["tls_certcheck"] = "off"
        for key in sorted(set(values) - _READ, key=lambda k: lines[k]):
            note(key, WHY[key])
        if "uidls_file" in values:
            notes.append(Note(f"{name}:{lines['uidls_file']}", f"uidls_file {values['uidls_file']}",
                              "rpop keeps UIDs in its state store: import this file with --uids"))
        user = values.get("user") or local.default_owner.partition("@")[0]
        timeout = values.get("timeout", "")
        mailboxes.append(ImportedMailbox(
            source=f"{name}:{account.line}",
            label=account.name,
            account=user,
            host=host,
            owner=local.default_owner,
            password=values.get("password"),
            leave=_on(values["keep"]) if "keep" in values else False,
            apop=auth == "apop",
            tls=implicit,
            starttls="required" if tls and not implicit else ("auto" if implicit else "never"),
            tls_verify=_on(values.get("tls_certcheck", "on")),
            ca_file="" if values.get("tls_trust_file", "system") in ("system", "") else values["tls_trust_file"],
            server_name=values.get("tls_host_override", ""),
            auth="auto" if auth == "apop" else auth,
            timeout=int(timeout) if timeout.isdigit() and int(timeout) > 0 else None,
            notes=tuple(notes),
        ))
        deliveries.append(_delivery(values, lines, name, f"{name}:{account.line}"))
    return Imported(mailboxes=tuple(mailboxes), deliveries=tuple(deliveries))


def _delivery(values, lines, path, where) -> Delivery:
    if "delivery" not in values:
        return Delivery(where, "", {}, (Note(where, "account without 'delivery'",
                                              "mpop needs one; rpop delivers through the site file's [delivery]"),))
    source = f"{path}:{lines['delivery']}"
    method, _, argument = values["delivery"].strip().partition(" ")
    method = method.lower()
    shown = f"delivery {values['delivery']}"
    if method == "mda":
        return mda_delivery(source, shown, _argument(argument), {"%F": "{sender}"})
    if method == "maildir":
        return Delivery(source, "", {}, (Note(source, shown, "rpop's maildir plugin delivers into "
                                              "ROOT/DOMAIN/LOCALPART; point root at the folder above, or use an "
                                              "MDA (pipe plugin) that writes this Maildir"),))
    return Delivery(source, "", {}, (Note(source, shown, "rpop delivers to Maildir, an MDA, LMTP or SMTP; "
                                          "choose one in the site file's [delivery]"),))


def read_uids(path: Path) -> list[UidList]:
    """An mpop UID file: lists headed `` COUNT HOST USER``."""
    found: list[UidList] = []
    head = None
    uids: list[str] = []

    def close():
        if head is not None:
            count, host, user, line = head
            if len(uids) != count:
                raise errors.ConfigError(f"{path}:{line}: the list says {count} UIDs and {len(uids)} follow; "
                                         "the file is truncated or not an mpop UID file")
            found.append(UidList(str(path), user, host, frozenset(uids)))

    for number, line in enumerate(read_text(path).splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith(" "):
            close()
            parts = line.split(None, 2)
            if len(parts) != 3 or not parts[0].isdigit():
                raise errors.ConfigError(f"{path}:{number}: expected ' COUNT HOST USER'; is this an mpop UID file?")
            head, uids = (int(parts[0]), parts[1], parts[2], number), []
            continue
        if head is None:
            raise errors.ConfigError(f"{path}:{number}: a UID before any ' COUNT HOST USER' line; "
                                     "is this an mpop UID file?")
        uids.append(line.strip())
    close()
    return found
