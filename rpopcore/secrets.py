"""Secrets at rest: remote passwords are stored encrypted with the site key
(Fernet: AES-128-CBC with HMAC-SHA256), or read at poll time from an
environment variable or a file.  Nothing here ever logs a secret."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from rpopcore import errors
from rpopcore.model import SecretRef


def create_key_file(path: Path) -> None:
    """Write a new key readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key() + b"\n")


class Keyring:
    """Encrypts and reveals secrets with the key in ``key_file``.  The key is
    read lazily, so commands that touch no secret work without it."""

    def __init__(self, key_file: Path):
        self.key_file = key_file
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            try:
                raw = self.key_file.read_bytes().strip()
            except OSError as exc:
                raise errors.ConfigError(
                    f"{self.key_file}: cannot read the secrets key ({exc.strerror}); "
                    "check [secrets] key_file in the site file, or create one with 'rpop init'"
                ) from None
            try:
                self._fernet = Fernet(raw)
            except ValueError:
                raise errors.ConfigError(
                    f"{self.key_file}: not a secrets key (expected 32 url-safe base64-encoded bytes); "
                    "restore the right file, or create a new one with 'rpop init'"
                ) from None
        return self._fernet

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
            try:
                return Path(ref.value).read_text().splitlines()[0] if Path(ref.value).stat().st_size else ""
            except OSError as exc:
                raise errors.SecretUnavailable(f"cannot read password_file {ref.value}: {exc.strerror}") from None
        try:
            return self._key().decrypt(ref.value.encode()).decode()
        except errors.ConfigError as exc:
            raise errors.SecretUnavailable(str(exc)) from None
        except InvalidToken:
            raise errors.SecretUnavailable(
                f"a stored password cannot be decrypted with {self.key_file}: the key file changed; "
                "restore it, or apply the passwords again"
            ) from None
