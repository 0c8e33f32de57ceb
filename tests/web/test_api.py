"""The JSON API, route by route: what an administrator and a user may do,
what they are refused and how, with the declarative file's key names."""

from __future__ import annotations

import pytest

from tests.web.conftest import ADMIN, ALICE, BOB, CAROL, SECRET


async def ids(client) -> dict[str, int]:
    return {r["account"]: r["id"] for r in (await client.get("/api/v1/records")).json()}


async def test_settings_read_and_change_with_the_declarative_keys(clients):
    admin = clients.basic(ADMIN)
    settings = (await admin.get("/api/v1/settings")).json()
    assert settings["max_accounts_per_user"] == 2 and settings["delay_failed_hosts"] == "10m"
    changed = await admin.put("/api/v1/settings", json={"processors": 3, "delay_failed_hosts": "5m"})
    assert changed.status_code == 200
    assert (changed.json()["processors"], changed.json()["delay_failed_hosts"]) == (3, "5m")
    assert (await clients.site.store.load_settings()).processors == 3
    assert (await admin.get("/api/v1/settings")).json()["allow_self_poll"] is True, "settings not given are kept"


@pytest.mark.parametrize("body, field", [
    ({"processors": "many"}, "processors"),
    ({"processors": -1}, "processors"),
    ({"delay_failed_hosts": "soon"}, "delay_failed_hosts"),
    ({"log_level": "chatty"}, "log_level"),
    ({"activity_schedule": ["Someday 25:00-26:00"]}, "activity_schedule"),
    ({"procesors": 3}, "procesors"),
])
async def test_a_bad_setting_is_400_naming_its_key_and_changes_nothing(clients, body, field):
    admin = clients.basic(ADMIN)
    answer = await admin.put("/api/v1/settings", json=body)
    assert answer.status_code == 400
    assert answer.json()["field"] == field and field in answer.json()["error"]
    assert (await clients.site.store.load_settings()).processors == 10


async def test_a_body_that_is_not_json_is_400(clients):
    answer = await clients.basic(ADMIN).put("/api/v1/settings", content=b"processors=3")
    assert answer.status_code == 400 and answer.json() == {"error": answer.json()["error"], "field": None}
    assert "not JSON" in answer.json()["error"]


async def test_settings_are_the_administrator_s(clients):
    alice = clients.basic(ALICE)
    assert (await alice.get("/api/v1/settings")).status_code == 403
    assert (await alice.put("/api/v1/settings", json={"processors": 1})).status_code == 403
    assert (await clients.site.store.load_settings()).processors == 10


async def test_an_administrator_lists_every_record_or_one_owner_s_and_a_user_their_own(clients):
    admin, alice = clients.basic(ADMIN), clients.basic(ALICE)
    everything = (await admin.get("/api/v1/records")).json()
    assert sorted(r["account"] for r in everything) == ["alice.remote", "bob.remote", "domain.remote"]
    assert [r["account"] for r in (await admin.get("/api/v1/records?owner=al@example.test")).json()] == ["alice.remote"]
    assert [r["kind"] for r in (await admin.get("/api/v1/records?kind=unified")).json()] == ["unified"]
    mine = (await alice.get("/api/v1/records")).json()
    assert [r["account"] for r in mine] == ["alice.remote"]
    assert (await alice.get(f"/api/v1/records?owner={BOB}")).status_code == 403


async def test_a_record_in_json_has_the_file_s_keys_and_its_status_and_never_a_password(clients):
    alice = clients.basic(ALICE)
    (record,) = (await alice.get("/api/v1/records")).json()
    assert {"id", "kind", "last", "error", "next_poll", "poll_every", "account", "host", "leave", "apop",
            "tls", "owner"} <= set(record)
    assert record["kind"] == "remote" and record["last"] is None and record["error"] is None
    assert "password" not in record and SECRET not in str(record)


