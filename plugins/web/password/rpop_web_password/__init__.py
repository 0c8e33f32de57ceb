"""Web sign-in with a password per local account: the built-in
implementation of :func:`rpopcore.hookspecs.rpop_web_authenticators`.

``rpop -c SITE passwd ADDRESS`` sets a password; the state store keeps its
Argon2id hash (``StateStore.save_web_password``), never the password.  An
address without a hash cannot sign in through this plugin, and takes as
long to be refused as one with a hash, so the time of an answer does not
tell which addresses have passwords.
"""

from __future__ import annotations

import asyncio
import functools

import argon2

from rpopcore.api import hookimpl

# argon2-cffi's defaults (RFC 9106's second recommended profile, 64 MiB,
# 3 passes): about 50 ms a check, run in a worker thread so that a sign-in
# does not stall every poll of the event loop meanwhile.
_HASHER = argon2.PasswordHasher()


@functools.cache
def _unused_hash() -> str:
    """A hash to check a password against for an address without one.
    Made at the first such sign-in, not when the plugin loads: every
    command loads it, and a hash costs as much as a check."""
    return _HASHER.hash("an address without a web password")

#: Shorter passwords are refused by ``rpop passwd``.
MIN_LENGTH = 8


class PasswordAuthenticator:
    """Argon2id hashes in the state store."""

    name = "password"

    async def authenticate(self, address: str, password: str, store) -> bool:
        stored = await store.load_web_password(address)
        try:
            await asyncio.to_thread(_HASHER.verify, stored or _unused_hash(), password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
        if stored is None:
            return False
        if _HASHER.check_needs_rehash(stored):  # hashed under weaker parameters: upgrade it now
            await store.save_web_password(address, await asyncio.to_thread(_HASHER.hash, password))
        return True

    async def set_password(self, address: str, password: str, store) -> bool:
        if len(password) < MIN_LENGTH:
            raise ValueError(f"the password is shorter than {MIN_LENGTH} characters; choose a longer one")
        await store.save_web_password(address, await asyncio.to_thread(_HASHER.hash, password))
        return True


@hookimpl
def rpop_web_authenticators():
    return [PasswordAuthenticator()]
