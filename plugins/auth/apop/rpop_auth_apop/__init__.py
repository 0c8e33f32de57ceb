"""APOP login (RFC 1939 section 7): the MD5 digest of the greeting's
timestamp and the password, so the password never crosses the wire.

Used, as the seed says, only when the module's ``use_apop`` is on AND the
record asks for it (``apop = true``, or ``auth = "apop"``) AND the greeting
carries a ``<timestamp>``.
"""

from __future__ import annotations

import hashlib

from rpopcore.api import hookimpl


class Apop:
    name = "apop"
    auto_rank = 30
    sends_password_in_clear = False

    def offered(self, context) -> bool:
        wanted = context.record.apop or context.record.auth == "apop"
        return bool(context.settings.use_apop and wanted and context.apop_timestamp)

    async def authenticate(self, client, context, secret: str) -> None:
        digest = hashlib.md5((context.apop_timestamp + secret).encode("utf-8")).hexdigest()
        await client.apop(context.record.account, digest)


@hookimpl
def rpop_auth_mechanisms():
    return [Apop()]