async def test_a_user_adds_changes_and_removes_their_own_records_within_the_limits(clients):
    alice = clients.basic(ALICE)
    added = await alice.post("/api/v1/records", json={"account": "second", "host": "127.0.0.1:2",
                                                      "password": SECRET, "poll_every": "30m"})
    assert added.status_code == 201, added.text
    record = added.json()
    assert (record["owner"], record["set_by"], record["poll_every"]) == (ALICE, "user", "30m")
    assert added.headers["location"] == f"/api/v1/records/{record['id']}"
    assert SECRET not in added.text

    third = {"account": "third", "host": "127.0.0.1:3", "password": SECRET, "poll_every": "30m"}
    assert (await alice.post("/api/v1/records", json=third)).status_code == 201, "alice.remote is the admin's"
    too_many = await alice.post("/api/v1/records", json={**third, "account": "fourth"})
    assert too_many.status_code == 409
    assert too_many.json()["field"] == "max_accounts_per_user" and "max_accounts_per_user = 2" in too_many.json()["error"]

    too_often = await alice.patch(f"/api/v1/records/{record['id']}", json={"poll_every": "1m"})
    assert too_often.status_code == 409 and too_often.json()["field"] == "poll_every"
    assert "min_poll_period_for_users" in too_often.json()["error"]

    changed = await alice.patch(f"/api/v1/records/{record['id']}", json={"leave": False, "password": ""})
    assert changed.status_code == 200 and changed.json()["leave"] is False
    stored = await clients.site.store.get_record(record["id"])
    assert clients.site.keyring.reveal(stored.secret) == SECRET, "an empty password keeps the stored one"

    assert (await alice.delete(f"/api/v1/records/{record['id']}")).status_code == 204
    assert (await alice.get(f"/api/v1/records/{record['id']}")).status_code == 404


async def test_an_administrator_is_not_held_to_the_user_limits(clients):
    admin = clients.basic(ADMIN)
    for n in range(3):
        answer = await admin.post("/api/v1/records", json={"owner": ALICE, "account": f"extra{n}",
                                                           "host": "127.0.0.1:2", "password": SECRET,
                                                           "poll_every": "1m"})
        assert answer.status_code == 201, answer.text
        assert answer.json()["set_by"] == "admin"
    unified = await admin.post("/api/v1/records", json={"kind": "unified", "account": "u2", "host": "127.0.0.1:2",
                                                        "password": SECRET, "special_field": "X-Envelope-To"})
    assert unified.status_code == 201 and unified.json()["kind"] == "unified"


