"""A real Dovecot (POP3, optionally LMTP) for the tests.

``Dovecot(users=..., tls=..., lmtp=...)`` writes a standalone ``dovecot.conf``
(nothing from /etc/dovecot is read) into a fresh temporary directory, and
``start()`` runs ``dovecot -F -c <conf>`` in the foreground as a child process,
listening on 127.0.0.1 on free ports.  ``stop()`` ends it and removes the
directory.  It is also a context manager.

Dovecot will not touch mail as uid 0, so mail belongs to an unprivileged
system user (``rpoptest``, created with ``useradd --system`` when missing);
the helpers ``put``/``put_many``/``messages``/``count`` read and write the
users' Maildirs as that user, and may be used while Dovecot runs.

Must be run as root (Dovecot's master needs it to switch users).
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping

__all__ = [
    "Dovecot",
    "DovecotError",
    "DovecotNotInstalled",
    "DovecotStartError",
    "DEFAULT_AUTH_MECHANISMS",
    "INSTALL_HINT",
    "MAIL_USER",
    "ensure_mail_user",
    "find_dovecot",
    "free_port",
    "missing_dovecot_parts",
    "default_parent",
]

INSTALL_HINT = (
    "apt-get update && apt-get install -y dovecot-core dovecot-pop3d dovecot-lmtpd"
)
DEFAULT_AUTH_MECHANISMS = "plain login apop cram-md5"
MAIL_USER = "rpoptest"
HOST = "127.0.0.1"

_LIBEXEC_DIRS = ("/usr/lib/dovecot", "/usr/libexec/dovecot")


class DovecotError(RuntimeError):
    """Base of the errors raised here."""


class DovecotNotInstalled(DovecotError):
    """The dovecot binaries are missing."""


class DovecotStartError(DovecotError):
    """Dovecot did not come up; the message holds the tail of its log."""


# --- environment -----------------------------------------------------------


def find_dovecot() -> str | None:
    """The path of the ``dovecot`` master binary, or None."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _libexec(name: str) -> str | None:
    for d in _LIBEXEC_DIRS:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def missing_dovecot_parts(*, lmtp: bool = True) -> list[str]:
    """Names of the missing Debian packages (empty when all is installed)."""
    missing = []
    if find_dovecot() is None:
        missing.append("dovecot-core")
    if _libexec("pop3") is None or _libexec("pop3-login") is None:
        missing.append("dovecot-pop3d")
    if lmtp and _libexec("lmtp") is None:
        missing.append("dovecot-lmtpd")
    return missing


_user_lock = threading.Lock()


