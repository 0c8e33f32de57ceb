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
