"""The ASGI application: the JSON API (:mod:`rpopcore.web.api`), the pages
(:mod:`rpopcore.web.pages`), and what guards both -- security headers, a
request body limit, who is calling.

Every response carries a Content-Security-Policy without inline script
and with ``frame-ancestors 'none'``; a body over :data:`MAX_BODY` bytes is
refused with 413 before it is read whole.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from rpopcore.config.site import WebConfig
from rpopcore.service import Site
from rpopcore.web.auth import SESSION_COOKIE, SignIn, TooManyFailures
from rpopcore.web.operations import Caller, Operations

MAX_BODY = 1024 * 1024
HERE = Path(__file__).parent

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Guard:
    """ASGI middleware: security headers on every response, and the body
    limit (by Content-Length, and by counting for a chunked body)."""

    def __init__(self, app, tls: bool):
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        if tls:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await self._too_large(scope, receive, self._decorated(send))
        received = 0
        too_large = answered = False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:
                    too_large = True
                    raise _BodyTooLarge()
            return message

        async def send_with_headers(message):
            nonlocal answered
            if too_large:
                # The application's own answer to a body cut short (a 500
                # from Starlette's error handler) becomes the 413.
                if not answered:
                    answered = True
                    await self._too_large(scope, receive, self._decorated(send))
                return
            await self._decorated(send)(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not answered:
                await self._too_large(scope, receive, self._decorated(send))

    def _decorated(self, send):
        async def decorated(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in self.headers if h[0] not in names)]}
            await send(message)

        return decorated

    async def _too_large(self, scope, receive, send):
        response = JSONResponse({"error": f"the request body is over {MAX_BODY} bytes; send less", "field": None},
                                status_code=413)
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class Web:
    """What every handler needs: the operations, sign-in, the config."""

    def __init__(self, site: Site, config: WebConfig):
        self.site = site
        self.config = config
        self.operations = Operations(site, config)
        authenticators = [a for contributed in site.pm.hook.rpop_web_authenticators() for a in contributed]
        self.sign_in = SignIn(self.operations, authenticators)

    async def caller(self, request: Request) -> tuple[Caller | None, object | None]:
        """The caller of a request by its session cookie: (caller, session)."""
        found = await self.sign_in.session(request.cookies.get(SESSION_COOKIE))
        return found if found else (None, None)

    async def basic_caller(self, request: Request) -> Caller | None | bool:
        """The caller HTTP Basic credentials make; False when none are sent,
        None when they are wrong.  Raises TooManyFailures."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            address, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return await self.sign_in.check(address, password, client_of(request))


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def build_app(site: Site, config: WebConfig) -> Guard:
    """The web interface of an opened site."""
    from rpopcore.web import api, pages

    web = Web(site, config)
    app = Starlette(
        routes=[
            *api.routes(web),
            *pages.routes(web),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={TooManyFailures: _too_many},
    )
    app.state.web = web
    return Guard(app, tls=config.tls)


async def _too_many(request: Request, exc: TooManyFailures):
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": str(exc), "field": None}, status_code=429)
    return PlainTextResponse(str(exc), status_code=429)
