"""No secret anywhere, whichever step a server fails at: the engine of
``python3 -m bench.faults secrets`` and of ``tests/faults/test_secrets_nowhere.py``.

For every way rpop sends a secret -- USER/PASS, APOP, SASL PLAIN with the
credentials on the AUTH line and (a 222-character password) on a line of
their own, CRAM-MD5, XOAUTH2 and OAUTHBEARER with 5,000-character access
tokens -- a site made as an administrator makes one (:class:`kill.KillSite`:
``rpop init``, ``rpop apply``, ``log_level = "all"`` into a log file) polls
the project's scriptable POP3 server, and the server drops the connection,
or stops answering, when the n-th line rpop sends arrives, for every n of a
whole session (greeting to QUIT).  The record is a unified one whose
messages name a local account and an unknown one, so every poll that gets
as far as RETR also spools a bounce.

After each cut, every secret (:func:`secret_forms`) is looked for in every
place a user or another program may read: what ``rpop poll --once``
printed (``--json`` and text, in turns) on stdout and stderr, ``rpop status
--json``, and every file of the site folder -- the log file, the state
database (``rpop.sqlite``, its WAL, its leases), the bounce spool, the
delivered mail, the site file -- but the declarative file the
administrator wrote, which holds the password by design.  Each cut must
also end in a known error code (:data:`rpopcore.errors.ERROR_CODES`, not
``internal-error``) with no traceback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Iterable

import attrs

from bench.faults import kill
from bench.faults.findings import Findings, broken, unclear
from rpopcore.testing.scriptable_server import Faults, Message, PlainSasl, ScriptableServer
from rpop_oauth2.testing import OAuth2Provider

ACCOUNT = "alice.smith"
#: 222 characters: too long for SASL PLAIN's credentials to go on the AUTH
#: line (RFC 5034's 255 octets), so they take a line of their own.  No
#: quote or backslash (it is written into a TOML string), no space.
LONG_PASSWORD = "".join(chr(0x21 + (i * 37) % 94) for i in range(222)).replace('"', "Q").replace("\\", "R")
SHORT_PASSWORD = "Sh0rt-pa55word!"
#: Access tokens the test provider issues are this long (Microsoft's run to
#: a few KB), so XOAUTH2 and OAUTHBEARER too answer a challenge.
TOKEN_SIZE = 5000
#: A leak is any run of this many characters of a secret's form (case
#: ignored); windows of it start every :data:`STRIDE` characters, so any
#: WINDOW + STRIDE - 1 characters in a row are found.
WINDOW, STRIDE = 16, 8
CHALLENGE = b"<1896.697170952@isp.test>"
#: The record's timeout: a stalled server costs this much per cut.
TIMEOUT = "1s"


@attrs.frozen
class Way:
    """One way rpop sends a secret: the record's ``auth``, its password, and
    what the server offers; ``oauth2``: the secret is a token."""

    name: str
    auth: str
    password: str
    sasl: str = ""  # the server's SASL mechanism, if any
    apop: bool = False
    oauth2: bool = False


WAYS = (
    Way("userpass", "userpass", LONG_PASSWORD),
    Way("apop", "apop", LONG_PASSWORD, apop=True),
    Way("plain", "plain", SHORT_PASSWORD, sasl="PLAIN"),
    Way("plain-continued", "plain", LONG_PASSWORD, sasl="PLAIN"),
    Way("cram-md5", "cram-md5", LONG_PASSWORD, sasl="CRAM-MD5"),
    Way("xoauth2", "xoauth2", LONG_PASSWORD, sasl="XOAUTH2", oauth2=True),
    Way("oauthbearer", "oauthbearer", LONG_PASSWORD, sasl="OAUTHBEARER", oauth2=True),
)


@attrs.frozen
class OneChallenge:
    """The server side of a SASL mechanism that sends ``challenge`` unless
    the client gave an initial response, then accepts: these runs are about
    what rpop shows, not about the server checking credentials."""

    challenge: bytes = b""

    def start(self):
        return self

    def step(self, response):
        return ("challenge", self.challenge) if response is None else ("ok", None)


class RecordingServer(ScriptableServer):
    """Remembers every APOP timestamp it greets with: the digest of each
    session is a secret, and a session cut at its APOP line logs none."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stamps: list[str] = []

    def new_timestamp(self) -> str:
        stamp = super().new_timestamp()
        self.stamps.append(stamp)
        return stamp


