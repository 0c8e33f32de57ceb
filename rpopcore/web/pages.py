"""The server-rendered pages: sign-in, module settings, the unified table,
the accounts list, one user's remote accounts.  HTML forms that work
without JavaScript; every form carries the session's CSRF token (the
sign-in form a token of its own, in a cookie beside it).

A page that changes something answers with a redirect to the page it came
from (post/redirect/get), which then shows the outcome; a form with an
error is shown again with the error beside its field.
"""

from __future__ import annotations

import secrets
import urllib.parse
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from rpopcore.web import settings_form
from rpopcore.web.auth import SESSION_COOKIE, SESSION_LIFETIME, TooManyFailures
from rpopcore.web.last import describe_last, local_time
from rpopcore.web.operations import WebError

SIGNIN_COOKIE = "rpop_signin"
#: Poll Every choices offered in the tables (any other stored value is
#: offered too); "----" removes the record, as in the seed.
PERIODS = ("----", "disabled", "1m", "2m", "3m", "5m", "10m", "15m", "20m", "30m", "1h", "2h", "3h", "6h", "12h",
           "1d")
TABLE_FLAGS = ("leave", "apop", "tls")

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)


def routes(web) -> list[Route]:
    """The pages' routes, bound to ``web`` (:class:`rpopcore.web.app.Web`)."""

    def page(handler, role: str | None = "any"):
        async def call(request: Request) -> Response:
            caller, session = await web.caller(request)
            if role is not None and caller is None:
                target = urllib.parse.quote(request.url.path)
                return RedirectResponse(f"/signin?next={target}", status_code=303)
            if request.method == "POST" and session is not None:
                form = await request.form()
                if not secrets.compare_digest(str(form.get("csrf", "")), session.csrf):
                    return _render(request, "message.html", {"title": "Form expired",
                                   "text": "This form is out of date; go back, reload the page and submit again."},
                                   caller, session, status=403)
            if role == "admin" and not caller.admin:
                return _render(request, "message.html", {"title": "Administrators only",
                               "text": "This page needs the administrator role."}, caller, session, status=403)
            try:
                return await handler(request, caller, session)
            except WebError as exc:
                status = exc.status if exc.status in (403, 404) else 400
                return _render(request, "message.html", {"title": "Not done", "text": exc.message},
                               caller, session, status=status)

        return call

    ops = web.operations

    async def home(request, caller, session):
        if caller.admin:
            return RedirectResponse("/settings", status_code=303)
        return RedirectResponse(f"/accounts/{caller.address}/records", status_code=303)

    async def signin(request, caller, session):
        if request.method == "GET":
            return _signin_page(request, "", None)
        form = await request.form()
        token = request.cookies.get(SIGNIN_COOKIE, "")
        if not token or not secrets.compare_digest(str(form.get("csrf", "")), token):
            return _signin_page(request, str(form.get("address", "")),
                                "This form is out of date; submit it again.", status=403)
        address = str(form.get("address", ""))
        try:
            found = await web.sign_in.check(address, str(form.get("password", "")), _client(request))
        except TooManyFailures as exc:
            return _signin_page(request, address, str(exc).capitalize() + ".", status=429)
        if found is None:
            return _signin_page(request, address, "Wrong address or password.", status=401)
        token, _new = await web.sign_in.start_session(found)
        target = str(form.get("next", "/"))
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), httponly=True,
                            samesite="lax", secure=web.config.tls, path="/")
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    def _signin_page(request, address: str, error: str | None, status: int = 200) -> Response:
        token = secrets.token_urlsafe(32)
        response = _render(request, "signin.html", {"address": address, "error": error, "token": token,
                           "next": request.query_params.get("next", "/")}, None, None, status=status)
        response.set_cookie(SIGNIN_COOKIE, token, httponly=True, samesite="strict", secure=web.config.tls,
                            path="/signin")
        return response

    async def signout(request, caller, session):
        await web.sign_in.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def settings(request, caller, session):
        errors: dict[str, str] = {}
        values = await ops.settings(caller)
        notice = "Settings updated." if request.query_params.get("updated") else None
        if request.method == "POST":
            given = settings_form.from_form(await request.form())
            try:
                await ops.update_settings(caller, given)
                return RedirectResponse("/settings?updated=1", status_code=303)
            except WebError as exc:
                errors[exc.field or ""] = exc.message
                values = {**values, **given}
        state = await ops.polling_state()
        zone = values.get("time_zone", "UTC")
        changes = local_time(state["changes_at"].isoformat(), zone) if state["changes_at"] else None
        return _render(request, "settings.html", {
            "values": values, "errors": errors, "groups": settings_form.GROUPS, "labels": settings_form.LABELS,
            "help": settings_form.SETTINGS_HELP, "booleans": settings_form.BOOLEANS,
            "integers": settings_form.INTEGERS, "lists": settings_form.LISTS, "choices": settings_form.CHOICES,
            "state": state, "changes": changes, "notice": notice,
        }, caller, session, status=400 if errors else 200)

    async def unified(request, caller, session):
        return await _table(request, caller, session, "unified", None, "/unified")

    async def owner_records(request, caller, session):
        owner = await ops.local_address(request.path_params["address"])
        if owner is None or (not caller.admin and owner != caller.address):
            raise WebError(404, "There is no such account.")
        return await _table(request, caller, session, "remote", owner, f"/accounts/{owner}/records")

    async def _table(request, caller, session, kind, owner, here):
        editable = await ops.may_poll(caller)
        rows = await ops.records(caller, owner=owner, kind=kind)
        errors: dict[int, tuple[str | None, str]] = {}
        table_error = None
        submitted = None
        if request.method == "POST":
            if not editable:
                raise WebError(403, f"You may not keep remote accounts here: {ops.who_grants()}.")
            form = await request.form()
            submitted = _rows_from_form(form)
            try:
                await ops.replace_table(caller, kind, owner, [row for row, _shown in submitted])
                return RedirectResponse(f"{here}?updated=1", status_code=303)
            except WebError as exc:
                if exc.entry is not None:
                    errors[exc.entry] = (exc.field, exc.message)
                else:
                    table_error = exc.message
        settings = await ops.site.store.load_settings()
        shown = _shown_rows(rows, submitted, settings.time_zone)
        right = domain_right = None
        if owner is not None and caller.admin:
            account, _, domain_name = owner.partition("@")
            domain = (await ops.site.store.load_directory()).domain(domain_name)
            right, domain_right = domain.account_may_poll.get(account), domain.users_may_poll
        polled = _polled_notice(request.query_params)
        return _render(request, "records.html", {
            "kind": kind, "owner": owner, "rows": shown, "errors": errors, "table_error": table_error,
            "editable": editable, "who_grants": ops.who_grants(), "periods": PERIODS, "here": here,
            "updated": request.query_params.get("updated"), "polled": polled,
            "limits": settings if kind == "remote" and not caller.admin else None,
            "right": right, "domain_right": domain_right,
        }, caller, session, status=400 if (errors or table_error) else 200)

    async def poll(request, caller, session):
        record_id = request.path_params["id"]
        form = await request.form()
        back = str(form.get("back", "/"))
        if not back.startswith("/") or back.startswith("//"):
            back = "/"
        try:
            result = await ops.poll(caller, record_id)
        except WebError as exc:
            if exc.status == 404:
                raise
            result = {"id": record_id, "retrieved": 0, "delivered": 0, "error": "refused", "detail": exc.message}
        query = urllib.parse.urlencode({k: result[k] if result[k] is not None else "" for k in
                                        ("id", "retrieved", "delivered", "error", "detail")})
        return RedirectResponse(f"{back}?polled=1&{query}#record-{record_id}", status_code=303)

    async def accounts(request, caller, session):
        search = request.query_params.get("search", "")
        page_text = request.query_params.get("page", "1")
        page_number = int(page_text) if page_text.isdigit() and int(page_text) > 0 else 1
        rows, total = await ops.accounts(caller, search, page_number)
        pages = max(1, -(-total // 50))
        return _render(request, "accounts.html", {"rows": rows, "total": total, "search": search,
                       "page": page_number, "pages": pages}, caller, session)

    async def account_right(request, caller, session):
        form = await request.form()
        choice = str(form.get("may_poll", "default"))
        value = {"yes": True, "no": False}.get(choice)
        address = request.path_params["address"]
        await ops.set_may_poll(caller, address, value)
        return RedirectResponse(f"/accounts/{address}/records?updated=1", status_code=303)

    return [
        Route("/", page(home), methods=["GET"]),
        Route("/signin", page(signin, role=None), methods=["GET", "POST"]),
        Route("/signout", page(signout), methods=["POST"]),
        Route("/settings", page(settings, "admin"), methods=["GET", "POST"]),
        Route("/unified", page(unified, "admin"), methods=["GET", "POST"]),
        Route("/accounts", page(accounts, "admin"), methods=["GET"]),
        Route("/accounts/{address}/records", page(owner_records), methods=["GET", "POST"]),
        Route("/accounts/{address}/right", page(account_right, "admin"), methods=["POST"]),
        Route("/records/{id:int}/poll", page(poll), methods=["POST"]),
    ]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _render(request, template: str, context: dict, caller, session, status: int = 200) -> HTMLResponse:
    html = _templates.get_template(template).render(
        **context, caller=caller, csrf=session.csrf if session else "", path=request.url.path,
    )
    return HTMLResponse(html, status_code=status)


def _rows_from_form(form) -> list[tuple[dict | None, dict]]:
    """Each row of a submitted table: what to apply (None: remove or an
    untouched empty row) and what to show again if the table is refused."""
    count = int(form.get("rows", "0")) if str(form.get("rows", "0")).isdigit() else 0
    rows = []
    for i in range(count):
        get = lambda key: str(form.get(f"r{i}-{key}", "")).strip()  # noqa: E731
        shown = {"id": get("id"), "poll_every": get("poll_every"), "account": get("account"), "host": get("host"),
                 "special_field": get("special_field"), **{flag: f"r{i}-{flag}" in form for flag in TABLE_FLAGS}}
        if shown["poll_every"] == "----" or (not shown["id"] and not shown["account"] and not shown["host"]):
            rows.append((None, shown))
            continue
        row = {"poll_every": shown["poll_every"], "account": shown["account"], "host": shown["host"],
               **{flag: shown[flag] for flag in TABLE_FLAGS}}
        if shown["id"]:
            row["id"] = int(shown["id"]) if shown["id"].isdigit() else shown["id"]
        if get("password"):
            row["password"] = str(form.get(f"r{i}-password"))
        if f"r{i}-special_field" in form:
            row["special_field"] = shown["special_field"]
        rows.append((row, shown))
    return rows


def _shown_rows(rows: list[dict], submitted, zone: str) -> list[dict]:
    """The table's rows: the stored records with their Last in words (or
    what was submitted, when refused), then the empty row for a new one."""
    by_id = {str(row["id"]): row for row in rows}
    shown = []
    if submitted is None:
        for row in rows:
            shown.append({**row, "id": str(row["id"]), "status": _last(row, zone)})
    else:
        for _row, values in submitted:
            stored = by_id.get(values["id"])
            shown.append({**(stored or {}), **values, "status": _last(stored, zone) if stored else None})
    if submitted is None or all(values["id"] for _row, values in submitted):
        shown.append({"id": "", "poll_every": "10m", "account": "", "host": "", "special_field": "",
                      "leave": True, "apop": False, "tls": False, "status": None})
    return shown


def _last(row: dict, zone: str) -> dict:
    return describe_last({**row, "next_due": row.get("next_poll"),
                          "delayed": {"reason": row["next_poll_reason"]} if row.get("next_poll_reason") in
                          ("account-delayed", "host-delayed", "activity-schedule") else None}, zone)


def _polled_notice(query) -> dict | None:
    if not query.get("polled"):
        return None
    return {k: query.get(k, "") for k in ("id", "retrieved", "delivered", "error", "detail")}
