"""Secrets at rest: remote passwords are stored encrypted with the site key
(Fernet: AES-128-CBC with HMAC-SHA256), or read at poll time from an
environment variable or a file.  Nothing here ever logs a secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from typing import TYPE_CHECKING

from rpopcore import errors
from rpopcore.model import SecretRef

if TYPE_CHECKING:  # cryptography is imported when a secret is sealed or read, not by every command
    from cryptography.fernet import Fernet, MultiFernet


def create_key_file(path: Path) -> None:
    """Write a new key readable by its owner only (mode 0600), durably; a
    key that cannot be written whole (a full disk) leaves no file behind."""
    from cryptography.fernet import Fernet

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key() + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _read_key(path: Path) -> Fernet:
    from cryptography.fernet import Fernet

    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read().strip()
    except OSError as exc:
        raise errors.ConfigError(
            f"{path}: cannot read the secrets key ({exc.strerror}); "
            "check [secrets] key_file in the site file, or create one with 'rpop init'"
        ) from None
    if mode & 0o077:
        # As ssh refuses a private key others can read: whoever can read the
        # key can decrypt every stored password, and a warning is missed.
        raise errors.ConfigError(
            f"{path}: the secrets key is open to other users (mode {stat.S_IMODE(mode):04o}), and it decrypts "
            f"every stored password; make it readable by its owner only: chmod 600 {path}"
        )
    try:
        return Fernet(raw)
    except ValueError:
        raise errors.ConfigError(
            f"{path}: not a secrets key (expected 32 url-safe base64-encoded bytes); "
            "restore the right file, or create a new one with 'rpop init'"
        ) from None


def _read_password_file(path: str) -> str:
    """The first line of a ``password_file``.  One every user may read is
    refused, as fetchmail refuses such an rc file: the password would be
    everyone's (a group of rpop's own may read it: mode 640)."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read()
    except OSError as exc:
        raise errors.SecretUnavailable(f"cannot read password_file {path}: {exc.strerror}") from None
    if mode & 0o007:
        raise errors.SecretUnavailable(
            f"password_file {path} is open to every user (mode {stat.S_IMODE(mode):04o}); "
            f"make it readable by rpop only: chmod 600 {path}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.SecretUnavailable(f"password_file {path} is not UTF-8 text; save it as UTF-8") from None
    return text.splitlines()[0] if text else ""


class Keyring:
    """Encrypts and reveals secrets with the key in ``key_file``.  The key is
    read lazily, so commands that touch no secret work without it.

    During a rotation the new key waits in ``<key_file>.next`` and the old one
    is kept as ``<key_file>.previous``; both are tried when revealing, so a
    rotation cut short at any point loses no secret.
    """

    def __init__(self, key_file: Path):
        self.key_file = key_file
        self._fernet: Fernet | None = None
        self._all: MultiFernet | None = None

    @property
    def next_file(self) -> Path:
        return self.key_file.with_name(self.key_file.name + ".next")

    @property
    def previous_file(self) -> Path:
        return self.key_file.with_name(self.key_file.name + ".previous")

    def _key(self) -> Fernet:
        if self._fernet is None:
            self._fernet = _read_key(self.key_file)
        return self._fernet

    def _any_key(self) -> MultiFernet:
        if self._all is None:
            keys = [self._key()]
            for extra in (self.next_file, self.previous_file):
                if extra.exists():
                    keys.append(_read_key(extra))
            self._all = _multi(keys)
        return self._all

    def check(self) -> None:
        """Raise ConfigError now if the key file cannot be read (rather than
        failing every record that stores a secret, one by one)."""
        self._any_key()

    def seal(self, secret: str) -> SecretRef:
        return SecretRef("stored", self._key().encrypt(secret.encode()).decode())

    def reveal(self, ref: SecretRef) -> str:
        """The secret in clear, for the moment of use."""
        if ref.source == "none":
            return ""
        if ref.source == "env":
            value = os.environ.get(ref.value)
            if value is None:
                raise errors.SecretUnavailable(f"the environment variable {ref.value} (password_env) is not set")
            return value
        if ref.source == "file":
            return _read_password_file(ref.value)
        from cryptography.fernet import InvalidToken

        try:
            return self._any_key().decrypt(ref.value.encode()).decode()
        except errors.ConfigError as exc:
            raise errors.SecretUnavailable(str(exc)) from None
        except InvalidToken:
            raise errors.SecretUnavailable(
                f"a stored password cannot be decrypted with {self.key_file}: the key file changed; "
                "restore it, or apply the passwords again"
            ) from None


def _multi(keys: list[Fernet]) -> MultiFernet:
    from cryptography.fernet import MultiFernet

    return MultiFernet(keys)


def rotate(keyring: Keyring, reseal) -> int:
    """Re-encrypt every stored secret under a new key, safely at any point
    of interruption: the new key is written first (``.next``), then
    ``reseal(new_keyring)`` re-encrypts everything in one transaction and
    returns how many secrets it re-encrypted, then the files are swapped
    (the old key is kept as ``.previous`` for the administrator to delete).
    ``reseal`` is a coroutine function; this returns an awaitable."""

    async def run() -> int:
        keyring._any_key()  # the current key must be readable before anything changes
        if keyring.next_file.exists():
            keyring.next_file.unlink()
        create_key_file(keyring.next_file)
        fresh = Keyring(keyring.next_file)
        fresh._all = _multi([fresh._key()])
        count = await reseal(fresh)
        if keyring.previous_file.exists():
            keyring.previous_file.unlink()
        os.link(keyring.key_file, keyring.previous_file)
        os.replace(keyring.next_file, keyring.key_file)
        directory = os.open(keyring.key_file.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return count

    return run()
