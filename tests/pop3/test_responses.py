"""Parsing server answers: status lines, response codes, listings."""

from __future__ import annotations

import re

import pytest

from rpopcore import errors
from rpopcore.pop3.responses import (
    MAX_MESSAGES,
    Capabilities,
    StatusLine,
    apop_timestamp,
    error_for,
    parse_list,
    parse_stat,
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
    assert parse_uidl(b"1 abc\n2 def\n", 2) == {1: "abc", 2: "def"}
    assert parse_uidl(b" 1  abc \r\n\n2\tdef\n", 2) == {1: "abc", 2: "def"}, "spaces and blank lines are tolerated"
    assert parse_list(b"1 120\n2 4000 extra\n", 2) == {1: 120, 2: 4000}
    assert parse_uidl(b"", 0) == {}
    for bad in (b"1 a\n2 a\n", b"x y\n", b"1 a b\n", b"1 " + b"u" * 71 + b"\n", b"1 caf\xc3\xa9\n"):
        with pytest.raises(errors.ProtocolError):
            parse_uidl(bad, 2)


@pytest.mark.parametrize(
    "body, count, detail",
    [
        (b"1 a\n3 c\n", 2, "UIDL lists message 3, but STAT counts 2 messages"),
        (b"0 z\n1 a\n", 2, "UIDL lists message 0, but STAT counts 2 messages"),
        (b"1 a\n", 2, "UIDL leaves out message 2 of the 2 STAT counts (1 listed)"),
        (b"1 a\n1 b\n", 2, "duplicate entry in UIDL listing: a message number is listed twice"),
        (b"99999999999 a\n", 1, "malformed UIDL line"),
    ],
    ids=["beyond-stat", "zero", "left-out", "duplicate-number", "absurd-number"],
)
def test_a_listing_must_name_each_message_stat_counts_once(body, count, detail):
    with pytest.raises(errors.ProtocolError, match=re.escape(detail)):
        parse_uidl(body, count)
    with pytest.raises(errors.ProtocolError, match=re.escape(detail.replace("UIDL", "LIST"))):
        parse_list(body.replace(b"a", b"10").replace(b"b", b"20").replace(b"c", b"30").replace(b"z", b"0"), count)


@pytest.mark.parametrize(
    "text",
    ["1000001 100", "5 " + "9" * 21, "5", "-1 0", "x 0", "\u0661 0"],
    ids=["too-many-messages", "absurd-size", "no-size", "negative", "not-a-number", "arabic-digit"],
)
def test_a_stat_beyond_the_limits_is_refused_before_anything_is_made_of_it(text):
    with pytest.raises(errors.ProtocolError):
        parse_stat(text)
    assert parse_stat(f"{MAX_MESSAGES} 123 more") == (MAX_MESSAGES, 123)
