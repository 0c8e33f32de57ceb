"""The JSON API under ``/api/v1/``: every operation of the pages, with the
same roles and rules (:mod:`rpopcore.web.operations`).

Authentication: the pages' session cookie, or HTTP Basic with the address
and web password.  401 without credentials (or with wrong ones), 403 for a
caller without the role, 404 for a record that is not the caller's.  A
request authenticated by the cookie that changes something must also carry
the session's CSRF token in ``X-CSRF-Token`` (the pages put it in a
``<meta name="csrf-token">``), so another site cannot make a signed-in
browser change anything.  Errors are ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rpopcore import errors
from rpopcore.web.operations import Caller, WebError

PREFIX = "/api/v1"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def _error(status: int, message: str, field: str | None = None, headers=None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def routes(web) -> list[Route]:
    """The API's routes, bound to ``web`` (:class:`rpopcore.web.app.Web`)."""

    def endpoint(handler, anonymous: bool = False):
        async def call(request: Request) -> Response:
            caller = None
            if not anonymous:
                caller = await _authenticate(web, request)
                if isinstance(caller, Response):
                    return caller
            try:
                return await handler(request, caller)
            except WebError as exc:
                return _error(exc.status, exc.message, exc.field)
            except errors.StateFailed as exc:
                return _error(503, f"the state store cannot be used now: {exc}")

        return call

    async def health(request, _caller):
        try:
            await web.site.store.load_settings()
        except errors.StateFailed as exc:
            return JSONResponse({"status": "failing", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def openapi(request, _caller):
        from rpopcore.web.openapi import document

        return JSONResponse(document())

    async def me(request, caller: Caller):
        return JSONResponse({"address": caller.address, "role": caller.role,
                             "may_poll": await web.operations.may_poll(caller)})

    async def settings(request, caller):
        if request.method == "PUT":
            return JSONResponse(await web.operations.update_settings(caller, await _body(request)))
        return JSONResponse(await web.operations.settings(caller))

    async def polling(request, caller):
        if not caller.admin:
            raise WebError(403, "this needs the administrator role ([web] admins in the site file)")
        state = await web.operations.polling_state()
        if state["changes_at"] is not None:
            state["changes_at"] = state["changes_at"].isoformat()
        return JSONResponse(state)

    async def records(request, caller):
        if request.method == "POST":
            row = await web.operations.create_record(caller, await _body(request))
            return JSONResponse(row, status_code=201, headers={"location": f"{PREFIX}/records/{row['id']}"})
        query = request.query_params
        return JSONResponse(await web.operations.records(caller, query.get("owner"), query.get("kind")))

    async def record(request, caller):
        record_id = request.path_params["id"]
        if request.method == "PATCH":
            return JSONResponse(await web.operations.update_record(caller, record_id, await _body(request)))
        if request.method == "DELETE":
            await web.operations.delete_record(caller, record_id)
            return Response(status_code=204)
        return JSONResponse(await web.operations.record(caller, record_id))

    async def poll(request, caller):
        return JSONResponse(await web.operations.poll(caller, request.path_params["id"]))

    async def accounts(request, caller):
        query = request.query_params
        page = query.get("page", "1")
        if not page.isdigit() or int(page) < 1:
            raise WebError(400, "page: expected a whole number from 1", "page")
        rows, total = await web.operations.accounts(caller, query.get("search", ""), int(page))
        return JSONResponse({"accounts": rows, "total": total, "page": int(page)})

    async def account(request, caller):
        address = request.path_params["address"]
        if request.method == "PATCH":
            body = await _body(request)
            if not isinstance(body, dict) or set(body) - {"may_poll"}:
                raise WebError(400, "send {\"may_poll\": true, false or null}", "may_poll")
            return JSONResponse(await web.operations.set_may_poll(caller, address, body.get("may_poll")))
        return JSONResponse(await web.operations.account(caller, address))

    return [
        Route("/healthz", endpoint(health, anonymous=True), methods=["GET"]),
        Route(f"{PREFIX}/openapi.json", endpoint(openapi, anonymous=True), methods=["GET"]),
        Route(f"{PREFIX}/me", endpoint(me), methods=["GET"]),
        Route(f"{PREFIX}/settings", endpoint(settings), methods=["GET", "PUT"]),
        Route(f"{PREFIX}/polling", endpoint(polling), methods=["GET"]),
        Route(f"{PREFIX}/records", endpoint(records), methods=["GET", "POST"]),
        Route(f"{PREFIX}/records/{{id:int}}", endpoint(record), methods=["GET", "PATCH", "DELETE"]),
        Route(f"{PREFIX}/records/{{id:int}}/poll", endpoint(poll), methods=["POST"]),
        Route(f"{PREFIX}/accounts", endpoint(accounts), methods=["GET"]),
        Route(f"{PREFIX}/accounts/{{address}}", endpoint(account), methods=["GET", "PATCH"]),
    ]


async def _authenticate(web, request: Request) -> Caller | Response:
    from rpopcore.web.auth import TooManyFailures

    try:
        basic = await web.basic_caller(request)
    except TooManyFailures as exc:
        return _error(429, str(exc))
    challenge = {"www-authenticate": 'Basic realm="rpop", charset="UTF-8"'}
    if basic is None:
        return _error(401, "wrong address or password", headers=challenge)
    if basic is not False:
        return basic
    caller, session = await web.caller(request)
    if caller is None:
        return _error(401, "sign in: send HTTP Basic credentials (address and web password) or the session cookie",
                      headers=challenge)
    if request.method in UNSAFE and request.headers.get("x-csrf-token") != session.csrf:
        return _error(403, "a change made with the session cookie needs the X-CSRF-Token header of the session")
    return caller


async def _body(request: Request):
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebError(400, f"the body is not JSON ({exc}); send a JSON object") from None
