"""fetchmail's run control file (``~/.fetchmailrc``, fetchmailrc(5)) and
its UID file (``~/.fetchids``).

The rc file is a stream of words: ``set`` statements, a ``defaults``
entry, and ``poll``/``skip`` entries of server options followed by one or
more ``user`` descriptions.  Quoted strings take C escapes; ``#`` starts a
comment; ``and with has wants options`` and ``, ; :`` are noise.  Options
given before the first ``user`` of an entry, or in ``defaults``, apply to
every user that follows.

The UID file has a line per message fetchmail has seen and kept:
``USER@SERVER UID`` (SERVER is the ``via`` name, else the poll name).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Iterator

import attrs

from rpopcore import errors
from rpopcore.importers.model import Delivery, ImportedMailbox, Imported, LocalNames, Note, UidList
from rpopcore.importers.text import local_address, read_text

NOISE = {"and", "with", "has", "wants", "options", ",", ";", ":"}

#: Server options: keyword -> number of values (-1: a list, to the next keyword).
SERVER_OPTIONS = {
    "via": 1, "protocol": 1, "proto": 1, "uidl": 0, "service": 1, "port": 1, "auth": 1, "authenticate": 1,
    "timeout": 1, "envelope": 1, "qvirtual": 1, "aka": -1, "localdomains": -1, "interface": 1, "monitor": 1,
    "plugin": 1, "plugout": 1, "dns": 0, "checkalias": 0, "principal": 1, "esmtpname": 1, "esmtppassword": 1,
    "tracepolls": 0, "interval": 1, "bad-header": 1,
}
#: User options, same convention.
USER_OPTIONS = {
    "user": 1, "username": 1, "is": -1, "to": -1, "pass": 1, "password": 1, "ssl": 0, "sslcert": 1, "sslkey": 1,
    "sslproto": 1, "sslcertck": 0, "sslcertfile": 1, "sslcertpath": 1, "sslcommonname": 1, "sslfingerprint": 1,
    "folder": -1, "smtphost": -1, "smtphosts": -1, "fetchdomains": -1, "smtpaddress": 1, "smtpname": 1,
    "antispam": -1, "mda": 1, "bsmtp": 1, "lmtp": 0, "preconnect": 1, "postconnect": 1, "keep": 0, "flush": 0,
    "limitflush": 0, "fetchall": 0, "rewrite": 0, "stripcr": 0, "forcecr": 0, "pass8bits": 0, "dropstatus": 0,
    "dropdelivered": 0, "mimedecode": 0, "idle": 0, "limit": 1, "warnings": 1, "batchlimit": 1, "fetchlimit": 1,
    "fetchsizelimit": 1, "fastuidl": 1, "expunge": 1, "properties": 1, "showdots": 0,
}
OPTIONS = {**SERVER_OPTIONS, **USER_OPTIONS}
STATEMENTS = {"poll", "skip", "server", "defaults", "set"}
#: Words that end a list of values.
KEYWORDS = set(OPTIONS) | STATEMENTS | {"no", "here", "there"}

#: What rpop does instead, for options it has no key for.
WHY = {
    "flush": "rpop never deletes messages it has not delivered",
    "limitflush": "rpop never deletes messages it has not delivered",
    "fetchall": "rpop retrieves each message once; mail it delivered before stays where it is",
    "limit": "rpop has no size limit per record",
    "fetchlimit": "rpop retrieves every new message in each poll",
    "fetchsizelimit": "rpop retrieves every new message in each poll",
    "batchlimit": "rpop's delivery plugins manage their own connections",
    "folder": "rpop polls POP3 mailboxes, which have no folders",
    "idle": "rpop polls POP3 on a schedule",
    "preconnect": "rpop runs no command around a poll",
    "postconnect": "rpop runs no command around a poll",
    "interface": "rpop takes its source address from default_ip_address or the domain",
    "monitor": "rpop takes its source address from default_ip_address or the domain",
    "plugin": "connect directly, or through a tunnel made outside rpop",
    "plugout": "deliver through the site file's [delivery] table",
    "sslcert": "rpop presents no client certificate",
    "sslkey": "rpop presents no client certificate",
    "sslcertpath": "rpop takes a CA bundle file: concatenate the folder's certificates into one file for ca_file",
    "sslfingerprint": "rpop verifies certificates against CAs (ca_file), not fingerprints",
    "aka": "rpop's special_field names the recipient header; no DNS aliases are needed",
    "dns": "rpop does no DNS look-ups of recipient addresses",
    "checkalias": "rpop does no DNS look-ups of recipient addresses",
    "qvirtual": "the special field is removed from delivered copies; prefixes are not stripped",
    "principal": "rpop has no Kerberos authentication",
    "esmtpname": "set username in the site file's [delivery] table (smtp plugin)",
    "esmtppassword": "set password in the site file's [delivery] table (smtp plugin)",
    "tracepolls": "rpop adds its own Received: field",
    "bad-header": "rpop delivers messages with bad headers as they are",
    "smtpaddress": "rpop delivers to the local owner's address",
    "smtpname": "rpop delivers to the local owner's address",
    "fetchdomains": "rpop delivers to the accounts of the local domains ([[domain]])",
    "antispam": "rpop's delivery plugins decide what a refused recipient means",
    "bsmtp": "rpop has no BSMTP output; use the pipe or smtp delivery plugin",
    "rewrite": "rpop does not rewrite addresses",
    "stripcr": "rpop's delivery plugins write the line endings their target expects",
    "forcecr": "rpop's delivery plugins write the line endings their target expects",
    "pass8bits": "rpop passes 8-bit mail as it is",
    "dropstatus": "rpop keeps Status: lines",
    "dropdelivered": "rpop keeps Delivered-To: lines (except a special field)",
    "mimedecode": "rpop delivers messages as received",
    "warnings": "rpop has no size warnings",
    "fastuidl": "rpop always asks for the whole UID list",
    "expunge": "rpop deletes at the end of the POP3 session",
    "properties": "rpop has no properties",
    "showdots": "rpop shows progress on a terminal by itself",
    "uidl": "rpop always uses UIDL",
    "interval": "set poll_every on the record",
}
GLOBAL_WHY = {
    "daemon": "",  # becomes poll_every
    "postmaster": "rpop's failure reports go to the sender, as its delivery plugins decide",
    "bouncemail": "rpop reports delivery failures itself ([bounces] in the site file)",
    "spambounce": "rpop reports delivery failures itself ([bounces] in the site file)",
    "softbounce": "rpop keeps a message on the server while its delivery fails temporarily",
    "logfile": "set [log] file in the site file",
    "syslog": "rpop logs to stderr or [log] file; under systemd, the journal",
    "idfile": "rpop keeps UIDs in its state store (import them with --uids)",
    "pidfile": "rpop's daemon is 'rpop run'",
    "invisible": "rpop adds its own Received: field",
    "showdots": "rpop shows progress on a terminal by itself",
    "no": "",
}


@attrs.frozen
class _Token:
    text: str
    line: int
    quoted: bool = False

    @property
    def word(self) -> str:
        """The text as a keyword (lower case), or '' for a quoted string."""
        return "" if self.quoted else self.text.lower()


def tokens(text: str, path: str) -> Iterator[_Token]:
    """The words of an rc file, noise words dropped."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in ",;:":
            i += 1
        elif c in "\"'":
            start_line = line
            value, i, line = _quoted(text, i, line, path)
            yield _Token(value, start_line, quoted=True)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "#,;\"'" and not (
                text[i] == ":" and (i + 1 == n or text[i + 1].isspace())
            ):
                i += 1
            word = text[start:i]
            if word.lower() not in NOISE:
                yield _Token(word, line)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "\\": "\\", '"': '"', "'": "'"}