def ensure_mail_user(name: str = MAIL_USER) -> tuple[int, int]:
    """``(uid, gid)`` of the unprivileged user that owns the test mail;
    the user is created (``useradd --system``, no home, nologin) if missing."""
    with _user_lock:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            if os.geteuid() != 0:
                raise DovecotError(
                    f"user {name!r} does not exist and only root can create it"
                ) from None
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            proc = subprocess.run(
                [useradd, "--system", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", name],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            )
            try:  # another process may have won a race: look again either way
                pw = pwd.getpwnam(name)
            except KeyError:
                raise DovecotError(
                    f"could not create user {name!r}: {proc.stderr.strip()}"
                ) from None
        if pw.pw_uid == 0:
            raise DovecotError(f"mail user {name!r} must not be uid 0")
        return pw.pw_uid, pw.pw_gid


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (bind to port 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_ports(n: int, host: str = HOST) -> list[int]:
    # hold all sockets open together so the n ports differ
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_default_parent_cache: list[str | None] = []


def default_parent() -> str | None:
    """Where instances make their directories: ``$RPOP_DOVECOT_TMPDIR`` if
    set, else ``/dev/shm`` when it is a roomy (>= 1 GiB free) world-writable
    tmpfs -- creating thousands of small files there is ~40x faster than
    on a VM's ext4 -- else None (the ``tempfile`` default)."""
    env = os.environ.get("RPOP_DOVECOT_TMPDIR")
    if env:
        return env
    if not _default_parent_cache:
        choice = None
        try:
            st = os.stat("/dev/shm")
            vfs = os.statvfs("/dev/shm")
            if (
                st.st_mode & 0o1777 == 0o1777
                and vfs.f_bavail * vfs.f_frsize >= 1 << 30
                and os.access("/dev/shm", os.W_OK | os.X_OK)
            ):
                choice = "/dev/shm"
        except OSError:
            pass
        _default_parent_cache.append(choice)
    return _default_parent_cache[0]


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    # If the test process dies without stopping us, the master gets SIGTERM.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_live: "set[Dovecot]" = set()


@atexit.register
def _stop_all() -> None:
    for d in list(_live):
        try:
            d.stop()
        except Exception:
            pass


# --- the server ------------------------------------------------------------


def _conf_value(value: str) -> str:
    """Quote a path or value for dovecot.conf."""
    if any(c in value for c in ' \t"#{}=\\'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


class Dovecot:
    """One standalone Dovecot instance; see the module docstring.

    Keyword parameters:

    host
        The IPv4 address to listen on (default 127.0.0.1).  Dovecot counts a
        connection whose remote address equals its local address as
        "secured", as if TLS were on: so over 127.0.0.1
        ``disable_plaintext_auth`` has no effect.  Listen on ``127.0.0.2``
        (clients then connect from 127.0.0.1) to have plaintext refused.
    users
        ``{name: password}``; stored as ``{PLAIN}`` so APOP and CRAM-MD5 work.
    tls
        ``(cert_path, key_path)``: ``ssl = yes`` (STLS on the POP3 port, and an
        implicit-TLS pop3s listener); None: ``ssl = no``.
    lmtp
        Also run LMTP on an inet listener (delivers into the same Maildirs).
    auth_mechanisms
        Dovecot's ``auth_mechanisms``; "apop" puts the APOP timestamp in the
        greeting.
    disable_plaintext_auth
        Dovecot's setting (default False: USER/PASS allowed without TLS).
    auth_failure_delay
        Seconds before a failed login is answered (Dovecot's default is 2;
        here 0, which in practice still means ~0.5 s: Dovecot flushes failed
        requests on a 0.5 s timer).  The anvil auth penalty (growing delays
        for an IP after failures) is always off.
    trusted_networks
        ``login_trusted_networks`` (default empty: loopback is not trusted,
        so the server behaves as it would for a remote client).
    greeting
        ``login_greeting`` (Dovecot's default is "Dovecot ready.").
    extra_config
        Raw text appended to dovecot.conf.
    oauth2
        Settings for an ``oauth2`` passdb (``dovecot-oauth2.conf.ext``, e.g.
        ``{"introspection_mode": "post", "introspection_url": ...}``): the
        passdb is placed before the passwd-file one and serves only the
        ``xoauth2`` and ``oauthbearer`` mechanisms, so bearer tokens are
        checked there.  None (the default): no such passdb.
    directory
        Where to put everything (default: a fresh ``tempfile.mkdtemp`` in
        :func:`default_parent`).  Its
        path must be traversable by the mail user and by Dovecot's own users,
        which a pytest ``tmp_path`` (under a 0700 directory) is not.  A
        directory made here is removed by ``stop()`` unless ``keep`` is true.
    """

    def __init__(
        self,
        *,
        host: str = HOST,
        users: Mapping[str, str] | None = None,
        tls: "tuple[str | os.PathLike, str | os.PathLike] | None" = None,
        lmtp: bool = False,
        auth_mechanisms: str = DEFAULT_AUTH_MECHANISMS,
        disable_plaintext_auth: bool = False,
        auth_failure_delay: float = 0,
        trusted_networks: str = "",
        greeting: str | None = None,
        extra_config: str = "",
        oauth2: Mapping[str, str] | None = None,
        directory: str | os.PathLike | None = None,
        keep: bool = False,
        mail_user: str = MAIL_USER,
        start_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.users: dict[str, str] = dict(users or {})
        for name, password in self.users.items():
            _check_user_name(name)
            _check_passwd_field("password", password)
        self.tls = (Path(tls[0]), Path(tls[1])) if tls else None
        self.lmtp = lmtp
        self.auth_mechanisms = auth_mechanisms
        self.disable_plaintext_auth = disable_plaintext_auth
        self.auth_failure_delay = auth_failure_delay
        self.trusted_networks = trusted_networks
        self.greeting = greeting
        self.extra_config = extra_config
        self.oauth2 = dict(oauth2) if oauth2 is not None else None
        self.mail_user = mail_user
        self.start_timeout = start_timeout
        self._directory_arg = Path(directory) if directory is not None else None
        self._keep = keep
        self._made_directory = False
        self.root: Path | None = None
        self.pop3_port: int | None = None
        self.pop3s_port: int | None = None
        self.lmtp_port: int | None = None
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self.mail_uid, self.mail_gid = ensure_mail_user(mail_user)
        self._names = itertools.count(1)
        self._lock = threading.Lock()

    # -- paths ---------------------------------------------------------

    def _need_root(self) -> Path:
        if self.root is None:
            raise DovecotError("this Dovecot has not been set up (call start())")
        return self.root

    @property
    def conf_path(self) -> Path:
        return self._need_root() / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self._need_root() / "dovecot.log"

    @property
    def stderr_path(self) -> Path:
        return self._need_root() / "dovecot.stderr"

    @property
    def oauth2_conf_path(self) -> Path:
        return self._need_root() / "dovecot-oauth2.conf.ext"

    @property
    def passwd_path(self) -> Path:
        return self._need_root() / "passwd"

    @property
    def mail_root(self) -> Path:
        return self._need_root() / "mail"

    def maildir(self, user: str) -> Path:
        """The user's Maildir (``<root>/mail/<user>``); may not exist yet.

        ``user`` may be an address: like Dovecot here (``%Ln``), only the
        lowercased local part counts."""
        user = user.split("@", 1)[0].lower()
        _check_user_path(user)
        return self.mail_root / user

    # -- lifecycle ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<Dovecot {state} pop3={self.pop3_port} pop3s={self.pop3s_port} "
            f"lmtp={self.lmtp_port} root={self.root}>"
        )

    def setup(self) -> None:
        """Make the directory tree and write the configuration (``start()``
        does this itself)."""
        missing = missing_dovecot_parts(lmtp=self.lmtp)
        if missing:
            raise DovecotNotInstalled(
                f"Dovecot is not installed (missing {', '.join(missing)}); "
                f"install it with: {INSTALL_HINT}"
            )
        if self.root is None:
            if self._directory_arg is None:
                self.root = Path(
                    tempfile.mkdtemp(prefix="rpop-dovecot-", dir=default_parent())
                )
                self._made_directory = True
            else:
                self._directory_arg.mkdir(parents=True, exist_ok=True)
                self.root = self._directory_arg
            os.chmod(self.root, 0o755)
            try:
                _check_traversable(self.root)
            except DovecotError:
                if self._made_directory:
                    shutil.rmtree(self.root, ignore_errors=True)
                    self._made_directory = False
                self.root = None
                raise
            for sub in ("run", "state"):
                (self.root / sub).mkdir(exist_ok=True)
            self.mail_root.mkdir(exist_ok=True)
            os.chown(self.mail_root, self.mail_uid, self.mail_gid)
            os.chmod(self.mail_root, 0o700)
            self._write_passwd()
            for user in self.users:
                self._ensure_maildir(user)
            if self.oauth2 is not None:
                self._write_oauth2_conf()

    def start(self) -> "Dovecot":
        """Start Dovecot and wait until POP3 greets; returns self.

        The first start picks free ports; a later start (see ``restart``)
        keeps them unless they were taken meanwhile."""
        if self.running:
            return self
        self.setup()
        last_error: DovecotStartError | None = None
        for attempt in range(3):
            if attempt or self.pop3_port is None:
                ports = _free_ports(3, self.host)
                self.pop3_port = ports[0]
                self.pop3s_port = ports[1] if self.tls else None
                self.lmtp_port = ports[2] if self.lmtp else None
            self.conf_path.write_text(self._config())
            log_before = len(self.log_text())
            try:
                self._spawn_and_wait()
                _live.add(self)
                return self
            except DovecotStartError as e:
                last_error = e
                self._kill()
                if "Address already in use" not in self.log_text()[log_before:]:
                    break
                # a port was taken between choosing and binding: try others
        assert last_error is not None
        raise last_error

    def restart(self) -> "Dovecot":
        """Stop Dovecot and start it again with the same directory, mail,
        users and (if still free) ports."""
        self._kill()
        return self.start()

    def _spawn_and_wait(self) -> None:
        root = self._need_root()
        begin = time.monotonic()
        with open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                [find_dovecot(), "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=root,
                start_new_session=True,
                # PR_SET_PDEATHSIG fires when the spawning *thread* ends, so
                # only use it from the main thread
                preexec_fn=(
                    _set_pdeathsig
                    if threading.current_thread() is threading.main_thread()
                    else None
                ),
                close_fds=True,
            )
        deadline = begin + self.start_timeout
        problem = "no answer"
        while True:
            if self.process.poll() is not None:
                problem = f"dovecot exited with status {self.process.returncode}"
                break
            if time.monotonic() > deadline:
                problem = f"no +OK greeting within {self.start_timeout:g} s ({problem})"
                break
            try:
                with socket.create_connection((self.host, self.pop3_port), timeout=2) as s:
                    s.settimeout(max(0.5, deadline - time.monotonic()))
                    line = _read_line(s)
                if line.startswith(b"+OK"):
                    self.start_seconds = time.monotonic() - begin
                    return
                problem = f"greeting was {line!r}"
            except OSError as e:
                problem = f"{type(e).__name__}: {e}"
            time.sleep(0.02)
        raise DovecotStartError(
            f"Dovecot did not start on {self.host}:{self.pop3_port}: {problem}\n"
            f"config: {self.conf_path}\n--- log tail ---\n{self.log_tail()}"
        )

    def stop(self, grace: float = 0.5) -> None:
        """Stop Dovecot (SIGTERM to its process group, SIGKILL after
        ``grace`` seconds) and remove the directory if it was made here.
        Safe to call twice."""
        _live.discard(self)
        self._kill(grace)
        if self._made_directory and not self._keep and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._made_directory = False

    def _kill(self, grace: float = 0.5) -> None:
        proc = self.process
        if proc is None:
            return
        # The master and all its children share one process group (the
        # master's id, from start_new_session).  What was seen with 2.3.19:
        # SIGTERM to the master alone: it waits ~1 s for its children, which
        # linger ~2 s more.  SIGTERM to the whole group: usually all gone in
        # a few ms, but a master that sees a child die before it handles its
        # own signal restarts that service (anvil, log) and then sleeps up to
        # ~7 s waiting for it.  So: SIGTERM the group, repeat while anything
        # lives, SIGKILL the group after ``grace`` seconds.  Zombies do not
        # count: orphans go to pid 1, which may never reap them.
        pgid = proc.pid
        deadline = time.monotonic() + grace
        sig = signal.SIGTERM
        while True:
            proc.poll()  # reap the master when it exits
            if not _group_alive(pgid):
                break
            _signal_group(pgid, sig)
            if time.monotonic() > deadline:
                sig = signal.SIGKILL
            time.sleep(0.01)
        proc.wait()
        self.process = None

    # -- logs -----------------------------------------------------------

    def log_text(self) -> str:
        """Dovecot's log file, plus whatever the master wrote to stderr."""
        if self.root is None:
            return ""
        parts = []
        for path in (self.log_path, self.stderr_path):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if text:
                parts.append(text)
        return "".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- users ----------------------------------------------------------

    def set_user(self, name: str, password: str) -> None:
        """Add a user or change a password, also while Dovecot runs.

        Dovecot's passwd-file driver stats the file at most once a second
        (per lookup second) and reloads only if its mtime or size changed;
        so a running instance's file gets a new mtime and this call returns
        after the next whole second (up to 1 s) to make sure the next login
        sees the change.  Give the users to the constructor when you can."""
        _check_user_name(name)
        _check_passwd_field("password", password)
        self.users[name] = password
        if self.root is not None:
            self._ensure_maildir(name)
            self._write_passwd()
            if self.running:
                now = time.time()
                time.sleep(int(now) + 1.02 - now)

    def _write_passwd(self) -> None:
        # user:password:uid:gid:gecos:home:shell:extra — uid/gid come from
        # mail_uid/mail_gid; no home (mail_location is absolute).
        text = "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items())
        tmp = self.passwd_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)  # read by the auth process (user "dovecot")
        # a whole-second mtime that always moves forward
        try:
            old = int(os.stat(self.passwd_path).st_mtime)
        except FileNotFoundError:
            old = 0
        stamp = max(int(time.time()), old + 1)
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, self.passwd_path)

    def _write_oauth2_conf(self) -> None:
        for key, value in self.oauth2.items():
            if not key.isidentifier() or any(c in str(value) for c in "\n\r\0"):
                raise ValueError(f"bad oauth2 passdb setting {key!r} = {value!r}")
        text = "".join(f"{k} = {v}\n" for k, v in self.oauth2.items())
        self.oauth2_conf_path.write_text(text)
        os.chmod(self.oauth2_conf_path, 0o644)  # read by the auth process

    # -- configuration --------------------------------------------------

    def _config(self) -> str:
        root = self._need_root()
        v = _conf_value
        protocols = "pop3 lmtp" if self.lmtp else "pop3"
        lines = [
            "# Written by rpopcore/testing/dovecot.py; standalone (no conf.d).",
            f"instance_name = rpop-test-{root.name}",
            f"base_dir = {v(str(root / 'run'))}",
            f"state_dir = {v(str(root / 'state'))}",
            f"log_path = {v(str(self.log_path))}",
            f"info_log_path = {v(str(self.log_path))}",
            f"debug_log_path = {v(str(self.log_path))}",
            'log_timestamp = "%Y-%m-%d %H:%M:%S "',
            f"protocols = {protocols}",
            f"listen = {self.host}",
            "shutdown_clients = yes",
            "",
            f"disable_plaintext_auth = {'yes' if self.disable_plaintext_auth else 'no'}",
            f"auth_mechanisms = {self.auth_mechanisms}",
            # LMTP looks up "alice@domain": keep only the lowercased local part
            "auth_username_format = %Ln",
            "auth_verbose = yes",
            # fail fast: no 2 s delay after a failed login ...
            f"auth_failure_delay = {self.auth_failure_delay:g} secs",
            f"login_trusted_networks = {self.trusted_networks}",
        ]
        if self.greeting is not None:
            lines.append(f"login_greeting = {v(self.greeting)}")
        lines += [
            "",
            f"mail_location = maildir:{v(str(self.mail_root))}/%u",
            f"mail_uid = {self.mail_uid}",
            f"mail_gid = {self.mail_gid}",
            "first_valid_uid = 1",
            "last_valid_uid = 0",
            "first_valid_gid = 1",
            "last_valid_gid = 0",
            "pop3_uidl_format = %08Xu%08Xv",
            "",
        ]
        if self.oauth2 is not None:
            lines += [
                "passdb {",
                "  driver = oauth2",
                "  mechanisms = xoauth2 oauthbearer",
                f"  args = {v(str(self.oauth2_conf_path))}",
                "}",
            ]
        lines += [
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN {v(str(self.passwd_path))}",
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = {v(str(self.passwd_path))}",
            "}",
            "",
        ]
        if self.tls:
            cert, key = self.tls
            lines += [
                "ssl = yes",
                f"ssl_cert = <{cert.resolve()}",
                f"ssl_key = <{key.resolve()}",
            ]
        else:
            lines.append("ssl = no")
        lines += [
            "",
            "service pop3-login {",
            "  inet_listener pop3 {",
            f"    address = {self.host}",
            f"    port = {self.pop3_port}",
            "  }",
            "  inet_listener pop3s {",
            f"    address = {self.host}",
            f"    port = {self.pop3s_port or 0}",
            f"    ssl = {'yes' if self.tls else 'no'}",
            "  }",
            "}",
        ]
        lines += [
            # ... and no growing penalty for an IP after failed logins (the
            # documented way to turn anvil's auth penalty off)
            "service anvil {",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",
            "  }",
            "}",
        ]
        if self.lmtp:
            lines += [
                "service lmtp {",
                "  inet_listener lmtp {",
                f"    address = {self.host}",
                f"    port = {self.lmtp_port}",
                "  }",
                "}",
            ]
        if self.extra_config:
            lines += ["", "# extra_config", self.extra_config]
        return "\n".join(lines) + "\n"

    # -- mail -----------------------------------------------------------

    def _ensure_maildir(self, user: str) -> Path:
        md = self.maildir(user)
        for path in (md, md / "tmp", md / "new", md / "cur"):
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                continue
            os.chown(path, self.mail_uid, self.mail_gid)
        return md

    def _new_name(self) -> str:
        # Dovecot gives new mail UIDs in the order of the leading number in
        # the name, then the rest of the name: a counter keeps put() order.
        return (
            f"{int(time.time())}.R{next(self._names):09d}"
            f"P{os.getpid()}.rpoptest"
        )

    def put(self, user: str, data: bytes, name: str | None = None) -> str:
        """Deliver ``data`` into the user's ``Maildir/new`` (written to
        ``tmp/``, owned by the mail user, then renamed); returns the file
        name.  Dovecot serves the bytes as stored (LF lines become CRLF)."""
        return self.put_many(user, [data], names=None if name is None else [name])[0]

    def put_many(
        self,
        user: str,
        messages: Iterable[bytes],
        names: Iterable[str] | None = None,
    ) -> list[str]:
        """``put`` for many messages at once; returns the file names, in
        order (which is the order Dovecot numbers them in)."""
        md = self._ensure_maildir(user)
        tmp_dir, new_dir = md / "tmp", md / "new"
        name_iter = iter(names) if names is not None else None
        uid, gid = self.mail_uid, self.mail_gid
        out = []
        with self._lock:
            for data in messages:
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(f"messages are bytes, not {type(data).__name__}")
                name = next(name_iter) if name_iter is not None else self._new_name()
                if "/" in name or ":" in name or name.startswith("."):
                    raise ValueError(f"bad maildir file name {name!r}")
                tmp_path = os.path.join(tmp_dir, name)
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.fchown(fd, uid, gid)
                    view = memoryview(data)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                finally:
                    os.close(fd)
                os.rename(tmp_path, os.path.join(new_dir, name))
                out.append(name)
        return out

    def _files(self, user: str) -> list[tuple[str, str]]:
        """``(base name, path)`` of the user's messages in new/ and cur/."""
        md = self.maildir(user)
        found = []
        for sub in ("new", "cur"):
            d = md / sub
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                if not n.startswith("."):
                    found.append((n.split(":", 1)[0], os.path.join(d, n)))
        found.sort()
        return found

    def messages(self, user: str) -> list[bytes]:
        """The bytes of the messages in the user's Maildir (new and cur),
        ordered by file name (without the ``:2,flags`` suffix)."""
        for _attempt in range(20):
            out = []
            try:
                for _base, path in self._files(user):
                    with open(path, "rb") as f:
                        out.append(f.read())
            except FileNotFoundError:
                # Dovecot moved new/ -> cur/ or renamed for flags: look again
                time.sleep(0.01)
                continue
            return out
        raise DovecotError(f"the Maildir of {user!r} keeps changing")

    def names(self, user: str) -> list[str]:
        """The file names (without flags) of the user's messages, sorted."""
        return [base for base, _path in self._files(user)]

    def count(self, user: str) -> int:
        """How many messages the user's Maildir holds (new + cur)."""
        return len(self._files(user))


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left, or not ours any more
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process group has a member that is not a zombie."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return _signal_group(pgid, 0)
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parens
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _read_line(sock: socket.socket, limit: int = 1024) -> bytes:
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < limit:
        chunk = sock.recv(limit - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _check_traversable(path: Path) -> None:
    # Dovecot's processes run as the mail user and as "dovecot"/"dovenull":
    # every directory above ours must let others through.
    for parent in path.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise DovecotError(
                f"{parent} is not searchable by other users (mode "
                f"{oct(os.stat(parent).st_mode & 0o777)}), so Dovecot's "
                f"unprivileged processes cannot reach {path}; use another "
                f"directory (e.g. set RPOP_DOVECOT_TMPDIR)"
            )


def _check_passwd_field(what: str, value: str) -> None:
    if not value or any(c in value for c in ":\n\r\0"):
        raise ValueError(f"{what} {value!r} cannot go in a passwd-file")


def _check_user_name(name: str) -> None:
    # Dovecot looks users up by the lowercased local part (%Ln)
    _check_passwd_field("user name", name)
    if name != name.lower() or "@" in name or "/" in name or name.startswith("."):
        raise ValueError(f"user names here are lowercase local parts, not {name!r}")


def _check_user_path(user: str) -> None:
    if not user or "/" in user or user in (".", "..") or "\0" in user:
        raise ValueError(f"bad user name {user!r}")
