"""Rules for records, whoever changes them: the CLI, a declarative file, or
(later) web pages acting for an administrator or a user.

The seed's user limits -- Minimum Poll Period for Users and Maximum Number of
Accounts per User -- apply to records a user sets (``set_by = "user"``); an
administrator may set any period and any number.  The count is of the
records a user has set for themselves.
"""

from __future__ import annotations

import collections
from typing import Iterable

from rpopcore import errors
from rpopcore.durations import format_duration
from rpopcore.model import ModuleSettings, RemoteRecord


def check_user_limits(records: Iterable[RemoteRecord], settings: ModuleSettings, where: str = "") -> None:
    """Raise ConfigError when a user-set record breaks a user limit."""
    prefix = f"{where}: " if where else ""
    per_owner: collections.Counter[str] = collections.Counter()
    for record in records:
        if record.set_by != "user":
            continue
        if record.poll_every is not None and record.poll_every < settings.min_poll_period_for_users:
            raise errors.LimitExceeded(
                f"{prefix}record {record.account}@{record.host} for {record.owner}: poll_every "
                f"{format_duration(record.poll_every)} is shorter than the minimum for users, "
                f"{format_duration(settings.min_poll_period_for_users)} (min_poll_period_for_users); "
                "choose a longer period, or have an administrator set it",
                field="poll_every",
            )
        per_owner[record.owner or ""] += 1
    for owner, count in per_owner.items():
        if count > settings.max_accounts_per_user:
            raise errors.LimitExceeded(
                f"{prefix}{owner} has {count} records set by the user, more than max_accounts_per_user = "
                f"{settings.max_accounts_per_user}; remove some, or have an administrator set them",
                field="max_accounts_per_user",
            )


def select_records(records: Iterable[RemoteRecord], which: Iterable[str]) -> list[int]:
    """The ids of the records ``which`` names, in the order named: an id
    (``7``), an owner's address (all their records: ``alice@example.org``)
    or one mailbox of an owner (``alice@example.org/alice.smith@pop.isp.example``,
    the host without its port).  A name that matches nothing is bad input."""
    records = list(records)
    chosen: list[int] = []
    for name in which:
        name = name.strip()
        if name.isdigit():
            matched = [r for r in records if r.id == int(name)]
        elif "/" in name:
            owner, _, mailbox = name.partition("/")
            matched = [r for r in records if (r.owner or "") == owner.lower() and _same_mailbox(r, mailbox)]
        elif "@" in name:
            matched = [r for r in records if (r.owner or "") == name.lower()]
        else:
            matched = []
        if not matched:
            raise errors.ConfigError(
                f"--record {name!r} names no record; give an id, an owner's address or OWNER/ACCOUNT@HOST "
                "('rpop status' lists them)"
            )
        chosen += [r.id for r in matched if r.id not in chosen]
    return chosen


def _same_mailbox(record: RemoteRecord, mailbox: str) -> bool:
    """``account@host`` as a person writes it: the host's case, a port or
    a trailing dot do not matter."""
    account, _, host = mailbox.rpartition("@")
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return record.mailbox == f"{account}@{name.strip('[]').lower().rstrip('.')}"