# --- what counts as a secret, and finding one ----------------------------------------


def encodings(secret: str) -> set[str]:
    """``secret`` and its base64 at each of the three alignments it can have
    inside a longer base64 text (as in a SASL PLAIN or XOAUTH2 payload),
    less the characters its neighbours share."""
    data = secret.encode()
    found = {secret}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + data).decode().rstrip("=")
        skip = -(-pad * 4 // 3)  # characters that hold bits of the padding
        found.add(encoded[skip:len(encoded) - 3])  # the last ones hold bits of whatever follows
    return {f for f in found if len(f) >= 8}


def sent(line: str) -> set[str]:
    """A secret-bearing argument rpop sent: as sent, and decoded when base64."""
    found = {line}
    try:
        found.add(base64.b64decode(line, validate=True).decode("latin-1"))
    except ValueError:
        pass
    return found


def secret_forms(passwords: Iterable[str], arguments: Iterable[str] = ()) -> set[str]:
    """Every form a secret may take: each password or token in its
    :func:`encodings`, each argument rpop sent as sent and decoded."""
    forms: set[str] = set()
    for secret in passwords:
        forms |= encodings(secret)
    for line in arguments:
        forms |= sent(line)
    return {f for f in forms if len(f) >= 8}


def windows(forms: Iterable[str]) -> set[str]:
    """The lower-case windows a leak would show (see :data:`WINDOW`); those
    of four characters or fewer repeated (a token's padding) say nothing."""
    found = set()
    for form in forms:
        form = form.lower()
        starts = range(0, max(1, len(form) - WINDOW + 1), STRIDE)
        for start in [*starts, max(0, len(form) - WINDOW)]:
            window = form[start:start + WINDOW]
            if len(set(window)) > 4:
                found.add(window)
    return found


def leaks(text: str, secret_windows: set[str]) -> list[str]:
    """The windows ``text`` holds, case ignored."""
    lowered = text.lower()
    return [w for w in secret_windows if w in lowered]


# --- one way ------------------------------------------------------------------------


@attrs.define
class WayResult(Findings):
    """What the cuts of one way found (the JSON of the bench command)."""

    way: str
    lines: int = 0  # rpop sends in a whole session
    cuts: int = 0
    errors: dict[str, int] = attrs.field(factory=dict)  # error code -> cuts
    places: int = 0  # outputs and files searched, all cuts together
    searched: int = 0  # characters searched
    leaks: int = 0
    unclear: int = 0  # cuts without one known error code, or with a traceback
    seconds: float = 0.0


def problems(result: WayResult) -> list[str]:
    """The promises this way broke (empty: none)."""
    return ["no cut ran"] * (result.cuts == 0) + broken(result, (
        ("leaks", "places hold a secret"), ("unclear", "cuts without one clear error code")))


def message(n: int) -> Message:
    """A message for a local account and an unknown one: a bounce each."""
    return Message(f"m{n}", (f"Return-Path: <dana@far.test>\nX-Real-To: {kill.LOCAL_USER}@{kill.DOMAIN}\n"
                             f"X-Real-To: nobody@{kill.DOMAIN}\nSubject: secrets {n}\n\nbody {n}\n").encode())


def record(way: Way, server: ScriptableServer, oauth2: str = "") -> str:
    """The declarative table of the unified record that polls ``server``
    (``oauth2``: its ``oauth2 = {...}`` line)."""
    return (f'[[unified]]\naccount = "{ACCOUNT}"\nhost = "{server.host}:{server.port}"\npassword = "{way.password}"\n'
            f'auth = "{way.auth}"\nleave = false\nstarttls = "never"\ntimeout = "{TIMEOUT}"\n'
            f'special_field = "X-Real-To"\n{oauth2}')


async def run_way(way: Way, folder: Path, *, env: dict | None = None,
                  log: Callable[[str], None] = lambda text: None) -> WayResult:
    """Cut a whole session of ``way`` at each line rpop sends, dropping and
    stalling; ``folder`` (fresh) holds the site."""
    clock = time.monotonic()
    result = WayResult(way.name)
    provider, tokens = None, [way.password]
    if way.oauth2:
        provider = OAuth2Provider(client_secret="cs-" + "k7" * 20, token_size=TOKEN_SIZE).start()
        tokens += [provider.client_secret, provider.add_account(ACCOUNT)]
    sasl = {}
    if way.sasl == "PLAIN":
        sasl = {"PLAIN": PlainSasl(ACCOUNT, way.password)}
    elif way.sasl:
        sasl = {way.sasl: OneChallenge(CHALLENGE if way.sasl == "CRAM-MD5" else b"")}
    server = RecordingServer(user=ACCOUNT, password=way.password, apop=way.apop, sasl=sasl, max_line=65536)
    await server.start()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        table = record(way, server, provider.record_table(tokens[-1]) if provider else "")
        site = await asyncio.to_thread(kill.KillSite, folder, None, "maildir", False, env, record=table)
        server.add(message(0))
        clean = await asyncio.to_thread(site.poll)
        if clean.error or clean.returncode:
            raise RuntimeError(f"{way.name}: an uncut poll failed ({clean.error}: {clean.stderr.strip()[-300:]})")
        (session,) = server.sessions
        result.lines = len(session.commands) + len(session.sasl_responses)
        for n in range(1, result.lines + 1):
            for how in ("drop", "stall"):
                server.faults = Faults(cut_at_line=(n, how))
                server.add(message(result.cuts + 1))
                as_json = (n + (how == "stall")) % 2 == 0  # each line's cut shows in both forms
                poll = await asyncio.to_thread(site.poll, json=as_json)
                status = await asyncio.to_thread(site.rpop, "-c", site.config, "status", "--json")
                (row,) = json.loads(status)
                result.cuts += 1
                result.errors[str(row["error"])] = result.errors.get(str(row["error"]), 0) + 1
                at = f"line {n}, {how}"
                if why := unclear(row["error"], poll.stderr, site.log_text()):
                    result.unclear += 1
                    result.note(f"{at}: {why}")
                outputs = [(f"{at}: poll stdout", poll.stdout), (f"{at}: poll stderr", poll.stderr),
                           (f"{at}: status --json", status), *_files(folder, at)]
                _search(result, outputs, tokens + (provider.issued if provider else []), server, way.password)
        log(f"    {way.name}: {result.cuts} cuts of {result.lines} lines, {result.leaks} leaks")
    finally:
        server.faults = Faults()
        await server.stop()
        if provider is not None:
            provider.stop()
    result.seconds = round(time.monotonic() - clock, 1)
    return result


def _files(folder: Path, at: str) -> list[tuple[str, str]]:
    """Every file of the site but the declarative file, as text."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "decl.toml":
            found.append((f"{at}: {path.relative_to(folder)}", path.read_bytes().decode("latin-1")))
    return found


def _search(result: WayResult, outputs: list[tuple[str, str]], tokens: list[str], server: RecordingServer,
            password: str) -> None:
    """Look for every secret known so far in ``outputs``: ``tokens`` (the
    password, the OAuth 2.0 client secret, refresh and access tokens) and
    every secret-bearing argument the server was sent."""
    arguments = []
    for session in server.sessions:
        arguments += session.sasl_responses
        for command in session.commands:
            verb, _, rest = command.partition(" ")
            words = rest.split(" ")
            if verb.upper() == "PASS":
                arguments.append(rest)
            elif verb.upper() == "APOP" and len(words) == 2:
                arguments.append(words[1])
            elif verb.upper() == "AUTH" and len(words) == 2:  # an initial response
                arguments.append(words[1])
    arguments += [hashlib.md5((stamp + password).encode()).hexdigest() for stamp in server.stamps]
    secret_windows = windows(secret_forms(tokens, arguments))
    for place, text in outputs:
        result.places += 1
        result.searched += len(text)
        found = leaks(text, secret_windows)
        if found:
            result.leaks += 1
            at = text.lower().find(found[0])
            result.note(f"{place} holds {found[0]!r}: ...{text[max(0, at - 60):at + 40]!r}...")


async def run(folder: Path, ways: Iterable[Way] = WAYS, *, env: dict | None = None,
              log: Callable[[str], None] = lambda text: None) -> list[WayResult]:
    """Every way at once (they wait on stalled servers more than they work)."""
    ways = list(ways)
    return list(await asyncio.gather(*(run_way(w, folder / w.name, env=env, log=log) for w in ways)))


def ways_named(names: Iterable[str]) -> list[Way]:
    by_name = {w.name: w for w in WAYS}
    return [by_name[n] for n in names]

