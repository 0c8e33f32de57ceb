"""USER/PASS login (RFC 1939): the password in clear, the last resort in
``auto`` selection and always offered."""

from __future__ import annotations

from rpopcore.api import hookimpl


class UserPass:
    name = "userpass"
    auto_rank = 100
    sends_password_in_clear = True

    def offered(self, context) -> bool:
        return True

    async def authenticate(self, client, context, secret: str) -> None:
        await client.user_pass(context.record.account, secret)


@hookimpl
def rpop_auth_mechanisms():
    return [UserPass()]
