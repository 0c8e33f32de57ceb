"""What guards the web interface: headers, cookies, CSRF, the body limit,
sessions that end, sign-in failures limited and logged without the
password."""

from __future__ import annotations

import datetime as dt
import hashlib

import attrs
import httpx

from rpopcore import logs
from rpopcore.model import WebSession
from rpopcore.web.app import MAX_BODY, build_app
from rpopcore.web.auth import SESSION_COOKIE
from tests.web.conftest import ADMIN, ALICE, PASSWORDS, SECRET, csrf_of, sign_in


async def test_every_answer_carries_the_security_headers(clients):
    alice = await clients.signed_in(ALICE)
    for answer in (await clients.anonymous().get("/signin"), await alice.get("/api/v1/records"),
                   await clients.anonymous().get("/api/v1/records")):
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in answer.headers


async def test_the_session_cookie_is_httponly_and_samesite_lax_and_secure_only_under_tls(clients, tmp_path):
    answer = await sign_in(clients.anonymous(), ALICE, PASSWORDS[ALICE])
    assert answer.status_code == 303
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie

    (tmp_path / "c.pem").write_text("x")
    tls = attrs.evolve(clients.site.config.web, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "c.pem")
    app = build_app(clients.site, tls)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://127.0.0.1") as client:
        answer = await sign_in(client, ALICE, PASSWORDS[ALICE])
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
    assert "Secure" in cookie
    assert "max-age=31536000" in answer.headers["strict-transport-security"]


async def test_a_form_without_the_session_s_csrf_token_changes_nothing(clients):
    admin = await clients.signed_in(ADMIN)
    answer = await admin.post("/settings", data={"processors": "3", "log_level": "problems"})
    assert answer.status_code == 403 and "out of date" in answer.text
    answer = await admin.post("/settings", data={"processors": "3", "log_level": "problems", "csrf": "forged"})
    assert answer.status_code == 403
    assert (await clients.site.store.load_settings()).processors == 10


async def test_an_api_change_by_cookie_needs_the_csrf_header(clients):
    admin = await clients.signed_in(ADMIN)
    del admin.headers["x-csrf-token"]
    answer = await admin.put("/api/v1/settings", json={"processors": 3})
    assert answer.status_code == 403 and "X-CSRF-Token" in answer.json()["error"]
    assert (await admin.get("/api/v1/settings")).status_code == 200, "reading needs no token"
    assert (await clients.site.store.load_settings()).processors == 10


async def test_a_body_over_the_limit_is_refused_unread(clients):
    admin = clients.basic(ADMIN)
    answer = await admin.put("/api/v1/settings", content=b"x" * (MAX_BODY + 1))
    assert answer.status_code == 413 and "body" in answer.json()["error"]

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536

    answer = await admin.put("/api/v1/settings", content=chunks())
    assert answer.status_code == 413


async def test_signing_out_ends_the_session(clients):
    alice = await clients.signed_in(ALICE)
    token = alice.cookies[SESSION_COOKIE]
    assert (await alice.post("/signout", data={"csrf": alice.headers["x-csrf-token"]})).status_code == 303
    replay = clients.anonymous()
    replay.cookies.set(SESSION_COOKIE, token)
    assert (await replay.get("/api/v1/me")).status_code == 401


async def test_a_session_expires_and_a_new_password_ends_every_session_of_the_address(clients):
    alice = await clients.signed_in(ALICE)
    await clients.site.store.save_web_password(ALICE, await clients.site.store.load_web_password(ALICE))
    assert (await alice.get("/api/v1/me")).status_code == 401

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    await clients.site.store.save_web_session(WebSession(hashlib.sha256(b"old").hexdigest(), ALICE, "c", past))
    stale = clients.anonymous()
    stale.cookies.set(SESSION_COOKIE, "old")
    assert (await stale.get("/api/v1/me")).status_code == 401
    assert (await stale.get("/settings")).headers["location"].startswith("/signin")


async def test_an_alias_signs_in_as_its_account(clients):
    client = clients.anonymous()
    assert (await sign_in(client, "al@example.test", PASSWORDS[ALICE])).status_code == 303
    assert (await client.get("/api/v1/me")).json()["address"] == ALICE


async def test_failed_sign_ins_are_limited_per_address_and_logged_without_the_password(clients, rpop_log):
    browser = clients.anonymous()
    for attempt in range(5):
        answer = await sign_in(browser, ALICE, f"wrong-guess-{attempt}")
        assert answer.status_code == 401 and "Wrong address or password" in answer.text
    limited = await sign_in(browser, ALICE, PASSWORDS[ALICE])
    assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text
    basic = clients.basic(ALICE)
    assert (await basic.get("/api/v1/me")).status_code == 429, "HTTP Basic is limited the same way"
    assert (await sign_in(clients.anonymous(), ADMIN, PASSWORDS[ADMIN])).status_code == 303, "other addresses still sign in"
    failures = [r for r in rpop_log.records if "sign-in failed" in r.getMessage()]
    assert len(failures) == 5 and all(r.levelno == logs.PROBLEM for r in failures)
    assert ALICE in failures[0].getMessage() and "127.0.0.1" in failures[0].getMessage()
    assert "wrong-guess" not in rpop_log.text and PASSWORDS[ALICE] not in rpop_log.text


async def test_failed_sign_ins_are_limited_per_client_whatever_the_address(clients):
    browser = clients.anonymous()
    for attempt in range(20):
        await sign_in(browser, f"nobody{attempt}@example.test", "guess")
    assert (await sign_in(browser, ALICE, PASSWORDS[ALICE])).status_code == 429


async def test_passwords_are_write_only_in_pages(clients):
    alice = await clients.signed_in(ALICE)
    page = await alice.get(f"/accounts/{ALICE}/records")
    assert page.status_code == 200 and SECRET not in page.text
    assert 'type="password"' in page.text and 'placeholder="unchanged"' in page.text
    assert csrf_of(page.text)
