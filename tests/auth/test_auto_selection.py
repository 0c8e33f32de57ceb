"""Which mechanism ``auth = "auto"`` (or a named one) uses, over combinations
of greeting, CAPA, TLS, server name, record and module settings.

Every installed mechanism takes part with its real ``offered()`` and
``auto_rank``; what happens inside each exchange is the business of each
plugin's own tests, so here ``authenticate`` is scripted by the row: a
mechanism listed in ``unusable`` raises MechanismUnavailable (the server
cannot do it), one in ``refusing`` raises AuthFailed (it refused the
credentials), any other logs in.

``expect`` reads as the attempts in order, ending with the mechanism that
logged in or the error code of the poll: ``"msn -> cram-md5"``,
``"cram-md5 -> auth-failed"``.  To add a case, add a row.
"""

from __future__ import annotations

import logging

import attrs
import pytest

from rpopcore import errors
from rpopcore.auth import AuthContext, login
from rpopcore.model import ModuleSettings, RemoteRecord
from rpopcore.plugins import plugin_manager
from rpopcore.pop3.responses import Capabilities

TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"


@attrs.frozen
class Row:
    id: str
    expect: str
    #: The words of CAPA's SASL line; "" for no SASL line.
    sasl: str = ""
    tls: bool = False
    #: The APOP timestamp of the greeting, if it has one.
    timestamp: str | None = None
    host: str = "pop.example.net"
    #: More RemoteRecord keys: auth, apop, server_name, options, ...
    record: dict = attrs.field(factory=dict)
    #: ModuleSettings keys.
    settings: dict = attrs.field(factory=dict)
    unusable: frozenset = frozenset()
    refusing: frozenset = frozenset()


ROWS = [
    # --- auto: the first offered mechanism by rank
    Row("no SASL, no timestamp: USER/PASS", "userpass"),
    Row("MSN host name", "msn", host="pop3.email.msn.com"),
    Row("MSN server_name, another address", "msn", host="127.0.0.1", record={"server_name": "pop3.email.msn.com"}),
    Row("MSN name in any case, with a final dot", "msn", record={"server_name": "POP3.Email.MSN.COM."}),
    Row("msn.com itself is no *.msn.com host", "userpass", host="msn.com"),
    Row("a name that only contains msn.com", "userpass", host="pop.msn.com.example.net"),
    Row("MSN host with SASL and APOP on offer: MSN first", "msn", host="pop3.email.msn.com",
        sasl="CRAM-MD5 PLAIN", timestamp=TIMESTAMP, record={"apop": True}),
    Row("APOP: timestamp, record asks, module allows", "apop", timestamp=TIMESTAMP, record={"apop": True}),
    Row("APOP before SASL", "apop", timestamp=TIMESTAMP, record={"apop": True}, sasl="CRAM-MD5 PLAIN"),
    Row("APOP with use_apop off", "userpass", timestamp=TIMESTAMP, record={"apop": True},
        settings={"use_apop": False}),
    Row("APOP with use_apop off, SASL on offer", "cram-md5", timestamp=TIMESTAMP, record={"apop": True},
        settings={"use_apop": False}, sasl="CRAM-MD5 PLAIN"),
    Row("APOP timestamp but the record does not ask", "userpass", timestamp=TIMESTAMP),
    Row("record asks for APOP, greeting has no timestamp", "userpass", record={"apop": True}),
    Row("no TLS, CRAM-MD5 and PLAIN: CRAM-MD5", "cram-md5", sasl="CRAM-MD5 PLAIN"),
    Row("TLS, CRAM-MD5 and PLAIN: PLAIN", "plain", sasl="CRAM-MD5 PLAIN", tls=True),
    Row("TLS, only CRAM-MD5: not in auto", "userpass", sasl="CRAM-MD5", tls=True),
    Row("no TLS, only PLAIN", "plain", sasl="PLAIN"),
    Row("SASL names in lower case", "cram-md5", sasl="cram-md5 plain"),
    Row("SASL with unknown mechanisms only", "userpass", sasl="GSSAPI X-UNKNOWN"),
    # --- auto: falling through
    Row("MSN unusable, then CRAM-MD5", "msn -> cram-md5", host="pop3.email.msn.com", sasl="CRAM-MD5 PLAIN",
        unusable=frozenset({"msn"})),
    Row("CRAM-MD5 and PLAIN unusable, then USER/PASS", "cram-md5 -> plain -> userpass", sasl="CRAM-MD5 PLAIN",
        unusable=frozenset({"cram-md5", "plain"})),
    Row("all unusable", "plain -> userpass -> auth-unavailable", sasl="PLAIN",
        unusable=frozenset({"plain", "userpass"})),
    Row("refused credentials end the attempt", "cram-md5 -> auth-failed", sasl="CRAM-MD5 PLAIN",
        refusing=frozenset({"cram-md5"})),
    Row("MSN refused: no clear-text retry", "msn -> auth-failed", host="pop3.email.msn.com",
        refusing=frozenset({"msn"})),
    # --- a mechanism the record names
    Row("named USER/PASS with everything on offer", "userpass", record={"auth": "userpass", "apop": True},
        host="pop3.email.msn.com", sasl="CRAM-MD5 PLAIN", timestamp=TIMESTAMP),
    Row("named CRAM-MD5 on TLS", "cram-md5", sasl="CRAM-MD5 PLAIN", tls=True, record={"auth": "cram-md5"}),
    Row("named CRAM-MD5 not listed", "auth-unavailable", sasl="PLAIN", record={"auth": "cram-md5"}),
    Row("named PLAIN not listed", "auth-unavailable", sasl="CRAM-MD5", record={"auth": "plain"}),
    Row("named PLAIN without TLS", "plain", sasl="CRAM-MD5 PLAIN", record={"auth": "plain"}),
    Row("named MSN on any host, no SASL", "msn", record={"auth": "msn"}),
    Row("named MSN unusable: no fallback", "msn -> auth-unavailable", record={"auth": "msn"},
        unusable=frozenset({"msn"})),
    Row("named APOP with use_apop off", "auth-unavailable", timestamp=TIMESTAMP, record={"auth": "apop"},
        settings={"use_apop": False}),
    Row("named APOP without record apop", "apop", timestamp=TIMESTAMP, record={"auth": "apop"}),
]


