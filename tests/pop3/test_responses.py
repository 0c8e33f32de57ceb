"""Parsing server answers: status lines, response codes, listings."""

from __future__ import annotations

import pytest

from rpopcore import errors
from rpopcore.pop3.responses import (
    Capabilities,
    StatusLine,
    apop_timestamp,
    error_for,
    parse_list,
    parse_uidl,
)


@pytest.mark.parametrize(
    "line, code, error",
    [
        (b"-ERR [IN-USE] locked\r\n", "IN-USE", errors.MailboxLocked),
        (b"-ERR [LOGIN-DELAY 900] later\r\n", "LOGIN-DELAY", errors.LoginDelay),
        (b"-ERR [SYS/TEMP] disk\r\n", "SYS/TEMP", errors.ServerTemporaryFailure),
        (b"-ERR [SYS/PERM] gone\r\n", "SYS/PERM", errors.ServerPermanentFailure),
        (b"-ERR [AUTH] bad password\r\n", "AUTH", errors.AuthFailed),
    ],
)
def test_response_codes_map_to_errors(line, code, error):
    status = StatusLine.parse(line)
    assert (status.ok, status.code) == (False, code)
    assert isinstance(error_for(status, "PASS"), error)


def test_an_error_without_code_at_login_is_auth_failed_and_elsewhere_protocol_error():
    status = StatusLine.parse(b"-ERR no\r\n")
    assert isinstance(error_for(status, "PASS"), errors.AuthFailed)
    assert isinstance(error_for(status, "UIDL"), errors.ProtocolError)


def test_garbage_is_a_protocol_error():
    with pytest.raises(errors.ProtocolError):
        StatusLine.parse(b"HTTP/1.1 400 Bad Request\r\n")


def test_sasl_continuation():
    status = StatusLine.parse(b"+ dGVzdA==\r\n")
    assert status.continuation and status.text == "dGVzdA=="
    assert StatusLine.parse(b"+\r\n").continuation


def test_apop_timestamp_from_greeting():
    assert apop_timestamp(StatusLine.parse(b"+OK ready <1896.697170952@dbc.mtview.ca.us>\r\n")) == "<1896.697170952@dbc.mtview.ca.us>"
    assert apop_timestamp(StatusLine.parse(b"+OK ready\r\n")) is None


def test_capabilities():
    caps = Capabilities.parse(b"TOP\nUSER\nPIPELINING\nSASL PLAIN CRAM-MD5\n")
    assert caps.pipelining and caps.has("user") and caps.sasl == ("PLAIN", "CRAM-MD5")
    assert not Capabilities().known


def test_listings():
    assert parse_uidl(b"1 abc\n2 def\n") == {1: "abc", 2: "def"}
    assert parse_list(b"1 120\n2 4000\n") == {1: 120, 2: 4000}
    for bad in (b"1 a\n2 a\n", b"x y\n", b"1 a b\n"):
        with pytest.raises(errors.ProtocolError):
            parse_uidl(bad)
