"""The seed's "Last" field in words: when the latest poll succeeded, in the
module's time zone, or what went wrong in one sentence, and when the next
attempt is due and why."""

from __future__ import annotations

import datetime as dt

from rpopcore import activity, errors

#: Why the next attempt is when it is, for each reason :func:`rpopcore.schedule.due` gives.
NEXT_REASONS = {
    "scheduled": "on schedule",
    "first-poll": "first poll",
    "account-delayed": "the mailbox failed: delay_failed_accounts",
    "host-delayed": "the host failed: delay_failed_hosts",
    "activity-schedule": "outside the activity schedule",
    "disabled": "disabled",
}


def explain(code: str) -> str:
    """One line in words for an error code: its error type's summary."""
    kind = errors.ERROR_CODES.get(code)
    if kind is None or not kind.__doc__:
        return "the poll failed"
    return " ".join(kind.__doc__.split("\n\n")[0].split())


def local_time(iso: str | None, zone_name: str) -> str | None:
    """An ISO time as ``2026-12-03 14:05`` in the module's time zone."""
    if not iso:
        return None
    moment = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.astimezone(activity.zone(zone_name)).strftime("%Y-%m-%d %H:%M")


def describe_last(row: dict, zone_name: str) -> dict:
    """``row`` is :func:`rpopcore.service.status_row`'s.  Returns ``when``
    (the last success, local time, or None), ``error`` (the code or None),
    ``sentence`` (the whole Last field in words) and ``next``."""
    when = local_time(row.get("last_success"), zone_name)
    following = local_time(row.get("next_due"), zone_name)
    delayed = row.get("delayed")
    if row.get("poll_every") is None:
        next_text = "not polled: disabled"
    elif following:
        reason = NEXT_REASONS.get(delayed["reason"], delayed["reason"]) if delayed else "on schedule"
        next_text = f"next attempt {following} ({reason})"
    else:
        next_text = "next attempt soon"
    if row.get("error"):
        sentence = f"{row['error']}: {explain(row['error'])}"
        if when:
            sentence += f" Last success {when}."
    elif when:
        sentence = f"polled {when}"
    else:
        sentence = "not yet polled"
    return {"when": when, "error": row.get("error"), "sentence": sentence, "next": next_text}
