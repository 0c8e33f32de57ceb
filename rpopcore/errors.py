"""Errors as types, each mapped to one stable error code.

The code is what users see in ``status`` (the seed's "Last" field holds it after
a failed poll), in ``poll --json`` and in logs.  Codes never change once
published; :data:`ERROR_CODES` lists them all, built from the classes below.
"""

from __future__ import annotations


class RpopError(Exception):
    """Base of every error rpop reports to a user."""

    code = "internal-error"


class ConfigError(RpopError):
    """Bad input: a file, key or value the user must fix.  The CLI prints the
    message as one line and exits with status 2."""

    code = "bad-config"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        #: The key at fault (``host``, ``poll_every``), when one is: the web
        #: pages show the error beside that field, the API names it.
        self.field = field
        #: Which entry of a declaration, as ``(kind, index)`` (``("remote",
        #: 2)`` for the second ``[[remote]]``), when the error is one entry's.
        self.entry: tuple[str, int] | None = None


class LimitExceeded(ConfigError):
    """A change would break a limit set for users (``max_accounts_per_user``,
    ``min_poll_period_for_users``): well-formed, refused by policy."""


class PollError(RpopError):
    """A poll of one record failed; ``code`` says why.

    ``account_failure`` marks errors that the scheduler treats as "the mailbox
    could not be opened or the connection broke during retrieval" (the seed's
    Delay Failed Accounts); ``host_failure`` marks "could not connect to the
    host" (Delay Failed Hosts).
    """

    code = "poll-failed"
    account_failure = True
    host_failure = False
    #: The RFC 2449 response code of the server's -ERR behind this error, if any.
    response_code = ""


class ConnectFailed(PollError):
    """The TCP connection to the host could not be made."""

    code = "connect-failed"
    account_failure = False
    host_failure = True


class TlsFailed(PollError):
    """TLS could not be set up: the handshake failed, the certificate could not
    be verified, or TLS was required and the server does not offer it."""

    code = "tls-failed"


class AuthFailed(PollError):
    """The server refused the credentials."""

    code = "auth-failed"


class MailboxLocked(PollError):
    """``-ERR [IN-USE]``: another session holds the remote mailbox."""

    code = "mailbox-locked"


class LoginDelay(PollError):
    """``-ERR [LOGIN-DELAY]``: the server allows logins only so often."""

    code = "login-delay"


class NoUidl(PollError):
    """The server has no UIDL, so mail cannot be left on it safely."""

    code = "no-uidl"


class ProtocolError(PollError):
    """The server's answer was malformed, truncated or out of order."""

    code = "protocol-error"


class Timeout(PollError):
    """A network step took longer than the record's ``timeout``."""

    code = "timeout"


class ServerTemporaryFailure(PollError):
    """``-ERR [SYS/TEMP]`` (RFC 3206): the server has a passing problem."""

    code = "server-temporary"


class ServerPermanentFailure(PollError):
    """``-ERR [SYS/PERM]`` (RFC 3206): the server says retrying will not help."""

    code = "server-permanent"


class ServerRefused(PollError):
    """The server listed a message and then refused to hand it over (``-ERR``
    to RETR).  The others were retrieved; the refused ones stay on the
    server and are asked for again at the next poll.  A failure, not a
    success: mail the server holds is not arriving, and ``status`` must say
    so.  An account failure: retried after ``delay_failed_accounts``, as a
    server that refuses now will likely refuse again in a minute."""

    code = "server-refused"


class DeliveryFailed(PollError):
    """Local delivery failed temporarily; the message stays on the server."""

    code = "delivery-failed"
    account_failure = False


class SelfPollRefused(PollError):
    """The host resolves to one of this machine's own addresses."""

    code = "self-poll-refused"
    account_failure = False


class HostDelayed(PollError):
    """Not polled: connecting to this record's host failed a moment ago, and
    the host waits ``delay_failed_hosts`` before anyone tries it again."""

    code = "host-delayed"
    account_failure = False


class RecordBusy(PollError):
    """Not polled: another process or worker is polling this record now."""

    code = "record-busy"
    account_failure = False


class StateFailed(PollError):
    """The state store could not be read or written (a full disk, an I/O
    error, a database another program damaged).  Whatever was not recorded
    stays on the server; the next poll after the fault is gone finishes it."""

    code = "state-failed"
    account_failure = False


class MechanismUnavailable(PollError):
    """The chosen authentication mechanism cannot be used with this server;
    in ``auto`` selection the next mechanism is tried."""

    code = "auth-unavailable"


class SecretUnavailable(PollError):
    """The record's secret cannot be read: key file, environment variable or
    password file missing or wrong."""

    code = "secret-unavailable"
    account_failure = False


def _all_codes() -> dict[str, type[RpopError]]:
    table: dict[str, type[RpopError]] = {}
    pending: list[type[RpopError]] = [RpopError]
    while pending:
        cls = pending.pop()
        table.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return table


#: Every stable error code and the error type that carries it.
ERROR_CODES: dict[str, type[RpopError]] = _all_codes()