@pytest.mark.parametrize("body, field", [
    ({"account": "x", "host": "http://pop.isp.test", "password": "p"}, "host"),
    ({"account": "x", "host": "127.0.0.1:2"}, "password"),
    ({"account": "x", "host": "127.0.0.1:2", "password": "p", "poll_every": "often"}, "poll_every"),
    ({"account": "", "host": "127.0.0.1:2", "password": "p"}, "account"),
    ({"account": "x", "host": "127.0.0.1:2", "password": "p", "leave": "yes"}, "leave"),
    ({"account": "x", "host": "127.0.0.1:2", "password": "p", "password_file": "/etc/shadow"}, "password_file"),
    ({"account": "x", "host": "127.0.0.1:2", "password": "p", "set_by": "admin"}, "set_by"),
    ({"account": "x", "host": "127.0.0.1:2", "password": "p", "owner": BOB}, "owner"),
    ({"account": "alice.remote", "host": "127.0.0.1:9", "password": "p"}, "account"),
])
async def test_a_user_s_bad_record_is_400_naming_the_key_and_adds_nothing(clients, body, field):
    alice = clients.basic(ALICE)
    answer = await alice.post("/api/v1/records", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert len(await clients.site.store.list_records()) == 3


async def test_a_user_cannot_reach_another_user_s_record_or_a_unified_one(clients):
    alice = clients.basic(ALICE)
    everyone = await ids(clients.basic(ADMIN))
    for account in ("bob.remote", "domain.remote"):
        record_id = everyone[account]
        assert (await alice.get(f"/api/v1/records/{record_id}")).status_code == 404
        assert (await alice.patch(f"/api/v1/records/{record_id}", json={"leave": False})).status_code == 404
        assert (await alice.delete(f"/api/v1/records/{record_id}")).status_code == 404
        assert (await alice.post(f"/api/v1/records/{record_id}/poll")).status_code == 404
    assert (await alice.get("/api/v1/records/9999")).status_code == 404
    assert len(await clients.site.store.list_records()) == 3
    assert (await alice.post("/api/v1/records", json={"kind": "unified", "account": "u", "host": "127.0.0.1:2",
                                                      "password": "p"})).status_code == 403


async def test_a_user_without_the_right_sees_their_records_and_changes_nothing(clients):
    carol = clients.basic(CAROL)
    assert (await carol.get("/api/v1/records")).json() == []
    me = (await carol.get("/api/v1/me")).json()
    assert me == {"address": CAROL, "role": "user", "may_poll": False}
    refused = await carol.post("/api/v1/records", json={"account": "c", "host": "127.0.0.1:2", "password": "p"})
    assert refused.status_code == 403 and ADMIN in refused.json()["error"]


async def test_an_administrator_grants_and_withdraws_the_right_per_account(clients):
    admin, carol = clients.basic(ADMIN), clients.basic(CAROL)
    granted = await admin.patch(f"/api/v1/accounts/{CAROL}", json={"may_poll": True})
    assert granted.status_code == 200 and granted.json()["may_poll"] is True
    added = await carol.post("/api/v1/records", json={"account": "c", "host": "127.0.0.1:2", "password": "p",
                                                      "poll_every": "1h"})
    assert added.status_code == 201
    assert (await admin.patch(f"/api/v1/accounts/{BOB}", json={"may_poll": False})).json()["may_poll"] is False
    assert (await clients.basic(BOB).get("/api/v1/me")).json()["may_poll"] is False
    assert (await admin.patch(f"/api/v1/accounts/{BOB}", json={"may_poll": None})).json()["may_poll"] is True
    assert (await admin.patch(f"/api/v1/accounts/{BOB}", json={"may_poll": "yes"})).status_code == 400
    assert (await admin.patch("/api/v1/accounts/nobody@example.test", json={"may_poll": True})).status_code == 404
    assert (await carol.patch(f"/api/v1/accounts/{CAROL}", json={"may_poll": True})).status_code == 403


async def test_the_accounts_list_searches_and_pages(clients):
    admin = clients.basic(ADMIN)
    listing = (await admin.get("/api/v1/accounts?search=o")).json()
    assert [a["address"] for a in listing["accounts"]] == [BOB, CAROL, ADMIN]
    assert listing["total"] == 3
    alice = (await admin.get("/api/v1/accounts?search=alice")).json()["accounts"]
    assert alice == [{"address": ALICE, "may_poll": True, "records": 1}]
    assert (await admin.get("/api/v1/accounts?page=0")).status_code == 400
    assert (await clients.basic(ALICE).get("/api/v1/accounts")).status_code == 403


async def test_poll_now_answers_with_the_poll_s_result_and_the_record_shows_it(clients):
    alice = clients.basic(ALICE)
    (record,) = (await alice.get("/api/v1/records")).json()
    result = await alice.post(f"/api/v1/records/{record['id']}/poll")
    assert result.status_code == 200
    assert result.json()["error"] == "connect-failed" and result.json()["retrieved"] == 0
    after = (await alice.get(f"/api/v1/records/{record['id']}")).json()
    assert after["error"] == "connect-failed" and after["last"] == "connect-failed"
    assert after["explanation"].startswith("connect-failed: The TCP connection")


async def test_poll_now_is_refused_while_processors_is_zero(clients):
    admin = clients.basic(ADMIN)
    await admin.put("/api/v1/settings", json={"processors": 0})
    record_id = (await ids(admin))["alice.remote"]
    refused = await admin.post(f"/api/v1/records/{record_id}/poll")
    assert refused.status_code == 409 and "processors = 0" in refused.json()["error"]
    polling = (await admin.get("/api/v1/polling")).json()
    assert polling["polling"] is False and polling["processors"] == 0


async def test_health_and_the_openapi_document_describe_every_api_route(clients):
    anonymous = clients.anonymous()
    assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
    spec = (await anonymous.get("/api/v1/openapi.json")).json()
    from starlette.routing import Route

    from rpopcore.web import api

    for route in api.routes(clients.app.app.state.web):
        assert isinstance(route, Route)
        path = route.path.replace(":int}", "}")
        assert path in spec["paths"], path
        described = {m.lower() for m in spec["paths"][path] if m != "parameters"}
        assert described == {m.lower() for m in route.methods} - {"head"}, path


async def test_moving_a_record_to_another_mailbox_needs_its_password_again(clients):
    alice = clients.basic(ALICE)
    (record,) = (await alice.get("/api/v1/records")).json()
    moved = await alice.patch(f"/api/v1/records/{record['id']}", json={"host": "127.0.0.1:2", "account": "other"})
    assert moved.status_code == 400 and moved.json()["field"] == "password"
    assert "new mailbox" in moved.json()["error"]
    done = await alice.patch(f"/api/v1/records/{record['id']}", json={"host": "127.0.0.1:2", "account": "other",
                                                                       "password": SECRET, "poll_every": "1h"})
    assert done.status_code == 200 and (done.json()["account"], done.json()["id"]) == ("other", record["id"])
