"""The shared state store: PostgreSQL, for several ``rpop run`` workers on
one or more machines.

Site file::

    [state]
    plugin = "postgresql"
    dsn = "postgresql://rpop@db.example.com/rpop"   # or:
    dsn_env = "RPOP_DSN"        # the DSN read from this environment variable
    lease_timeout = "30s"       # a vanished worker's records are free after this
    pool_size = 10              # connections per process, besides the lease one

Records, settings, the directory, UIDs, per-recipient progress, the
delivery journal and statuses live in tables (:mod:`.schema`, migrated on
start and by ``rpop migrate``); leases are advisory locks that end with
their holder's connection (:mod:`.leases`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rpopcore.api import ConfigError, Key, StateFailed, duration, hookimpl, integer, non_empty_string, read_table

if TYPE_CHECKING:
    from .store import PostgresStore

__all__ = ["PostgresStore", "make_store"]


def __getattr__(name: str):
    # psycopg is imported when a site uses this store, not whenever rpop
    # loads its plugins: every command of an SQLite site would pay 0.1 s.
    if name == "PostgresStore":
        from .store import PostgresStore

        return PostgresStore
    raise AttributeError(name)

KEYS = {
    "dsn": Key(non_empty_string, None),
    "dsn_env": Key(non_empty_string, None),
    "lease_timeout": Key(duration, 30),
    "pool_size": Key(integer, 10),
}


def make_store(options, base_dir: Path) -> PostgresStore:
    values = read_table(dict(options), KEYS, "[state]")
    if (values["dsn"] is None) == (values["dsn_env"] is None):
        raise ConfigError(
            "[state]: give the database as exactly one of 'dsn' (\"postgresql://user@host/db\") "
            "or 'dsn_env' (the name of an environment variable holding it)"
        )
    dsn = values["dsn"]
    if dsn is None:
        dsn = os.environ.get(values["dsn_env"], "").strip()
        if not dsn:
            raise ConfigError(
                f"[state] key 'dsn_env': the environment variable {values['dsn_env']} is not set or empty; "
                "set it to the database's DSN"
            )
    if not 5 <= values["lease_timeout"] <= 3600:
        raise ConfigError("[state] key 'lease_timeout': expected from 5s to 1h")
    if values["pool_size"] < 1:
        raise ConfigError("[state] key 'pool_size': expected 1 or more")
    from .store import PostgresStore

    return PostgresStore(dsn, describe(dsn), values["lease_timeout"], values["pool_size"])


def describe(dsn: str) -> str:
    """The database as errors name it: ``postgresql://HOST:PORT/NAME``,
    without user or password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        raise ConfigError(
            "[state] key 'dsn': not a PostgreSQL connection string; "
            "expected postgresql://USER@HOST[:PORT]/DATABASE or 'host=... dbname=...'"
        ) from None
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"postgresql://{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


@hookimpl
def rpop_state_stores():
    return {"postgresql": make_store}