def _quoted(text: str, i: int, line: int, path: str) -> tuple[str, int, int]:
    quote, start_line = text[i], line
    i += 1
    out = []
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1, line
        if c == "\n":
            line += 1
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and i + 3 < len(text) and all(h in "0123456789abcdefABCDEF" for h in text[i + 2:i + 4]):
                out.append(chr(int(text[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    raise errors.ConfigError(f"{path}:{start_line}: a string opened with {quote} is never closed; close it")


@attrs.define
class _Options:
    """Options as given, keyword -> (values, line, negated)."""

    values: dict = attrs.field(factory=dict)

    def set(self, key: str, value, line: int, negated: bool = False) -> None:
        self.values[key] = (value, line, negated)

    def merged(self, *others: "_Options") -> "_Options":
        values = dict(self.values)
        for other in others:
            values.update(other.values)
        return _Options(values)


@attrs.define
class _User:
    options: _Options
    line: int


@attrs.define
class _Poll:
    name: str
    line: int
    skip: bool
    options: _Options = attrs.field(factory=_Options)
    users: list = attrs.field(factory=list)


def parse(path: Path, local: LocalNames) -> Imported:
    """Read a fetchmailrc into what rpop can import."""
    name = str(path)
    polls, defaults, globals_ = _entries(read_text(path), name)
    notes = []
    daemon = None
    for key, (value, line, negated) in globals_.items():
        if key == "daemon" and not negated:
            daemon = _number(value, f"{name}:{line}", "set daemon")
            continue
        shown = f"set {'no ' if negated else ''}{key}{' ' + _show(value) if value not in (None, True) else ''}"
        notes.append(Note(f"{name}:{line}", shown, GLOBAL_WHY.get(key) or "rpop has no such setting"))
    mailboxes, deliveries = [], []
    for poll in polls:
        users = poll.users or [_User(_Options(), poll.line)]
        for user in users:
            options = defaults.merged(poll.options, user.options)
            found = _mailbox(poll, user, options, name, local, daemon)
            if isinstance(found, Note):
                notes.append(found)
                continue
            mailbox, delivery = found
            mailboxes.append(mailbox)
            deliveries.append(delivery)
    return Imported(mailboxes=tuple(mailboxes), deliveries=tuple(deliveries), notes=tuple(notes))


def _entries(text: str, path: str):
    stream = list(tokens(text, path))
    polls: list[_Poll] = []
    defaults = _Options()
    globals_: dict = {}
    current: _Options | None = None  # where options go
    poll: _Poll | None = None
    i = 0
    while i < len(stream):
        tok = stream[i]
        word = tok.word
        if word == "set":
            i = _set(stream, i + 1, globals_, path)
            current = None
            continue
        if word == "defaults":
            current, poll = defaults, None
            i += 1
            continue
        if word in ("poll", "skip", "server"):
            if i + 1 >= len(stream):
                raise errors.ConfigError(f"{path}:{tok.line}: '{word}' without a server name; write '{word} pop.isp.example'")
            poll = _Poll(stream[i + 1].text, tok.line, skip=word == "skip")
            polls.append(poll)
            current = poll.options
            i += 2
            continue
        if current is None:
            raise errors.ConfigError(
                f"{path}:{tok.line}: {tok.text!r} outside a poll entry; options follow 'poll SERVER' or 'defaults'"
            )
        if word in ("user", "username"):
            if poll is None:  # a user in defaults: fetchmail's default remote name
                i = _option(stream, i, current, path)
                continue
            user = _User(_Options(), tok.line)
            poll.users.append(user)
            current = user.options
            i = _option(stream, i, current, path)
            if i < len(stream) and stream[i].word == "here":  # 'user LOCAL here is REMOTE there'
                i += 1
                user.options.values["_local_first"] = (True, tok.line, False)
            elif i < len(stream) and stream[i].word == "there":
                i += 1
            continue
        if word in ("here", "there"):
            i += 1
            continue
        i = _option(stream, i, current, path)
    return polls, defaults, globals_


def _set(stream, i, globals_, path) -> int:
    if i >= len(stream):
        raise errors.ConfigError(f"{path}:{stream[i - 1].line}: 'set' without a name; e.g. 'set daemon 300'")
    negated = stream[i].word == "no"
    if negated:
        i += 1
    tok = stream[i]
    key = tok.word
    i += 1
    value = True
    takes_value = key in ("daemon", "postmaster", "logfile", "idfile", "pidfile", "properties")
    if takes_value and not negated and i < len(stream):
        value = stream[i].text
        i += 1
    globals_[key] = (value, tok.line, negated)
    return i


def _option(stream, i, options: _Options, path) -> int:
    tok = stream[i]
    negated = tok.word == "no"
    if negated:
        i += 1
        if i >= len(stream):
            raise errors.ConfigError(f"{path}:{tok.line}: 'no' at the end of the file; write 'no keep', 'no dns', ...")
        tok = stream[i]
    key = tok.word
    if key not in OPTIONS:
        raise errors.ConfigError(
            f"{path}:{tok.line}: {tok.text!r} is not a fetchmail option; check the spelling (fetchmailrc(5))"
        )
    i += 1
    arity = OPTIONS[key]
    if key in ("user", "username"):
        key = "user"
    if key in ("pass",):
        key = "password"
    if key in ("proto",):
        key = "protocol"
    if key in ("service",):
        key = "port"
    if key in ("authenticate",):
        key = "auth"
    if key in ("smtphosts",):
        key = "smtphost"
    if key == "to":
        key = "is"
    if negated or arity == 0:
        options.set(key, True, tok.line, negated)
        return i
    if key == "envelope" and i < len(stream) and not stream[i].quoted and stream[i].text.isdigit():
        i += 1  # 'envelope 2 "Received"': the count of fields to skip
    if arity == 1:
        if i >= len(stream):
            raise errors.ConfigError(f"{path}:{tok.line}: {tok.text!r} needs a value")
        options.set(key, stream[i].text, tok.line)
        return i + 1
    values: list[str] = []
    joining = False
    while i < len(stream) and (stream[i].quoted or stream[i].word not in KEYWORDS):
        text = stream[i].text
        # 'hurkle'='happy' maps a server name to a local one, in up to three words
        if values and (joining or text.startswith("=")):
            values[-1] += text
        else:
            values.append(text)
        joining = text.endswith("=")
        i += 1
    if i < len(stream) and stream[i].word == "here" and key == "is":
        i += 1
    options.set(key, tuple(values), tok.line)
    return i


def _number(value, where: str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"{where}: {what} {value!r} is not a number of seconds") from None


def _show(value) -> str:
    if isinstance(value, tuple):
        return " ".join(_quote(v) for v in value)
    return _quote(str(value))


def _quote(text: str) -> str:
    return text if text and all(c.isalnum() or c in "._-/@+=%*" for c in text) else '"' + text + '"'


#: Keys read into the mailbox (not notes).
_READ = {
    "via", "protocol", "port", "auth", "timeout", "envelope", "localdomains", "user", "is", "password", "ssl",
    "sslproto", "sslcertck", "sslcertfile", "sslcommonname", "keep", "mda", "smtphost", "lmtp", "interval",
    "_local_first",
}

_AUTH = {"any": "auto", "password": "auto", "cram-md5": "cram-md5", "msn": "msn", "oauthbearer": "oauthbearer",
         "xoauth2": "xoauth2"}


def _mailbox(poll: _Poll, user: _User, options: _Options, path: str, local: LocalNames, daemon: int | None):
    values = {k: v for k, (v, _line, _neg) in options.values.items()}
    negated = {k for k, (_v, _line, neg) in options.values.items() if neg}
    lines = {k: line for k, (_v, line, _neg) in options.values.items()}
    where = f"{path}:{user.line}"
    notes = []

    def note(key, why=None):
        value = values[key]
        shown = ("no " if key in negated else "") + key + ("" if value is True else " " + _show(value))
        notes.append(Note(f"{path}:{lines[key]}", shown, why or WHY.get(key, "rpop has no such option")))

    protocol = str(values.get("protocol", "auto")).lower()
    if protocol not in ("pop3", "apop", "auto"):
        return Note(f"{path}:{poll.line}", f"poll {poll.name} protocol {protocol}",
                    "rpop polls POP3 only: this entry is not imported")
    remote = values.get("user")
    if values.get("_local_first") and values.get("is"):
        remote, locals_ = values["is"][0], (values["user"],)
    else:
        locals_ = tuple(values.get("is", ()))
    if not remote:
        remote = local.default_owner.partition("@")[0]
        notes.append(Note(where, f"poll {poll.name}", f"no 'user': the remote name is taken to be {remote!r}, "
                                                         "as fetchmail would take the local login name"))
    host = values.get("via", poll.name)
    tls = "ssl" in values and "ssl" not in negated
    port = values.get("port")
    if port is not None:
        host = f"{host}:{port}"
    starttls = "auto"
    if "sslproto" in values and not tls:
        proto = str(values["sslproto"]).lower()
        starttls = "never" if proto == "" else "auto" if proto == "auto" else "required"
        if proto not in ("", "auto", "tls1+", "tls1.2+", "tls1.3+", "tls1.1+"):
            note("sslproto", "rpop negotiates the best TLS version both sides have (TLS 1.2 or later)")
    elif "sslproto" in values and str(values["sslproto"]).lower() not in ("", "auto", "tls1.2+", "tls1.3+", "tls1+"):
        note("sslproto", "rpop negotiates the best TLS version both sides have (TLS 1.2 or later)")
    auth = "auto"
    if "auth" in values:
        given = str(values["auth"]).lower()
        auth = _AUTH.get(given, "auto")
        if given not in _AUTH:
            note("auth", "rpop has no such mechanism; it chooses among those it has (auth = \"auto\")")
        elif given in ("oauthbearer", "xoauth2"):
            notes.append(Note(f"{path}:{lines['auth']}", f"auth {given}", "add an oauth2 table to the record "
                              "(token_endpoint, client_id, refresh_token): fetchmail's token is not imported"))
    owner, domains, accounts, special_field = None, (), (), ""
    multidrop = len(locals_) > 1 or "*" in locals_ or (len(locals_) == 1 and "localdomains" in values)
    if multidrop:
        domains = tuple(d.lower() for d in values.get("localdomains", ())) or (local.domain,)
        accounts = tuple(sorted({_local_part(n) for n in locals_ if n != "*"}))
        if "*" in locals_:
            notes.append(Note(where, "to * here", "rpop delivers only to the accounts and aliases declared in "
                                                   "[[domain]]; list every local user there"))
        if "localdomains" not in values:
            notes.append(Note(where, f"poll {poll.name} (multidrop)", f"no 'localdomains': recipients are taken "
                              f"to be in {local.domain}; give --domain or declare the right [[domain]]"))
        envelope = values.get("envelope")
        if "envelope" in negated or envelope is None:
            special_field = ""
            if envelope is None and "envelope" not in negated:
                notes.append(Note(where, f"poll {poll.name} (multidrop)", "no 'envelope' header: fetchmail "
                                  "read Received: lines, rpop distributes by To/Cc/Bcc (set special_field to a "
                                  "header the server adds, like Delivered-To or X-Original-To)"))
        elif str(envelope).rstrip(":").lower() == "received":
            note("envelope", "rpop does not parse Received: lines; it distributes by To/Cc/Bcc "
                             "(set special_field to a header the server adds)")
        else:
            special_field = str(envelope).rstrip(":").strip()
    else:
        owner = local_address(locals_[0] if locals_ else local.default_owner, local.domain)
    poll_every = None
    if daemon:
        poll_every = daemon * (_number(values["interval"], f"{path}:{lines['interval']}", "interval")
                               if "interval" in values else 1)
    if poll.skip:
        notes.append(Note(f"{path}:{poll.line}", f"skip {poll.name}", "imported disabled (poll_every = \"disabled\")"))
    timeout = _number(values["timeout"], f"{path}:{lines['timeout']}", "timeout") if "timeout" in values else None
    for key in sorted(set(values) - _READ, key=lambda k: lines[k]):
        note(key)
    if protocol == "auto" and "protocol" in values:
        notes.append(Note(f"{path}:{lines['protocol']}", "protocol auto", "imported as POP3 (rpop polls POP3 only)"))
    mailbox = ImportedMailbox(
        source=where,
        label=poll.name,
        account=remote,
        host=host,
        owner=owner,
        domains=domains,
        accounts=accounts,
        password=values.get("password"),
        leave="keep" in values and "keep" not in negated,
        apop=protocol == "apop",
        tls=tls,
        starttls=starttls,
        tls_verify="sslcertck" not in negated,
        ca_file=str(values.get("sslcertfile", "")),
        server_name=str(values.get("sslcommonname", "")),
        auth=auth,
        timeout=timeout,
        poll_every=poll_every,
        disabled=poll.skip,
        special_field=special_field,
        notes=tuple(notes),
    )
    return mailbox, _delivery(values, lines, negated, path, where)


def _local_part(name: str) -> str:
    """``remote=local`` maps a server name to a local one; the local one counts."""
    return name.rpartition("=")[2].partition("@")[0].lower()


def _delivery(values, lines, negated, path, where) -> Delivery:
    if "mda" in values:
        source = f"{path}:{lines['mda']}"
        return mda_delivery(source, f"mda {_show(values['mda'])}", str(values["mda"]),
                            {"%T": "{recipient}", "%F": "{sender}", "%%": "%"})
    if "smtphost" in values:
        source = f"{path}:{lines['smtphost']}"
        hosts = values["smtphost"]
        first = hosts[0] if hosts else "localhost"
        notes = []
        if len(hosts) > 1:
            notes.append(Note(source, f"smtphost {_show(hosts)}", f"rpop delivers to one host: {first}"))
        name, _, port = first.partition("/")
        if "lmtp" in values and "lmtp" not in negated:
            if first.startswith("/"):
                return Delivery(source, "lmtp", {"socket": first}, tuple(notes))
            return Delivery(source, "lmtp", {"host": name, "port": int(port) if port.isdigit() else 24}, tuple(notes))
        if first.startswith("/"):
            return Delivery(source, "", {}, (Note(source, f"smtphost {first}", "an SMTP socket path: rpop's smtp "
                                                  "plugin connects over TCP"),))
        return Delivery(source, "smtp", {"host": name or "localhost", "port": int(port) if port.isdigit() else 25},
                        tuple(notes))
    return Delivery(where, "smtp", {"host": "localhost", "port": 25}, ())


def mda_delivery(source: str, shown: str, command: str, placeholders: dict[str, str]) -> Delivery:
    """An MDA command line as the pipe plugin's ``command`` list: split as a
    shell would, the old tool's placeholders replaced by rpop's.  A command
    that needs a shell (pipes, redirections, variables) is not converted:
    rpop runs the program without one."""
    if any(c in command for c in "|&;<>$`\n"):
        return Delivery(source, "", {}, (Note(source, shown, "a shell command line: rpop's pipe plugin runs one "
                                              "program without a shell; wrap it in a script and name that"),))
    try:
        words = shlex.split(command)
    except ValueError:
        return Delivery(source, "", {}, (Note(source, shown, "unbalanced quotes; write the pipe command by hand"),))
    converted = []
    for word in words:
        for old, new in placeholders.items():
            word = word.replace(old, new)
        converted.append(word)
    left = [w for w in converted if "%" in w]
    notes = ()
    if left:
        notes = (Note(source, shown, f"{left[0]!r}: a placeholder rpop does not have ({{recipient}}, {{sender}}, "
                                     "{localpart}, {domain}); check the command"),)
    return Delivery(source, "pipe", {"command": converted}, notes)


def read_uids(path: Path) -> list[UidList]:
    """The UID file: ``USER@SERVER UID`` per line."""
    found: dict[tuple[str, str], set[str]] = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or "@" not in parts[0]:
            raise errors.ConfigError(
                f"{path}:{number}: not a fetchmail UID line (expected 'USER@SERVER UID'); is this a .fetchids file?"
            )
        account, _, host = parts[0].rpartition("@")
        found.setdefault((account, host), set()).add(parts[1])
    return [UidList(str(path), account, host, frozenset(uids)) for (account, host), uids in found.items()]