def installed_mechanisms() -> list:
    return [m for contributed in plugin_manager().hook.rpop_auth_mechanisms() for m in contributed]


@attrs.define
class Scripted:
    """An installed mechanism with its real ``offered()`` and rank, whose
    ``authenticate`` does what the row says."""

    real: object
    row: Row
    tried: list

    @property
    def name(self) -> str:
        return self.real.name

    @property
    def auto_rank(self) -> int:
        return self.real.auto_rank

    def offered(self, context) -> bool:
        return self.real.offered(context)

    async def authenticate(self, client, context, secret: str) -> None:
        self.tried.append(self.name)
        if self.name in self.row.unusable:
            raise errors.MechanismUnavailable(f"{self.name} is scripted to be unusable")
        if self.name in self.row.refusing:
            raise errors.AuthFailed(f"{self.name} is scripted to refuse")


def context_for(row: Row) -> AuthContext:
    record = RemoteRecord(kind="remote", owner="alice@example.test", account="alice", host=f"{row.host}:110",
                          **row.record)
    lines = ("USER", "UIDL") + ((f"SASL {row.sasl}",) if row.sasl else ())
    return AuthContext(
        record=record,
        settings=ModuleSettings(**row.settings),
        host_name=record.name,
        apop_timestamp=row.timestamp,
        capabilities=Capabilities(lines=lines, known=True),
        tls_active=row.tls,
    )


def test_every_mechanism_the_table_speaks_of_is_installed():
    names = {m.name for m in installed_mechanisms()}
    assert {"userpass", "apop", "plain", "cram-md5", "msn"} <= names
    mentioned = {word for row in ROWS for word in row.expect.split(" -> ")} - set(errors.ERROR_CODES)
    assert mentioned <= names


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_selection(row: Row):
    tried: list[str] = []
    mechanisms = [Scripted(m, row, tried) for m in installed_mechanisms()]
    try:
        chosen = await login(object(), context_for(row), mechanisms, "secret", logging.getLogger("test"))
    except errors.PollError as exc:
        outcome = tried + [exc.code]
    else:
        assert chosen == tried[-1]
        outcome = tried
    assert " -> ".join(outcome) == row.expect
