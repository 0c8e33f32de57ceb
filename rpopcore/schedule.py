"""When is each record due?  Pure functions of the records, their latest
statuses, the module settings and the time, so the daemon and ``rpop
status`` (another process) agree, and tests need no clock but an argument.

* A record never polled is due within 20 seconds of the daemon's start.
* Otherwise it is due ``poll_every`` after its latest attempt, plus a jitter
  of up to 10 % of the period (at most a minute) that is fixed per record,
  so a thousand records set to 10m spread out instead of connecting in the
  same second.
* After an account failure (the seed's Delay Failed Accounts: the mailbox
  could not be opened, or the connection broke during retrieval) the next
  attempt waits ``delay_failed_accounts`` from the failed attempt.
* After a failure to connect to a host (Delay Failed Hosts), no record on
  that host is due before ``delay_failed_hosts`` has passed since the
  failure: status shows ``host-delayed``.
* Outside the activity schedule nothing is due before the next window.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Iterable, Mapping

import attrs

from rpopcore import activity
from rpopcore.errors import ERROR_CODES, PollError
from rpopcore.model import ModuleSettings, PollStatus, RemoteRecord

START_SPREAD = 20.0
#: The reasons that mean "later than the record's own schedule".
DELAYS = ("account-delayed", "host-delayed", "activity-schedule")
#: The error codes that delay every record on the host (Delay Failed Hosts).
HOST_FAILURES = tuple(sorted(code for code, cls in ERROR_CODES.items()
                             if issubclass(cls, PollError) and cls.host_failure))


@attrs.frozen
class Due:
    """When a record may next be polled, and why not sooner.  ``at`` is None
    for a disabled record."""

    at: dt.datetime | None
    reason: str = "scheduled"  # scheduled | first-poll | account-delayed | host-delayed | activity-schedule | disabled


def jitter(record_id: int, period: int) -> float:
    """A fixed per-record offset in [0, min(10 % of period, 60 s))."""
    return random.Random(record_id).random() * min(period * 0.1, 60.0)


def _failure(code: str | None) -> type[PollError] | None:
    cls = ERROR_CODES.get(code or "")
    return cls if cls is not None and issubclass(cls, PollError) else None


def host_delays(
    records: Iterable[RemoteRecord], statuses: Mapping[int, PollStatus], settings: ModuleSettings
) -> dict[str, dt.datetime]:
    """Host -> until when it is delayed, from connect failures on any record."""
    delays: dict[str, dt.datetime] = {}
    for record in records:
        status = statuses.get(record.id)
        failure = _failure(status.error) if status else None
        if failure is not None and failure.host_failure and status.last_attempt is not None:
            until = status.last_attempt + dt.timedelta(seconds=settings.delay_failed_hosts)
            host = record.address[0].lower()
            delays[host] = max(until, delays.get(host, until))
    return delays


def due(
    record: RemoteRecord,
    status: PollStatus | None,
    settings: ModuleSettings,
    started: dt.datetime,
    delays: Mapping[str, dt.datetime],
    spread: float | None = None,
) -> Due:
    """When ``record`` is next due, given the daemon's start time.  A record
    never polled is due within ``spread`` seconds of it."""
    if record.poll_every is None:
        return Due(None, "disabled")
    if status is None or status.last_attempt is None:
        spread = START_SPREAD if spread is None else spread
        at = started + dt.timedelta(seconds=random.Random(record.id).random() * spread)
        result = Due(at, "first-poll")
    else:
        failure = _failure(status.error)
        if failure is not None and failure.account_failure:
            result = Due(status.last_attempt + dt.timedelta(seconds=settings.delay_failed_accounts), "account-delayed")
        else:
            wait = record.poll_every + jitter(record.id, record.poll_every)
            result = Due(status.last_attempt + dt.timedelta(seconds=wait), "scheduled")
    host_until = delays.get(record.address[0].lower())
    if host_until is not None and host_until > result.at:
        result = Due(host_until, "host-delayed")
    if settings.activity_schedule:
        windows = activity.parse_schedule(settings.activity_schedule)
        opens = activity.next_allowed(windows, activity.zone(settings.time_zone), result.at)
        if opens > result.at:
            result = Due(opens, "activity-schedule")
    return result
