"""A real PostgreSQL for the tests.

``PostgreSQL()`` runs Debian's ``initdb`` into a fresh temporary directory
and ``pg_ctl start`` on a free loopback port (no Unix socket outside that
directory, nothing from /etc/postgresql read).  PostgreSQL refuses to run as
root, so when the tests run as root (CI does) the cluster belongs to the
unprivileged ``postgres`` user the Debian package creates (or the test mail
user otherwise).  ``create_database()`` makes an empty database and returns
its DSN; ``stop()`` ends the server and removes the directory.

Missing binaries raise :class:`PostgreSQLNotInstalled` naming the package:
the fixtures turn it into a failure, never a skip.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from rpopcore.testing import HOST, ensure_mail_user, free_port

INSTALL_HINT = "apt-get update && apt-get install -y postgresql"
SUPERUSER = "rpoptest"


class PostgreSQLNotInstalled(RuntimeError):
    """initdb or pg_ctl is missing."""


def find_binary(name: str) -> str | None:
    """``initdb``/``pg_ctl``: on PATH, or in Debian's versioned folder (the
    newest version there)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _owner() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return ensure_mail_user()


class PostgreSQL:
    """One throw-away cluster on 127.0.0.1; trust authentication (loopback
    only)."""

    _names = itertools.count(1)

    def __init__(self):
        binaries = {name: find_binary(name) for name in ("initdb", "pg_ctl")}
        missing = [name for name, path in binaries.items() if path is None]
        if missing:
            raise PostgreSQLNotInstalled(
                f"PostgreSQL is required for these tests but {', '.join(missing)} is missing; "
                f"install it with: {INSTALL_HINT}"
            )
        self.initdb, self.pg_ctl = binaries["initdb"], binaries["pg_ctl"]
        self.host = HOST
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="rpop-pg-"))
        self.data = self.folder / "data"
        self.owner = _owner()

    def _run(self, *argv: str) -> None:
        def drop_privileges():
            if self.owner is not None:
                os.setgid(self.owner[1])
                os.setuid(self.owner[0])

        proc = subprocess.run(argv, preexec_fn=drop_privileges, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, cwd=self.folder)
        if proc.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip()}\n{tail}")

    def start(self) -> "PostgreSQL":
        if self.owner is not None:
            os.chown(self.folder, *self.owner)
        self._run(self.initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        options = (f"-c listen_addresses={self.host} -c port={self.port} "
                   f"-c unix_socket_directories={self.folder} -c fsync=off -c full_page_writes=off "
                   f"-c max_connections=200 -c shared_buffers=16MB")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        return self

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its DSN."""
        import psycopg

        name = f"rpop_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except RuntimeError:
                pass  # already down
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "PostgreSQL":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- PostgreSQL ------------------------------------------------------------


@pytest.fixture(scope="session")
def postgresql_server():
    """A real PostgreSQL on 127.0.0.1 for the whole run
    (:class:`PostgreSQL`); fails, never skips,
    without the binaries."""
    try:
        server = PostgreSQL()
    except PostgreSQLNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgresql_dsn(postgresql_server) -> str:
    """The DSN of a new, empty database on the session's PostgreSQL."""
    return postgresql_server.create_database()
