"""When records are due: first polls, periods with jitter, failure delays,
activity windows.  Pure functions of an explicit clock."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from rpopcore import activity, schedule
from rpopcore.model import ModuleSettings, PollStatus, RecordKind, RemoteRecord

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday


def record(rid=1, host="pop.isp.test", every=600) -> RemoteRecord:
    return RemoteRecord(kind=RecordKind.REMOTE, id=rid, owner="a@example.test", account="a", host=host, poll_every=every)


def status(rid=1, error=None, at=T0) -> PollStatus:
    return PollStatus(rid, last_success=None if error else at, last_attempt=at, error=error)


def test_never_polled_records_are_due_within_20_seconds_of_start():
    for rid in range(1, 200):
        when = schedule.due(record(rid), None, ModuleSettings(), T0, {})
        assert when.reason == "first-poll"
        assert T0 <= when.at < T0 + dt.timedelta(seconds=20)


def test_due_after_the_period_plus_a_fixed_jitter_of_at_most_ten_percent_or_a_minute():
    offsets = []
    for rid in range(1, 1001):
        when = schedule.due(record(rid), status(rid), ModuleSettings(), T0, {})
        offset = (when.at - T0).total_seconds() - 600
        assert 0 <= offset < 60
        offsets.append(offset)
        assert when == schedule.due(record(rid), status(rid), ModuleSettings(), T0, {}), "jitter is fixed per record"
    # A thousand records on 10m do not all connect in the same second.
    assert max(sum(1 for o in offsets if int(o) == s) for s in range(60)) < 60
    for rid in range(1, 100):
        short = schedule.due(record(rid, every=60), status(rid), ModuleSettings(), T0, {})
        assert 60 <= (short.at - T0).total_seconds() < 66


def test_disabled_records_are_never_due():
    assert schedule.due(record(every=None), None, ModuleSettings(), T0, {}) == schedule.Due(None, "disabled")


def test_an_account_failure_waits_delay_failed_accounts():
    settings = ModuleSettings(delay_failed_accounts="30m")
    for code in ("auth-failed", "mailbox-locked", "protocol-error", "timeout"):
        when = schedule.due(record(), status(error=code), settings, T0, {})
        assert (when.at, when.reason) == (T0 + dt.timedelta(minutes=30), "account-delayed")
    # A failure that is not the account's does not delay it.
    when = schedule.due(record(), status(error="delivery-failed"), settings, T0, {})
    assert when.reason == "scheduled"


def test_a_host_failure_delays_every_record_on_that_host_until_it_expires():
    settings = ModuleSettings(delay_failed_hosts="1h")
    records = [record(1), record(2), record(3, host="other.isp.test")]
    statuses = {1: status(1, error="connect-failed"), 2: status(2, at=T0 - dt.timedelta(minutes=20)), 3: status(3)}
    delays = schedule.host_delays(records, statuses, settings)
    assert delays == {"pop.isp.test": T0 + dt.timedelta(hours=1)}
    assert schedule.due(records[1], statuses[2], settings, T0, delays) == schedule.Due(T0 + dt.timedelta(hours=1), "host-delayed")
    assert schedule.due(records[2], statuses[3], settings, T0, delays).reason == "scheduled"
    # Once the delay has passed, the record is due on its own schedule again.
    later = {2: status(2, at=T0 + dt.timedelta(hours=2))}
    assert schedule.due(records[1], later[2], settings, T0, delays).reason == "scheduled"


def test_outside_the_activity_schedule_nothing_is_due_before_the_next_window():
    settings = ModuleSettings(activity_schedule=["Mon-Fri 08:00-18:30"], time_zone="UTC")
    evening = dt.datetime(2026, 3, 6, 18, 25, tzinfo=UTC)  # Friday
    when = schedule.due(record(), status(at=evening), settings, evening, {})
    assert when == schedule.Due(dt.datetime(2026, 3, 9, 8, 0, tzinfo=UTC), "activity-schedule")


def windows(*texts):
    return activity.parse_schedule(texts)


@pytest.mark.parametrize(
    "texts, local, allowed",
    [
        (["Mon-Fri 08:00-18:30"], "2026-03-02 08:00", True),
        (["Mon-Fri 08:00-18:30"], "2026-03-02 18:30", False),
        (["Mon-Fri 08:00-18:30"], "2026-03-07 10:00", False),  # Saturday
        (["Sat 09:00-12:00"], "2026-03-07 11:59", True),
        (["Daily 22:00-06:00"], "2026-03-03 23:30", True),  # across midnight, evening part
        (["Daily 22:00-06:00"], "2026-03-04 05:59", True),  # ... and the morning after
        (["Daily 22:00-06:00"], "2026-03-04 06:00", False),
        (["Sun 22:00-02:00"], "2026-03-09 01:00", True),  # Sunday night runs into Monday: week boundary
        (["Sun 22:00-02:00"], "2026-03-02 01:00", True),
        (["Sun 22:00-02:00"], "2026-03-03 01:00", False),
        (["Fri-Mon 10:00-11:00"], "2026-03-08 10:30", True),  # a day range across the week's end
        (["Fri-Mon 10:00-11:00"], "2026-03-04 10:30", False),
    ],
)
def test_activity_windows(texts, local, allowed):
    tz = activity.zone("UTC")
    moment = dt.datetime.fromisoformat(local).replace(tzinfo=UTC)
    assert activity.allowed(windows(*texts), tz, moment) is allowed


def test_windows_keep_their_wall_clock_hours_across_dst():
    tz = activity.zone("Europe/Berlin")
    w = windows("Daily 08:00-09:00")
    # Berlin switches to summer time on 29 March 2026: 08:00 local is 07:00 UTC before and 06:00 UTC after.
    assert activity.next_allowed(w, tz, dt.datetime(2026, 3, 28, 12, 0, tzinfo=UTC)) == dt.datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert activity.next_allowed(w, tz, dt.datetime(2026, 3, 27, 12, 0, tzinfo=UTC)) == dt.datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    # The autumn change (25 October 2026): 08:00 local goes back to 07:00 UTC.
    assert activity.next_allowed(w, tz, dt.datetime(2026, 10, 25, 0, 0, tzinfo=UTC)) == dt.datetime(2026, 10, 25, 7, 0, tzinfo=UTC)


def test_bad_windows_are_refused_with_the_form_to_use():
    for bad in ("Monday 8-9", "Mon 25:00-26:00", "Xyz 08:00-09:00", "Mon-Fri"):
        with pytest.raises(ValueError, match="Mon|times|days"):
            activity.parse_window(bad)


@freeze_time("2026-03-07 10:00:00")  # a Saturday
def test_poll_once_refuses_outside_the_schedule_with_the_next_window():
    from rpopcore import errors
    from rpopcore.service import refuse_outside_schedule

    with pytest.raises(errors.ConfigError, match="2026-03-09T08:00:00Z"):
        refuse_outside_schedule(ModuleSettings(activity_schedule=["Mon-Fri 08:00-18:30"]))
    refuse_outside_schedule(ModuleSettings(activity_schedule=["Sat 09:00-12:00"]))
