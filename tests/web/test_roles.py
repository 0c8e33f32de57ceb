"""Every route of the web interface -- pages and API -- walked as an
anonymous visitor, as another user (bob, about alice's record) and as an
administrator, with the exact status each must get; no answer carries a
stored password."""

from __future__ import annotations

import pytest
from starlette.routing import Mount

from tests.web.conftest import ADMIN, ALICE, BOB, SECRET

A, U = "{alice_record}", "{unified_record}"

#: (method, path, body kind, anonymous, another user, administrator)
WALK = [
    ("GET", "/healthz", None, 200, 200, 200),
    ("GET", "/api/v1/openapi.json", None, 200, 200, 200),
    ("GET", "/api/v1/me", None, 401, 200, 200),
    ("GET", "/api/v1/settings", None, 401, 403, 200),
    ("PUT", "/api/v1/settings", {"processors": 9}, 401, 403, 200),
    ("GET", "/api/v1/polling", None, 401, 403, 200),
    ("GET", "/api/v1/records", None, 401, 200, 200),
    ("POST", "/api/v1/records", "new record", 401, 201, 201),
    ("GET", f"/api/v1/records/{A}", None, 401, 404, 200),
    ("PATCH", f"/api/v1/records/{A}", {"leave": False}, 401, 404, 200),
    ("POST", f"/api/v1/records/{A}/poll", None, 401, 404, 200),
    ("GET", "/api/v1/accounts", None, 401, 403, 200),
    ("GET", f"/api/v1/accounts/{ALICE}", None, 401, 404, 200),
    ("PATCH", f"/api/v1/accounts/{ALICE}", {"may_poll": True}, 401, 403, 200),
    ("GET", "/", None, 303, 303, 303),
    ("GET", "/signin", None, 200, 200, 200),
    # Without the sign-in form's own token (in its cookie): refused, whoever posts.
    ("POST", "/signin", {"address": ALICE, "password": "alice-pass-1"}, 403, 403, 403),
    ("GET", "/settings", None, 303, 403, 200),
    ("POST", "/settings", {"processors": "9", "log_level": "problems"}, 303, 403, 303),
    ("GET", "/unified", None, 303, 403, 200),
    ("POST", "/unified", "unified table", 303, 403, 303),
    ("GET", "/accounts", None, 303, 403, 200),
    ("GET", f"/accounts/{ALICE}/records", None, 303, 404, 200),
    ("POST", f"/accounts/{ALICE}/records", "alice's table", 303, 404, 303),
    ("POST", f"/accounts/{ALICE}/right", {"may_poll": "yes"}, 303, 403, 303),
    ("POST", f"/records/{A}/poll", {"back": "/"}, 303, 404, 303),
    ("GET", "/static/style.css", None, 200, 200, 200),
    ("DELETE", f"/api/v1/records/{A}", None, 401, 404, 204),
    ("POST", "/signout", {}, 303, 303, 303),
]


def _body(kind, ids, role):
    if kind == "new record":
        body = {"account": f"walk-{role}", "host": "127.0.0.1:5", "password": SECRET, "poll_every": "1h"}
        return {**body, "owner": ALICE} if role == "admin" else body
    if kind == "unified table":
        return {"rows": "1", "r0-id": str(ids["unified"]), "r0-poll_every": "10m", "r0-account": "domain.remote",
                "r0-host": "127.0.0.1:1", "r0-special_field": "X-Real-To", "r0-leave": "on"}
    if kind == "alice's table":
        return {"rows": "1", "r0-id": str(ids["alice"]), "r0-poll_every": "10m", "r0-account": "alice.remote",
                "r0-host": "127.0.0.1:1", "r0-leave": "on"}
    return kind


@pytest.mark.parametrize("role", ["anonymous", "another user", "admin"])
async def test_every_route_gives_each_role_exactly_its_outcome(clients, role, rpop_log):
    column = {"anonymous": 3, "another user": 4, "admin": 5}[role]
    client = clients.anonymous() if role == "anonymous" else await clients.signed_in(BOB if role != "admin" else ADMIN)
    records = await clients.site.store.list_records()
    ids = {"alice": next(r.id for r in records if r.owner == ALICE),
           "unified": next(r.id for r in records if r.kind.value == "unified")}
    csrf = client.headers.get("x-csrf-token", "")
    outcomes = []
    for row in WALK:
        method, path, body = row[0], row[1].format(alice_record=ids["alice"], unified_record=ids["unified"]), row[2]
        body = _body(body, ids, {"admin": "admin"}.get(role, "user"))
        if path.startswith("/api/") or path == "/healthz":
            answer = await client.request(method, path, json=body)
        elif method == "POST":
            answer = await client.post(path, data={**(body or {}), "csrf": csrf})
        else:
            answer = await client.get(path)
        outcomes.append((method, row[1], answer.status_code))
        assert SECRET not in answer.text
        if row[column] == 303 and role == "anonymous":
            assert answer.headers["location"].startswith("/signin")
    assert outcomes == [(row[0], row[1], row[column]) for row in WALK]
    assert SECRET not in rpop_log.text


def test_the_walk_covers_every_route_of_the_application(clients):
    walked = {(method, path.replace(A, "{id:int}").replace(ALICE, "{address}")) for method, path, *_ in WALK}
    for route in clients.app.app.routes:
        if isinstance(route, Mount):
            continue
        for method in route.methods - {"HEAD"}:
            assert (method, route.path) in walked, f"{method} {route.path} is not walked"
